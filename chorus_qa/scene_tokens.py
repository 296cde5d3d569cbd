"""Scene tokens: K tokens pooled from per-Gaussian encoder features around farthest-point-sampled centres.

For one scene with N Gaussians (features [N, C], means [N, 3]):

1. positions are normalised per scene: centred on the bounding-box centre and
   divided by half the largest extent, so they lie in [-1, 1];
2. at most ``max_points`` Gaussians are kept (a random subset while training, a
   seeded one at inference, so inference is deterministic);
3. K centres are chosen by farthest-point sampling, starting from the point
   nearest the centroid (inference) or a random point (training);
4. pooling (``pooling``):
   - ``"cell"`` (default): every kept Gaussian belongs to the cell of its
     nearest centre (a Voronoi partition), and each token sees the mean and max
     of its cell's layer-normalised features plus the cell's geometry (mean and
     spread of the offsets to the centre, log of its Gaussian count). Every kept
     Gaussian reaches a token, so a small object is never missed;
   - ``"knn"``: each centre pools its ``num_neighbors`` nearest kept Gaussians
     (feature + offset through a shared layer, then mean and max). With K=64 and
     32 neighbours that covers ~2k of 16k Gaussians: most of a room is unseen;
   - ``"objects"``: no centres; one token per segment of the scene (a per-Gaussian
     segment id from ``chorus_qa.segments``: zero-shot labels split into spatially
     connected parts, or ground-truth instances for diagnostics), the K largest
     segments, largest first at inference and in random order while training
     (so the model cannot lean on the order). A token sees the mean and max of
     its segment's layer-normalised features and the segment's geometry and
     colour (bounding-box half extent, spread, log Gaussian count, mean RGB);
     its position is the bounding-box centre. Unused slots are all zeros.
     This is how object-centric 3D LLMs (Chat-Scene, LEO) present a scene: an
     object's evidence sits in one token instead of being split over cells;
5. a learned 3D Fourier encoding of the (centre or segment) position is added;
6. optionally (``relation_layers``), spatial relation layers let the tokens attend to each other with a learned
   bias from their pairwise offsets (``chorus_qa.relations``).

Output: tokens [K, D_tok] and centres [K, 3] (metres) per scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from .relations import SpatialRelationEncoder


POOLINGS = ("cell", "knn", "objects")
POOLED_POOLINGS = ("cell", "objects")  # parameter-free: a scene can be pooled once, ahead of the learned layers
CELL_GEOMETRY_DIM = 7    # mean offset (3), offset spread (3), log Gaussian count (1)
OBJECT_GEOMETRY_DIM = 10  # half extent (3), spread (3), log Gaussian count (1), mean colour (3)
METRIC_EXTENT_DIM = 3    # "objects" with metric_extents: + log of the box size in metres (3)
TEXTURE_DIM = 6          # "objects" with texture_stats: + the spread and shape of the luminance of its Gaussians (6)


@dataclass
class SceneTokenizerConfig:
    in_dim: int                  # C, the encoder's per-Gaussian feature width
    num_tokens: int = 128        # K
    token_dim: int = 256         # D_tok
    pooling: str = "cell"        # "cell" (Voronoi cells of the centres), "knn" or "objects" (one token per segment)
    num_neighbors: int = 32      # Gaussians pooled per centre ("knn" pooling only)
    max_points: int = 16384      # Gaussians kept per scene before FPS / kNN (speed on big scenes)
    num_frequencies: int = 16    # learned Fourier frequencies of the centre position encoding
    fourier_sigma: float = 2.0   # std of the initial frequencies (cycles per normalised unit)
    seed: int = 0                # subsampling seed at inference
    relation_layers: int = 0     # spatial relation layers over the tokens (chorus_qa.relations); 0 = none
    relation_heads: int = 4
    relation_tokens: bool = False  # relations go to tokens of their own (the model's), not into these tokens
    metric_extents: bool = False   # "objects": also the box size in metres (log), not only relative to the room
    texture_stats: bool = False    # "objects": also its Gaussians' luminance statistics (``group_texture``)
    color_shading: float = 1.0     # "objects": colour words allow this much shading (``basic_color_ids``); 1 = none

    def __post_init__(self):
        for name in ("in_dim", "num_tokens", "token_dim", "num_neighbors", "max_points", "num_frequencies"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"SceneTokenizerConfig.{name} = {value!r}: expected a positive integer")
        if not isinstance(self.relation_layers, int) or self.relation_layers < 0:
            raise ValueError(f"SceneTokenizerConfig.relation_layers = {self.relation_layers!r}: expected an integer >= 0")
        if self.relation_tokens and not self.relation_layers:
            raise ValueError("SceneTokenizerConfig.relation_tokens needs relation_layers > 0")
        if self.relation_layers and (self.relation_heads <= 0 or self.token_dim % self.relation_heads):
            raise ValueError(f"SceneTokenizerConfig.relation_heads = {self.relation_heads}: expected a positive divisor "
                             f"of token_dim ({self.token_dim})")
        if self.max_points < self.num_tokens:
            raise ValueError(f"SceneTokenizerConfig.max_points = {self.max_points}: expected >= num_tokens ({self.num_tokens})")
        if self.pooling not in POOLINGS:
            raise ValueError(f"SceneTokenizerConfig.pooling = {self.pooling!r}: expected one of {POOLINGS}")
        if self.fourier_sigma <= 0:
            raise ValueError(f"SceneTokenizerConfig.fourier_sigma = {self.fourier_sigma}: expected > 0")
        for name in ("metric_extents", "texture_stats"):
            if getattr(self, name) and self.pooling != "objects":
                raise ValueError(f"SceneTokenizerConfig.{name} is for 'objects' pooling")
        if not 0 < self.color_shading <= 1:
            raise ValueError(f"SceneTokenizerConfig.color_shading = {self.color_shading!r}: expected 0 < color_shading <= 1")

    @property
    def offset_scale(self) -> float:
        """Offsets to a centre are O(1 / K^(1/3)) in normalised units; this rescales them to O(1)."""
        return float(self.num_tokens) ** (1.0 / 3.0)

    @property
    def pooled(self) -> bool:
        """Pooling without parameters (cell, objects): scenes can be pooled once and cached as PooledScene."""
        return self.pooling in POOLED_POOLINGS

    @property
    def geometry_dim(self) -> int:
        if self.pooling != "objects":
            return CELL_GEOMETRY_DIM
        return OBJECT_GEOMETRY_DIM + TEXTURE_DIM * self.texture_stats + METRIC_EXTENT_DIM * self.metric_extents


def scene_slices(offset: Tensor | None, n: int) -> list[tuple[int, int]]:
    """(start, end) of each scene in N concatenated Gaussians: one scene without ``offset``, else one per
    cumulative count in ``offset`` [B]."""
    ends = [n] if offset is None else [int(o) for o in offset]
    return list(zip([0] + ends[:-1], ends))


# ----------------------------------------------------------------------------- pure geometry
def normalize_positions(means: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Map ``means`` [N, 3] into [-1, 1]^3; return (positions [N, 3], centre [3], half_extent scalar)."""
    lo, hi = means.min(0).values, means.max(0).values
    centre = (lo + hi) / 2
    half = ((hi - lo).max() / 2).clamp_min(1e-6)
    return (means - centre) / half, centre, half


