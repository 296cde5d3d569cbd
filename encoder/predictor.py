"""Inference with the Chorus encoder: features for every Gaussian of a scene of any size.

Large scenes are cut into spatial chunks: the space is split recursively at
the median of the longest axis into half-open "core" boxes until each core,
grown by ``chunk_overlap`` metres on every side, holds at most ``chunk_size``
Gaussians. Each chunk (core + margin) is encoded alone and only its core's
Gaussians keep their features, so every Gaussian gets exactly one feature
vector computed with at least ``chunk_overlap`` metres of context around it.
Chunks voxelize on the same absolute lattice as the whole scene (see
``encoder.grid``), so only attention patches differ near chunk borders.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from data.scene import GaussianScene

from .grid import scatter_mean
from .inputs import scene_to_input
from .ptv3 import ChorusEncoder


@dataclass
class SpatialChunk:
    """One chunk: a half-open core box [lo, hi) (float64, +-inf at the scene's outside) and its members.

    members [n] int64  Gaussians inside the core box grown by the overlap (what the encoder sees)
    core    [n] bool   which members lie inside the core box (whose features are kept)
    """

    lo: Tensor
    hi: Tensor
    members: Tensor
    core: Tensor


def _inside(points: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    return ((points >= lo) & (points < hi)).all(1)


def spatial_chunks(means: Tensor, chunk_size: int, overlap: float) -> list[SpatialChunk]:
    """Split a scene into chunks of at most ``chunk_size`` Gaussians including an ``overlap``-metre margin.

    means: [N, 3]. Every Gaussian lies in exactly one core box. A core is not split further once it holds
    fewer than ``chunk_size // 4`` Gaussians (its chunk may then exceed ``chunk_size``: margin-dominated).
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size {chunk_size}: expected >= 1")
    if overlap < 0:
        raise ValueError(f"chunk_overlap {overlap}: expected >= 0 metres")
    pts = means.detach().cpu().double()
    inf = torch.full((3,), float("inf"), dtype=torch.float64)
    chunks: list[SpatialChunk] = []
    stack = [(-inf, inf, torch.arange(pts.shape[0]))]
    while stack:
        lo, hi, core_index = stack.pop()
        members = torch.nonzero(_inside(pts, lo - overlap, hi + overlap)).squeeze(1)
        split = None
        if members.numel() > chunk_size and core_index.numel() > max(chunk_size // 4, 1):
            core_pts = pts[core_index]
            extent = core_pts.max(0).values - core_pts.min(0).values
            for axis in torch.argsort(extent, descending=True).tolist():
                value = core_pts[:, axis].median()
                left = core_pts[:, axis] < value
                if 0 < int(left.sum()) < core_index.numel():
                    split = (axis, value, left)
                    break
        if split is None:
            chunks.append(SpatialChunk(lo, hi, members, _inside(pts[members], lo, hi)))
            continue
        axis, value, left = split
        left_hi, right_lo = hi.clone(), lo.clone()
        left_hi[axis] = value
        right_lo[axis] = value
        stack.append((right_lo, hi, core_index[~left]))
        stack.append((lo, left_hi, core_index[left]))
    return chunks


class EncoderPredictor:
    """Encodes scenes with a frozen :class:`ChorusEncoder` (eval mode, no grad), chunking large scenes.

    chunk_size: most Gaussians the encoder sees at once; chunk_overlap: context margin in metres;
    dtype: compute dtype of the encoder (float32 by default).
    """

    def __init__(self, encoder: ChorusEncoder, device="cpu", chunk_size: int = 400_000, chunk_overlap: float = 0.5, dtype=torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype
        self.encoder = encoder.to(self.device, dtype).eval()
        self.config = encoder.config
        self.chunk_size = int(chunk_size)
        self.chunk_overlap = float(chunk_overlap)
        if self.chunk_size < 1 or self.chunk_overlap < 0:
            raise ValueError(f"EncoderPredictor: chunk_size {chunk_size} must be >= 1 and chunk_overlap {chunk_overlap} >= 0")

    @property
    def out_dim(self) -> int:
        return self.encoder.out_dim

    def chunks(self, scene: GaussianScene) -> list[SpatialChunk]:
        if len(scene) <= self.chunk_size:
            everything = torch.arange(len(scene))
            inf = torch.full((3,), float("inf"), dtype=torch.float64)
            return [SpatialChunk(-inf, inf, everything, torch.ones(len(scene), dtype=torch.bool))]
        return spatial_chunks(scene.means, self.chunk_size, self.chunk_overlap)

    def _run(self, means: Tensor, feats: Tensor):
        offset = torch.tensor([means.shape[0]], device=self.device)
        return self.encoder.forward_stages(means.to(self.device, self.dtype), feats.to(self.device, self.dtype), offset)

    @torch.no_grad()
    def encode(self, scene: GaussianScene, half: bool = False) -> Tensor:
        """Features of every Gaussian, in input order: [N, out_dim] (float16 if ``half``), on CPU."""
        if len(scene) == 0:
            raise ValueError(f"scene {scene.name!r} is empty; expected at least one Gaussian")
        scene = scene.to("cpu")
        feats = scene_to_input(scene, self.config.variant)
        out = torch.empty(len(scene), self.out_dim, dtype=torch.float16 if half else torch.float32)
        chunks = self.chunks(scene)
        for chunk in _progress(chunks, "encode chunks"):
            stages = self._run(scene.means[chunk.members], feats[chunk.members])
            point_feats = stages.read_out()
            out[chunk.members[chunk.core]] = point_feats[chunk.core.to(point_feats.device)].to("cpu", out.dtype)
            del stages, point_feats
        return out

    @torch.no_grad()
    def stage_features(self, scene: GaussianScene, stage: int) -> tuple[Tensor, Tensor]:
        """Pooled points of one stage: (coords [M, 3] centroid of each cell's Gaussians, feats [M, C_stage]), on CPU.

        Cells are sorted by their absolute lattice index (x, then y, then z). In chunked mode each cell comes from
        the chunk whose core holds the cell's centre; it is complete there when half a cell fits in the overlap.
        """
        cfg = self.config
        if not 0 <= stage < cfg.num_stages:
            raise ValueError(f"stage {stage} outside [0, {cfg.num_stages})")
        scene = scene.to("cpu")
        feats_in = scene_to_input(scene, cfg.variant)
        cell_size = cfg.grid_size * 2**stage
        coords, feats, cells = [], [], []
        for chunk in _progress(self.chunks(scene), "stage chunks"):
            means = scene.means[chunk.members]
            stages = self._run(means, feats_in[chunk.members])
            point_cell = stages.point_to_stage(stage).cpu()
            m = stages.feats[stage].shape[0]
            absolute = stages.grid[stage].cpu() + torch.div(stages.origin[0].cpu(), 2**stage, rounding_mode="floor")
            centre = (absolute.double() + 0.5) * cell_size
            keep = _inside(centre, chunk.lo, chunk.hi)
            coords.append(scatter_mean(means.double(), point_cell, m)[keep].float())
            feats.append(stages.feats[stage][keep.to(stages.feats[stage].device)].float().cpu())
            cells.append(absolute[keep])
        coords, feats, cells = torch.cat(coords), torch.cat(feats), torch.cat(cells)
        rel = cells - cells.min(0).values
        span = int(rel.max()) + 1 if rel.numel() else 1
        order = torch.argsort((rel[:, 0] * span + rel[:, 1]) * span + rel[:, 2])
        return coords[order], feats[order]


def _progress(items, desc: str):
    if len(items) <= 1:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)
