"""Grid sampling and grid pooling with exact inverse indices, pure functions.

Voxels are integer coordinates ``floor(means / grid_size)`` relative to a
per-scene origin. The origin is the scene's minimum voxel rounded down to a
multiple of ``align`` voxels (``2 ** (num_stages - 1)`` in the encoder), so the
pooled cells of every stage sit on one absolute lattice: a chunk of a scene
voxelizes and pools exactly like the same region of the whole scene.

Every reduction keeps the index that maps fine rows to coarse rows (the
"inverse" / "cluster"), so features can be sent back to every input point.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from data.scene import offset_to_batch

_AXIS_BITS = 16  # bits per axis in a packed voxel key; batch index above 3 * 16 bits


def pack_voxel_key(grid_coord: Tensor, batch: Tensor) -> Tensor:
    """Unique int64 key per (batch, voxel). grid_coord: [M, 3] int in [0, 2**16); batch: [M] -> [M] int64, sorted like (batch, x, y, z)."""
    g = grid_coord.long()
    return (batch.long() << (3 * _AXIS_BITS)) | (g[:, 0] << (2 * _AXIS_BITS)) | (g[:, 1] << _AXIS_BITS) | g[:, 2]


def unpack_voxel_key(key: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`pack_voxel_key`: [M] int64 -> (grid_coord [M, 3] int64, batch [M] int64)."""
    mask = (1 << _AXIS_BITS) - 1
    grid = torch.stack([(key >> (2 * _AXIS_BITS)) & mask, (key >> _AXIS_BITS) & mask, key & mask], 1)
    return grid, key >> (3 * _AXIS_BITS)


def scatter_mean(src: Tensor, index: Tensor, size: int) -> Tensor:
    """Mean of the rows of ``src`` [N, C] sharing an ``index`` [N] in [0, size) -> [size, C]."""
    out = src.new_zeros((size, src.shape[1])).index_add_(0, index, src)
    count = torch.bincount(index, minlength=size).clamp_min(1).to(src.dtype)
    return out / count[:, None]


def scatter_max(src: Tensor, index: Tensor, size: int) -> Tensor:
    """Max of the rows of ``src`` [N, C] sharing an ``index`` [N] in [0, size) (every index present) -> [size, C]."""
    out = src.new_empty((size, src.shape[1]))
    return out.scatter_reduce(0, index[:, None].expand_as(src), src, reduce="amax", include_self=False)


@dataclass
class Voxelization:
    """Result of :func:`voxelize` (M voxels from N points, B scenes).

    grid_coord [M, 3] int64  voxel coordinates relative to the scene origin, >= 0
    batch      [M] int64     scene of each voxel (voxels sorted by scene, then x, y, z)
    inverse    [N] int64     voxel of each input point
    origin     [B, 3] int64  absolute voxel index of each scene's origin (a multiple of ``align``)
    """

    grid_coord: Tensor
    batch: Tensor
    inverse: Tensor
    origin: Tensor

    @property
    def num_voxels(self) -> int:
        return int(self.grid_coord.shape[0])


def voxelize(means: Tensor, offset: Tensor, grid_size: float, align: int = 1, max_bits: int = _AXIS_BITS) -> Voxelization:
    """Grid-sample points into voxels of ``grid_size`` metres, keeping the inverse index.

    means: [N, 3] float metres; offset: [B] cumulative counts.
    Raises ValueError when a scene spans more than ``2**max_bits`` voxels along an axis.
    """
    if means.ndim != 2 or means.shape[1] != 3:
        raise ValueError(f"means has shape {tuple(means.shape)}, expected (N, 3)")
    if int(offset[-1]) != means.shape[0]:
        raise ValueError(f"offset ends at {int(offset[-1])}, expected N = {means.shape[0]} points")
    batch = offset_to_batch(offset.to(means.device))
    absolute = torch.floor(means.double() / grid_size).long()
    num_scenes = int(offset.shape[0])
    lo = torch.full((num_scenes, 3), torch.iinfo(torch.long).max, dtype=torch.long, device=means.device)
    lo = lo.scatter_reduce(0, batch[:, None].expand(-1, 3), absolute, reduce="amin")
    origin = torch.div(lo, align, rounding_mode="floor") * align
    grid = absolute - origin[batch]
    extent = int(grid.max()) + 1 if grid.numel() else 0
    if extent > 1 << max_bits:
        raise ValueError(
            f"a scene spans {extent} voxels of {grid_size} m along an axis, expected at most {1 << max_bits}: "
            "use a coarser grid_size or split the scene into chunks"
        )
    keys, inverse = torch.unique(pack_voxel_key(grid, batch), sorted=True, return_inverse=True)
    voxel_grid, voxel_batch = unpack_voxel_key(keys)
    return Voxelization(voxel_grid, voxel_batch, inverse, origin)


def pool_grid(grid_coord: Tensor, batch: Tensor, stride: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    """Coarsen voxels by ``stride`` (a power of two).

    grid_coord [M, 3], batch [M] -> (coarse grid [K, 3], coarse batch [K], cluster [M] in [0, K)),
    coarse voxels sorted by (batch, x, y, z); ``cluster`` sends each fine voxel to its parent.
    """
    if stride < 1 or stride & (stride - 1):
        raise ValueError(f"pooling stride {stride} is not a power of two")
    keys, cluster = torch.unique(pack_voxel_key(torch.div(grid_coord, stride, rounding_mode="floor"), batch), sorted=True, return_inverse=True)
    coarse_grid, coarse_batch = unpack_voxel_key(keys)
    return coarse_grid, coarse_batch, cluster