def farthest_point_sample(points: Tensor, k: int, start: int) -> Tensor:
    """Indices [k] of farthest-point sampling on ``points`` [M, 3], beginning at index ``start``.

    Each new index maximises the distance to the already chosen set (ties: lowest
    index). With k >= M every point is taken once and the rest repeat cyclically.
    """
    m = points.shape[0]
    if k >= m:
        return torch.arange(k, device=points.device) % m
    chosen = torch.empty(k, dtype=torch.long, device=points.device)
    nearest = torch.full((m,), float("inf"), dtype=points.dtype, device=points.device)
    current = int(start)
    for i in range(k):
        chosen[i] = current
        nearest = torch.minimum(nearest, (points - points[current]).square().sum(1))
        current = int(torch.argmax(nearest))
    return chosen


def knn_indices(queries: Tensor, points: Tensor, k: int) -> Tensor:
    """Indices [Q, min(k, M)] of the nearest ``points`` [M, 3] to each query [Q, 3], nearest first."""
    k = min(k, points.shape[0])
    dist = torch.cdist(queries, points)
    return dist.topk(k, dim=1, largest=False).indices


@torch.no_grad()
def pool_cells(features: Tensor, positions: Tensor, centres: Tensor, offset_scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """Voronoi pooling: each point joins the cell of its nearest centre (ties: lowest centre index).

    features [M, C] (pooled after a parameter-free layer norm), positions [M, 3], centres [K, 3] ->
    (pooled [K, 2C] = cell mean | cell max, geometry [K, 7] = mean offset | offset spread | log count),
    offsets scaled by ``offset_scale``. Empty cells (repeated centres) are all zeros.
    """
    k = centres.shape[0]
    assign = torch.cdist(positions, centres).argmin(1)                     # [M]
    pooled, count = group_mean_max(features, assign, k)
    offsets = (positions - centres[assign]).float() * offset_scale
    off_mean, spread = group_mean_std(offsets, assign, count)
    return pooled, torch.cat([off_mean, spread, torch.log1p(count)[:, None]], -1)


def group_mean_max(features: Tensor, assign: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Mean | max of layer-normed ``features`` [M, C] per group (``assign`` [M] in [0, k)) -> ([k, 2C], count [k]).

    Empty groups are all zeros.
    """
    c = features.shape[1]
    normed = nn.functional.layer_norm(features.float(), (c,))
    count = torch.zeros(k, device=features.device).index_add_(0, assign, torch.ones_like(assign, dtype=torch.float32))
    mean = torch.zeros(k, c, device=features.device).index_add_(0, assign, normed) / count.clamp_min(1)[:, None]
    peak = torch.full((k, c), float("-inf"), device=features.device)
    peak = peak.scatter_reduce(0, assign[:, None].expand(-1, c), normed, reduce="amax", include_self=True)
    peak = torch.where(count[:, None] > 0, peak, torch.zeros_like(peak))
    return torch.cat([mean, peak], -1), count


def group_mean_std(values: Tensor, assign: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """Per-group mean and standard deviation of ``values`` [M, D] -> ([k, D], [k, D]); empty groups are zeros."""
    k, d = count.shape[0], values.shape[1]
    denom = count.clamp_min(1)[:, None]
    mean = torch.zeros(k, d, device=values.device).index_add_(0, assign, values) / denom
    sq = torch.zeros(k, d, device=values.device).index_add_(0, assign, values.square()) / denom
    return mean, (sq - mean.square()).clamp_min(0).sqrt()


def group_texture(colors: Tensor, assign: Tensor, count: Tensor) -> Tensor:
    """Per-group statistics of the luminance (mean RGB) of its Gaussians, relative to the group's mean luminance
    -> [k, 6]: log standard deviation, skewness, log kurtosis, log mean per-channel standard deviation, log of the
    brightest and of the darkest Gaussian's distance from the mean. Empty groups are zeros.

    A material shows in how an object's colour varies, not in its mean: wood grain, the speckle of fabric, the
    highlights of metal or ceramic (the synthetic world renders materials this way, and real splats bake the same
    texture and gloss into their colours). Relative to the mean, so the same texture in another colour or light
    reads the same. The encoder's distilled features keep the mean colour but not this (README, "What the tokens
    carry"); with the class, these six numbers tell a small MLP the material of a synthetic object 67 % of the time,
    where the class alone tells 44 % (``benchmarks/material_texture.py``).
    """
    k = count.shape[0]
    colors = colors.float()
    denom = count.clamp_min(1)
    chan_mean = torch.zeros(k, 3, device=colors.device).index_add_(0, assign, colors) / denom[:, None]
    mean = chan_mean.mean(1)  # the mean luminance is the mean of the channel means
    rel = colors.mean(1) / mean.clamp_min(1e-3)[assign] - 1
    moment = [torch.zeros(k, device=colors.device).index_add_(0, assign, rel.pow(p)) / denom for p in (2, 3, 4)]
    sd = moment[0].clamp_min(0).sqrt()
    unit = sd.clamp_min(1e-4)  # a flat colour (sd 0) has skewness and kurtosis 0
    skew = (moment[1] / unit.pow(3)).clamp(-10, 10)
    kurt = moment[2] / unit.pow(4)
    centred = (colors - chan_mean[assign]).square()  # centred first: E[x^2] - E[x]^2 loses a faint texture
    chan_sd = (torch.zeros_like(chan_mean).index_add_(0, assign, centred) / denom[:, None]).sqrt()
    hi = torch.zeros(k, device=colors.device).scatter_reduce(0, assign, rel, "amax", include_self=False)
    lo = torch.zeros(k, device=colors.device).scatter_reduce(0, assign, rel, "amin", include_self=False)
    eps = 1e-3
    stats = torch.stack([torch.log(sd + eps), skew, torch.log(kurt + eps),
                         torch.log(chan_sd.mean(1) / mean.clamp_min(1e-3) + eps),
                         torch.log(hi.clamp_min(0) + eps), torch.log((-lo).clamp_min(0) + eps)], -1)
    return stats * (count > 0)[:, None]


def group_box(values: Tensor, assign: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """Per-group bounding-box centre and half extent of ``values`` [M, 3] -> ([k, 3], [k, 3]); empty groups zeros."""
    k = count.shape[0]
    idx = assign[:, None].expand(-1, values.shape[1])
    lo = torch.full((k, values.shape[1]), float("inf"), device=values.device).scatter_reduce(0, idx, values, "amin")
    hi = torch.full((k, values.shape[1]), float("-inf"), device=values.device).scatter_reduce(0, idx, values, "amax")
    full = count[:, None] > 0
    centre = torch.where(full, (lo + hi) / 2, torch.zeros_like(lo))
    half = torch.where(full, (hi - lo) / 2, torch.zeros_like(lo))
    return centre, half


def group_majority(labels: Tensor, assign: Tensor, k: int) -> Tensor:
    """Most common label (>= 0; ties: the lowest) per group -> [k] int64; -1 for groups without a label."""
    ok = labels >= 0
    labels, assign = labels[ok].long(), assign[ok]
    if len(labels) == 0:
        return torch.full((k,), -1, dtype=torch.long, device=assign.device)
    n = int(labels.max()) + 1
    votes = torch.zeros(k * n, device=assign.device).index_add_(0, assign * n + labels, torch.ones(len(labels), device=assign.device))
    votes = votes.view(k, n)
    return torch.where(votes.sum(1) > 0, votes.argmax(1), torch.full((k,), -1, dtype=torch.long, device=assign.device))


_COLOR_PROTOTYPES: dict[tuple[str, float], Tensor] = {}


def basic_color_names() -> list[str]:
    """The colour vocabulary of ``basic_color_ids``: twelve basic colour terms (the eleven of Berlin & Kay plus
    beige), with the sRGB prototypes the synthetic world paints with (``data.synth.COLORS``)."""
    from data.synth.classes import COLORS

    return list(COLORS)


def srgb_to_linear(rgb: Tensor) -> Tensor:
    """sRGB in [0, 1] [..., 3] -> linear RGB (the sRGB transfer function undone)."""
    c = rgb.float().clamp(0, 1)
    return torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_lab(linear: Tensor) -> Tensor:
    """Linear RGB [..., 3] -> CIELAB (D65) [..., 3]."""
    m = torch.tensor([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]], device=linear.device)
    xyz = (linear @ m.T) / torch.tensor([0.9505, 1.0, 1.089], device=linear.device)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    return torch.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def srgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB in [0, 1] [..., 3] -> CIELAB (D65) [..., 3]."""
    return linear_to_lab(srgb_to_linear(rgb))


SHADING_STEPS = 8  # shading factors sampled between ``shading`` and 1 (``basic_color_ids``)


def color_prototypes_lab(shading: float = 1.0, device="cpu") -> Tensor:
    """CIELAB of the basic colour terms' prototypes, each also dimmed in linear RGB by factors from ``shading`` up
    to 1 (SHADING_STEPS of them, geometric) -> [S, T, 3] (S = 1 when ``shading`` is 1)."""
    key = (str(device), float(shading))
    if key not in _COLOR_PROTOTYPES:
        from data.synth.classes import COLORS

        linear = srgb_to_linear(torch.tensor(list(COLORS.values()), dtype=torch.float32, device=device) / 255)
        factors = torch.logspace(math.log10(shading), 0, 1 if shading == 1 else SHADING_STEPS, device=device)
        _COLOR_PROTOTYPES[key] = linear_to_lab(factors[:, None, None] * linear[None])
    return _COLOR_PROTOTYPES[key]


def basic_color_ids(colors: Tensor, shading: float = 1.0) -> Tensor:
    """Index into ``basic_color_names()`` of the nearest prototype (CIELAB distance) of each colour [M, 3] -> [M].

    ``shading`` < 1 names the surface, not the light: a prototype also matches itself dimmed by any factor down to
    ``shading`` (on linear RGB, as a face turned from the light is), so a white object's shaded side stays white
    where the plain rule calls it gray. 1 = the plain nearest prototype."""
    if not 0 < shading <= 1:
        raise ValueError(f"basic_color_ids: shading = {shading!r}, expected 0 < shading <= 1")
    protos = color_prototypes_lab(shading, colors.device)
    lab = srgb_to_lab(colors)
    return torch.stack([torch.cdist(lab, p) for p in protos]).amin(0).argmin(1)


@torch.no_grad()
def pool_objects(features: Tensor, positions: Tensor, means: Tensor, segments: Tensor, colors: Tensor, k: int,
                 offset_scale: float, training: bool = False, generator: torch.Generator | None = None,
                 labels: Tensor | None = None, metric_extents: bool = False, texture_stats: bool = False,
                 color_shading: float = 1.0) -> "PooledScene":
    """One token per segment: the ``k`` largest segments (ids >= 0 in ``segments`` [M]; -1 = no segment).

    features [M, C], positions [M, 3] (normalised), means [M, 3] (metres), colors [M, 3]; optional per-Gaussian
    class ids ``labels`` [M] give each token its segment's majority class (PooledScene.labels, -1 = none). Each
    token also gets its segment's colour name, a majority vote of its Gaussians' nearest basic colour terms
    (PooledScene.color_ids; a vote, not the mean colour, because an object's legs or trim would darken the mean;
    ``color_shading`` < 1 lets each Gaussian's term allow for that much shading, ``basic_color_ids``).
    Inference orders the tokens by Gaussian count (largest first, ties by segment id); training shuffles them.
    Positions are normalised per scene (``normalize_positions``), so the box extents are relative to the room;
    ``texture_stats`` appends the luminance statistics of ``group_texture`` (6 columns; "what is it made of?"), then
    ``metric_extents`` log(box size in metres + 1 cm) (3 columns, always the last), which "is the lamp small or large?"
    needs.
    """
    valid = segments >= 0
    ids, inverse, counts = torch.unique(segments[valid], return_inverse=True, return_counts=True)
    # Largest first; ties by id (unique returns ids sorted, a stable sort keeps that order).
    order = torch.sort(counts, descending=True, stable=True).indices[:k]
    if training and len(order) > 1:
        order = order[torch.randperm(len(order), generator=generator).to(order.device)]
    slot = torch.full((len(ids),), -1, dtype=torch.long, device=features.device)
    slot[order] = torch.arange(len(order), device=features.device)
    assign = torch.full((len(segments),), -1, dtype=torch.long, device=features.device)
    assign[valid] = slot[inverse]
    take = assign >= 0
    assign = assign[take]
    pooled, count = group_mean_max(features[take], assign, k)
    pos = positions[take].float()
    centre, half = group_box(pos, assign, count)
    _, spread = group_mean_std(pos, assign, count)
    centre_m, half_m = group_box(means[take].float(), assign, count)
    colour, _ = group_mean_std(colors[take].float(), assign, count)
    geometry = [half * offset_scale, spread * offset_scale, torch.log1p(count)[:, None], colour]
    if texture_stats:
        geometry.append(group_texture(colors[take], assign, count))
    if metric_extents:  # empty slots stay all zeros (pooled_valid)
        geometry.append(torch.log(2 * half_m + 0.01) * (count > 0)[:, None])
    geometry = torch.cat(geometry, -1)
    token_labels = None if labels is None else group_majority(labels[take].to(assign.device), assign, k)
    color_ids = group_majority(basic_color_ids(colors[take], color_shading), assign, k)
    return PooledScene(cells=pooled, geometry=geometry, positions=centre, centres=centre_m, labels=token_labels,
                       color_ids=color_ids)


def select_centres(positions: Tensor, cfg: SceneTokenizerConfig, training: bool,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Choose the kept subset and the FPS centres of one scene.

    positions: [N, 3] normalised. Returns (kept [M] indices into N, centres [K] indices into kept).
    ``training`` draws a random subset and FPS start (from ``generator`` when given); inference is
    seeded by ``cfg.seed`` and starts at the point nearest the centroid.
    """
    kept = keep_subset(positions.shape[0], cfg, training, generator, positions.device)
    sub = positions[kept]
    if training:
        start = int(torch.randint(sub.shape[0], (1,), generator=generator))
    else:
        start = int((sub - sub.mean(0)).square().sum(1).argmin())
    return kept, farthest_point_sample(sub, cfg.num_tokens, start)


@dataclass
class PooledScene:
    """The parameter-free half of "cell" / "objects" tokenization of one scene (before the learned layers).

    cells [K, 2C] (cell or segment mean | max of layer-normed features), geometry [K, 7] (cells) or [K, 10]
    (objects), positions [K, 3] (normalised centre positions), centres [K, 3] (metres). Small (~K * 2C numbers), so Q&A training caches a few of
    these per scene instead of the per-Gaussian features.
    """

    cells: Tensor
    geometry: Tensor
    positions: Tensor
    centres: Tensor
    labels: Tensor | None = None  # "objects" with labels: class id per token [K] (-1 = none / empty slot)
    color_ids: Tensor | None = None  # "objects": basic colour term per token [K] (basic_color_names(); -1 = empty slot)
    box_centre: Tensor | None = None  # [3] metres: centre of the scene's bounding box (``scene_box_centre``), where SQA3D positions start


def pooled_from_tensors(t: dict[str, Tensor], variant: int = 0) -> PooledScene:
    """One variant of a scene's stacked poolings ``{"cells": [V, K, 2C], "geometry", "positions", "centres"[,
    "labels", "color_ids"]}`` (the Q&A trainer's pooled cache file) as a PooledScene, cells in float32."""
    return PooledScene(cells=t["cells"][variant].float(), geometry=t["geometry"][variant],
                       positions=t["positions"][variant], centres=t["centres"][variant],
                       labels=t["labels"][variant] if "labels" in t else None,
                       color_ids=t["color_ids"][variant] if "color_ids" in t else None,
                       box_centre=t["box_centre"][variant] if "box_centre" in t else None)


def pooled_valid(pooled: PooledScene) -> Tensor:
    """[K] bool: the slots that hold a segment or cell (empty object slots are all zeros)."""
    return pooled.geometry.abs().sum(-1) > 0


def check_scene_inputs(features: Tensor, means: Tensor, in_dim: int) -> None:
    if features.ndim != 2 or features.shape[1] != in_dim:
        raise ValueError(f"SceneTokenizer: features have shape {tuple(features.shape)}, expected (N, {in_dim})")
    if means.shape != (features.shape[0], 3):
        raise ValueError(f"SceneTokenizer: means have shape {tuple(means.shape)}, expected ({features.shape[0]}, 3)")
    if features.shape[0] == 0:
        raise ValueError("SceneTokenizer: the scene has no Gaussians")


def check_object_inputs(segments: Tensor | None, colors: Tensor | None, n: int) -> None:
    if segments is None or colors is None:
        raise ValueError("SceneTokenizer: 'objects' pooling needs per-Gaussian segment ids and colours "
                         "(see chorus_qa.segments); got " + ", ".join(
                             name for name, v in (("segments", segments), ("colors", colors)) if v is None) + " = None")
    if segments.shape != (n,):
        raise ValueError(f"SceneTokenizer: segments have shape {tuple(segments.shape)}, expected ({n},)")
    if colors.shape != (n, 3):
        raise ValueError(f"SceneTokenizer: colors have shape {tuple(colors.shape)}, expected ({n}, 3)")


def keep_subset(n: int, cfg: SceneTokenizerConfig, training: bool, generator: torch.Generator | None, device) -> Tensor:
    """Sorted indices of the Gaussians kept (at most ``cfg.max_points``; random while training, seeded otherwise)."""
    if n <= cfg.max_points:
        return torch.arange(n, device=device)
    gen = generator if training else torch.Generator().manual_seed(cfg.seed)
    return torch.randperm(n, generator=gen)[: cfg.max_points].to(device).sort().values


@torch.no_grad()
def pool_scene(features: Tensor, means: Tensor, cfg: SceneTokenizerConfig, training: bool = False,
               generator: torch.Generator | None = None, segments: Tensor | None = None,
               colors: Tensor | None = None, labels: Tensor | None = None) -> PooledScene:
    """Parameter-free pooling of one scene ("cell" or "objects"): features [N, C], means [N, 3] -> PooledScene.

    "objects" also needs ``segments`` [N] (ids, -1 = none) and ``colors`` [N, 3]; ``labels`` [N] (class ids) is optional.
    """
    check_scene_inputs(features, means, cfg.in_dim)
    means = means.float()
    positions, _, _ = normalize_positions(means)
    box_centre = scene_box_centre(means)  # from every Gaussian, so the same for all training draws
    if cfg.pooling == "objects":
        check_object_inputs(segments, colors, len(means))
        kept = keep_subset(len(means), cfg, training, generator, means.device)
        pooled = pool_objects(features[kept], positions[kept], means[kept], segments[kept].to(means.device),
                              colors[kept], cfg.num_tokens, cfg.offset_scale, training, generator,
                              None if labels is None else labels[kept].to(means.device), cfg.metric_extents,
                              cfg.texture_stats, cfg.color_shading)
        return replace(pooled, box_centre=box_centre)
    if cfg.pooling != "cell":
        raise ValueError(f"pool_scene: pooling {cfg.pooling!r} has parameters; only 'cell' and 'objects' pool ahead")
    kept, centre_idx = select_centres(positions, cfg, training, generator)
    kept_pos = positions[kept]
    centre_pos = kept_pos[centre_idx]
    cells, geometry = pool_cells(features[kept], kept_pos, centre_pos, cfg.offset_scale)
    return PooledScene(cells=cells, geometry=geometry, positions=centre_pos, centres=means[kept[centre_idx]],
                       box_centre=box_centre)


def scene_box_centre(means: Tensor, trim: float = 0.005) -> Tensor:
    """[3] centre of a scene's axis-aligned bounding box (metres), between the ``trim`` and 1 - ``trim`` quantiles
    of the Gaussian centres [N, 3] per axis, so a few floaters far outside the room do not move it.

    SQA3D gives the asker's position relative to the centre of the ScanNet scan's bounding box (its loader adds
    ``(max + min) / 2`` of the mesh vertices); a splat trained on that scan has nearly the same box.
    """
    if means.ndim != 2 or means.shape[1] != 3 or len(means) == 0:
        raise ValueError(f"scene_box_centre: expected Gaussian centres [N, 3] with N > 0, got {tuple(means.shape)}")
    pts = means.float()
    step = max(1, math.ceil(len(pts) / 4_000_000))  # torch.quantile takes at most 2**24 values per call
    q = torch.quantile(pts[::step], torch.tensor([trim, 1.0 - trim], device=pts.device), dim=0)
    return (q[0] + q[1]) / 2


# ----------------------------------------------------------------------------- module
class FourierPositionEncoding(nn.Module):
    """Learned random-Fourier features of a 3D position in [-1, 1]^3, mixed to ``dim``."""

    def __init__(self, num_frequencies: int, dim: int, sigma: float):
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(3, num_frequencies) * sigma)
        self.mix = nn.Sequential(nn.Linear(2 * num_frequencies + 3, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, positions: Tensor) -> Tensor:  # [..., 3] -> [..., dim]
        phase = 2 * math.pi * positions @ self.frequencies
        return self.mix(torch.cat([phase.sin(), phase.cos(), positions], -1))


class SceneTokenizer(nn.Module):
    """Per-Gaussian features -> K scene tokens with positions (see the module docstring)."""

    def __init__(self, config: SceneTokenizerConfig):
        super().__init__()
        self.config = config
        d = config.token_dim
        if config.pooled:
            self.feature_in = nn.Linear(2 * config.in_dim, d)
            self.offset_in = nn.Linear(config.geometry_dim, d)
            self.pool_mix = nn.Sequential(nn.GELU(), nn.Linear(d, d))
        else:
            self.feature_norm = nn.LayerNorm(config.in_dim)
            self.feature_in = nn.Linear(config.in_dim, d)
            self.offset_in = nn.Linear(3, d)
            self.pool_mix = nn.Sequential(nn.GELU(), nn.Linear(2 * d, d))
        self.position_encoding = FourierPositionEncoding(config.num_frequencies, d, config.fourier_sigma)
        self.out_norm = nn.LayerNorm(d)
        self.relations = (SpatialRelationEncoder(d, config.relation_layers, config.relation_heads)
                          if config.relation_layers else None)

    def relate(self, tokens: Tensor, centres: Tensor, valid: Tensor | None = None) -> Tensor:
        """The spatial relation layers (identity without them): tokens [K, D_tok], centres [K, 3] metres, valid [K]."""
        if self.relations is None or self.config.relation_tokens:
            return tokens
        return self.relations(tokens, centres.to(tokens.device), valid)

    def tokenize_one(self, features: Tensor, means: Tensor, segments: Tensor | None = None,
                     colors: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """features: [N, C], means: [N, 3] (+ segments [N], colors [N, 3] for "objects") -> tokens [K, D_tok], centres [K, 3] (metres)."""
        cfg = self.config
        if cfg.pooled:
            return self.embed_pooled(pool_scene(features, means, cfg, self.training, segments=segments, colors=colors))
        check_scene_inputs(features, means, cfg.in_dim)
        means = means.float()
        with torch.no_grad():
            positions, _, _ = normalize_positions(means)
            kept, centre_idx = select_centres(positions, cfg, self.training)
            kept_pos = positions[kept]
            centre_pos = kept_pos[centre_idx]                                  # [K, 3]
            neighbours = kept[knn_indices(centre_pos, kept_pos, cfg.num_neighbors)]  # [K, k] into N
        dtype = self.feature_in.weight.dtype
        feats = features[neighbours].to(dtype)                                 # [K, k, C]
        offsets = (positions[neighbours] - centre_pos[:, None]) * cfg.offset_scale
        hidden = nn.functional.gelu(self.feature_in(self.feature_norm(feats)) + self.offset_in(offsets.to(dtype)))
        pooled = self.pool_mix(torch.cat([hidden.mean(1), hidden.amax(1)], -1))
        tokens = self.out_norm(pooled + self.position_encoding(centre_pos.to(dtype)))
        centres = means[kept[centre_idx]]
        return self.relate(tokens, centres), centres

    def embed_pooled(self, pooled: PooledScene) -> tuple[Tensor, Tensor]:
        """The learned half of cell / object tokenization: PooledScene -> tokens [K, D_tok], centres [K, 3] (metres)."""
        cfg = self.config
        if not cfg.pooled:
            raise ValueError(f"SceneTokenizer.embed_pooled: pooling is {cfg.pooling!r}; pooled scenes exist for 'cell' and 'objects' only")
        k, g = cfg.num_tokens, cfg.geometry_dim
        if pooled.cells.shape != (k, 2 * cfg.in_dim) or pooled.geometry.shape != (k, g):
            raise ValueError(f"SceneTokenizer.embed_pooled: cells {tuple(pooled.cells.shape)} and geometry "
                             f"{tuple(pooled.geometry.shape)}; expected ({k}, {2 * cfg.in_dim}) and ({k}, {g})")
        weight = self.feature_in.weight
        dtype, device = weight.dtype, weight.device
        hidden = self.feature_in(pooled.cells.to(device, dtype)) + self.offset_in(pooled.geometry.to(device, dtype))
        tokens = self.out_norm(self.pool_mix(hidden) + self.position_encoding(pooled.positions.to(device, dtype)))
        centres = pooled.centres.to(device)
        return self.relate(tokens, centres, pooled_valid(pooled).to(device)), centres

    def forward(self, features: Tensor, means: Tensor, offset: Tensor | None = None, segments: Tensor | None = None,
                colors: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """features [N, C], means [N, 3], offset [B] cumulative counts or None (segments [N], colors [N, 3]: "objects").

        Without ``offset``: one scene -> (tokens [K, D_tok], centres [K, 3]).
        With ``offset``: B concatenated scenes -> (tokens [B, K, D_tok], centres [B, K, 3]).
        """
        if offset is None:
            return self.tokenize_one(features, means, segments, colors)
        part = lambda x, s, e: None if x is None else x[s:e]  # noqa: E731
        outs = [self.tokenize_one(features[s:e], means[s:e], part(segments, s, e), part(colors, s, e))
                for s, e in scene_slices(offset, len(means))]
        return torch.stack([t for t, _ in outs]), torch.stack([c for _, c in outs])
