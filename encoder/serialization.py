"""Space-filling-curve serialization of voxels (z-order and Hilbert), pure functions.

A code packs a voxel's position along a curve into an int64, with the batch
(scene) index in the bits above the curve bits, so sorting codes groups scenes
and orders the voxels of each scene along the curve. ``depth`` is the number of
bits per axis (coordinates must lie in ``[0, 2**depth)``).

Orders (PTv3's names): ``"z"`` and ``"hilbert"`` over (x, y, z); the
``"-trans"`` variants swap x and y. Both curves nest: the code of a voxel
shifted right by 3 bits is the code of its parent voxel (coordinates >> 1) at
``depth - 1``, so the codes of a pooled level are the codes of the finer level
>> 3 and grid pooling keeps each parent's children contiguous in every order.
"""

from __future__ import annotations

import torch
from torch import Tensor

MAX_DEPTH = 16  # 48 curve bits + up to 15 bits of batch index in a signed int64


def spread_bits(v: Tensor) -> Tensor:
    """Insert two zero bits between consecutive bits: b2 b1 b0 -> b2 0 0 b1 0 0 b0 (up to 21 bits). v: [M] int64."""
    v = v & 0x1FFFFF
    v = (v | (v << 32)) & 0x1F00000000FFFF
    v = (v | (v << 16)) & 0x1F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


def interleave3(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Bit interleave, ``a`` most significant in each triple: bit 3i+2 = a_i, 3i+1 = b_i, 3i = c_i. [M] int64 each."""
    return (spread_bits(a) << 2) | (spread_bits(b) << 1) | spread_bits(c)


def z_order_encode(grid_coord: Tensor, depth: int = MAX_DEPTH) -> Tensor:
    """Morton code of integer coordinates. grid_coord: [M, 3] int in [0, 2**depth) -> [M] int64."""
    g = grid_coord.long()
    return interleave3(g[:, 0], g[:, 1], g[:, 2])


def hilbert_encode(grid_coord: Tensor, depth: int = MAX_DEPTH) -> Tensor:
    """3D Hilbert index of integer coordinates (Skilling's transpose algorithm). [M, 3] -> [M] int64.

    J. Skilling, "Programming the Hilbert curve", AIP Conf. Proc. 707 (2004):
    the axes are turned into the "transposed" Hilbert index by undoing the
    curve's rotations/reflections level by level (most significant first) and
    Gray-coding; the index is then the bit interleave of the transposed axes.
    """
    g = grid_coord.long()
    x = [g[:, 0].clone(), g[:, 1].clone(), g[:, 2].clone()]
    q = 1 << (depth - 1)
    while q > 1:  # inverse undo of excess work
        p = q - 1
        for i in range(3):
            has_bit = (x[i] & q) != 0
            if i == 0:
                x[0] = torch.where(has_bit, x[0] ^ p, x[0])
                continue
            t = (x[0] ^ x[i]) & p
            x[0] = torch.where(has_bit, x[0] ^ p, x[0] ^ t)
            x[i] = torch.where(has_bit, x[i], x[i] ^ t)
        q >>= 1
    x[1] = x[1] ^ x[0]  # Gray encode
    x[2] = x[2] ^ x[1]
    t = torch.zeros_like(x[0])
    q = 1 << (depth - 1)
    while q > 1:
        t = torch.where((x[2] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    return interleave3(x[0] ^ t, x[1] ^ t, x[2] ^ t)


def encode(grid_coord: Tensor, batch: Tensor | None, order: str, depth: int = MAX_DEPTH) -> Tensor:
    """Serialization code of each voxel for one order, batch index in the high bits.

    grid_coord: [M, 3] int in [0, 2**depth); batch: [M] int or None -> [M] int64.
    """
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"serialization depth {depth} outside [1, {MAX_DEPTH}]")
    g = grid_coord.long()
    if g.numel() and (int(g.min()) < 0 or int(g.max()) >= 1 << depth):
        raise ValueError(f"grid coordinates span [{int(g.min())}, {int(g.max())}], expected [0, {1 << depth}) for depth {depth}")
    if order.endswith("-trans"):
        g = g[:, [1, 0, 2]]
    base = order.removesuffix("-trans")
    if base == "z":
        code = z_order_encode(g, depth)
    elif base == "hilbert":
        code = hilbert_encode(g, depth)
    else:
        raise ValueError(f"unknown serialization order {order!r}, expected z, z-trans, hilbert or hilbert-trans")
    if batch is not None:
        code = code | (batch.long() << (3 * depth))
    return code


def order_and_inverse(codes: Tensor) -> tuple[Tensor, Tensor]:
    """Sorting permutation of codes and its inverse. codes: [O, M] -> (order [O, M], inverse [O, M]).

    ``order[o, i]`` is the voxel at position i of order o; ``inverse[o, order[o, i]] == i``.
    """
    order = torch.argsort(codes, dim=-1, stable=True)
    inverse = torch.empty_like(order)
    positions = torch.arange(codes.shape[-1], device=codes.device).expand_as(order)
    inverse.scatter_(-1, order, positions)
    return order, inverse


def serialize(grid_coord: Tensor, batch: Tensor, orders: tuple[str, ...], depth: int = MAX_DEPTH) -> tuple[Tensor, Tensor, Tensor]:
    """Codes, order and inverse for every order. -> (codes, order, inverse), each [len(orders), M] int64."""
    codes = torch.stack([encode(grid_coord, batch, o, depth) for o in orders])
    order, inverse = order_and_inverse(codes)
    return codes, order, inverse
