"""Point Transformer V3 (encoder only) over Gaussians: the Chorus backbone.

Data flow for a batch of B scenes (N input points -> M_s voxels at stage s):

1. grid sampling: points -> voxels of ``grid_size`` (features averaged), keeping
   the inverse index so every input point gets its voxel's output back;
2. serialization: z-order / Hilbert codes (and transposed variants) per voxel,
   batch index in the high bits; one order per block, cycled, shuffled in training;
3. stage 0: sparse-conv stem, then blocks; stage s > 0: grid pooling (stride 2,
   cluster index kept), then blocks. A block is
   ``x += CPE(x)`` (SubMConv3d -> Linear -> LayerNorm),
   ``x += DropPath(Attn(LN(x)))`` (attention inside patches of ``patch_size``
   consecutive voxels of the block's order, padded per scene with masked slots),
   ``x += DropPath(MLP(LN(x)))``;
4. read-out: every stage unpooled to stage 0 through the cluster indices,
   concatenated ([C_0 | C_1 | ... ]) and sent back to the input points.

Scenes never see each other: per-scene padding and per-scene serialization
depth make a batch give the same features as its scenes one by one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import EncoderConfig
from .grid import pool_grid, scatter_max, scatter_mean, voxelize
from .serialization import order_and_inverse, serialize
from .spconv_compat import SubMConv3d, sparse_tensor

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


# ---------------------------------------------------------------------------- patches
@dataclass
class PatchLayout:
    """How the M voxels of one order fill P patches of K slots (T = P * K slots).

    slot_source  [T] int64   voxel in each slot, M for a padding slot
    voxel_slot   [M] int64   slot of each voxel
    key_mask     [P, 1, 1, K] bool or None   True where a slot holds a voxel (None: no padding)
    """

    slot_source: Tensor
    voxel_slot: Tensor
    key_mask: Tensor | None
    patch: int


def patch_layout(order: Tensor, batch: Tensor, batch_size: int, patch_size: int) -> PatchLayout:
    """Cut each scene's serialized voxels into patches; pad each scene to a multiple of the patch.

    order: [M] voxel at each serialized position (scenes contiguous); batch: [M] scene of each voxel.
    The patch shrinks to the largest scene when that has fewer than ``patch_size`` voxels.
    """
    m = order.shape[0]
    device = order.device
    counts = torch.bincount(batch, minlength=batch_size)
    k = max(1, min(patch_size, int(counts.max())))
    padded = torch.div(counts + k - 1, k, rounding_mode="floor") * k
    start = torch.cumsum(counts, 0) - counts
    padded_start = torch.cumsum(padded, 0) - padded
    total = int(padded.sum())
    slot_scene = torch.repeat_interleave(torch.arange(batch_size, device=device), padded)
    local = torch.arange(total, device=device) - padded_start[slot_scene]
    valid = local < counts[slot_scene]
    position = (start[slot_scene] + local).clamp_max(max(m - 1, 0))
    slot_source = torch.where(valid, order[position], torch.full_like(local, m))
    voxel_slot = torch.empty(m, dtype=torch.long, device=device)
    voxel_slot[slot_source[valid]] = torch.nonzero(valid).squeeze(1)
    key_mask = None if bool(valid.all()) else valid.view(-1, 1, 1, k)
    return PatchLayout(slot_source, voxel_slot, key_mask, k)


class SerializedPoints:
    """The voxels of one stage: coordinates, scene index, serialization and spconv rule books.

    grid_coord [M, 3] int64; batch [M] int64; codes / order / inverse [O, M] int64 (one row per order).
    """

    def __init__(self, grid_coord: Tensor, batch: Tensor, batch_size: int, codes: Tensor, patch_size: int):
        self.grid_coord = grid_coord
        self.batch = batch
        self.batch_size = batch_size
        self.codes = codes
        self.order, self.inverse = order_and_inverse(codes)
        self.patch_size = patch_size
        self._layouts: dict[int, PatchLayout] = {}
        self._sparse = None

    def layout(self, order_index: int) -> PatchLayout:
        if order_index not in self._layouts:
            self._layouts[order_index] = patch_layout(self.order[order_index], self.batch, self.batch_size, self.patch_size)
        return self._layouts[order_index]

    def sparse(self, feats: Tensor):
        """A spconv tensor over these voxels; convs with the same indice_key share its rule book."""
        if self._sparse is None:
            self._sparse = sparse_tensor(feats, self.grid_coord, self.batch, self.batch_size)
        return self._sparse


# ---------------------------------------------------------------------------- layers
def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth per row (point): zero a residual branch with probability p, rescale the rest."""
    if p == 0.0 or not training:
        return x
    keep = torch.empty(x.shape[0], 1, device=x.device, dtype=x.dtype).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class PatchAttention(nn.Module):
    """Multi-head self-attention inside serialized patches (SDPA). feats [M, C] -> [M, C]."""

    def __init__(self, channels: int, heads: int, qkv_bias: bool = True, enable_flash: bool = True):
        super().__init__()
        self.heads = heads
        self.enable_flash = enable_flash
        self.qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        self.proj = nn.Linear(channels, channels)

    def forward(self, feats: Tensor, layout: PatchLayout) -> Tensor:
        m, c = feats.shape
        k, h = layout.patch, self.heads
        qkv = self.qkv(feats)
        if layout.key_mask is not None:
            qkv = torch.cat([qkv, qkv.new_zeros(1, 3 * c)], 0)  # row M feeds padding slots
        qkv = qkv[layout.slot_source].view(-1, k, 3, h, c // h).permute(2, 0, 3, 1, 4)  # [3, P, H, K, d]
        with _sdpa_backends(feats.device, self.enable_flash):
            out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=layout.key_mask)
        out = out.transpose(1, 2).reshape(-1, c)[layout.voxel_slot]
        return self.proj(out)


def _sdpa_backends(device: torch.device, enable_flash: bool):
    import contextlib

    if device.type != "cuda" or enable_flash:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


class MLP(nn.Sequential):
    def __init__(self, channels: int, hidden: int):
        super().__init__(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))


class Block(nn.Module):
    """CPE + pre-norm patch attention + pre-norm MLP, residual. feats [M, C] -> [M, C]."""

    def __init__(self, channels: int, heads: int, config: EncoderConfig, drop_path: float, indice_key: str):
        super().__init__()
        self.cpe_conv = SubMConv3d(channels, channels, config.cpe_kernel, indice_key=indice_key)
        self.cpe_linear = nn.Linear(channels, channels)
        self.cpe_norm = nn.LayerNorm(channels)
        self.norm1 = nn.LayerNorm(channels)
        self.attn = PatchAttention(channels, heads, config.qkv_bias, config.enable_flash)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = MLP(channels, int(round(channels * config.mlp_ratio)))
        self.drop_path = drop_path

    def forward(self, points: SerializedPoints, feats: Tensor, order_index: int) -> Tensor:
        feats = feats + self.cpe_norm(self.cpe_linear(self.cpe_conv(points.sparse(feats), feats)))
        feats = feats + drop_path(self.attn(self.norm1(feats), points.layout(order_index)), self.drop_path, self.training)
        return feats + drop_path(self.mlp(self.norm2(feats)), self.drop_path, self.training)


class GridPooling(nn.Module):
    """Linear -> reduce over each cluster (max or mean) -> LayerNorm -> GELU. [M, Cin] -> [K, Cout]."""

    def __init__(self, in_channels: int, out_channels: int, reduce: str):
        super().__init__()
        self.proj = nn.Linear(in_channels, out_channels)
        self.norm = nn.LayerNorm(out_channels)
        self.reduce = reduce

    def forward(self, feats: Tensor, cluster: Tensor, size: int) -> Tensor:
        feats = self.proj(feats)
        feats = scatter_max(feats, cluster, size) if self.reduce == "max" else scatter_mean(feats, cluster, size)
        return F.gelu(self.norm(feats))


class Stem(nn.Module):
    """Sparse-conv embedding of the input channels. [M, Cin] -> [M, C0]."""

    def __init__(self, in_channels: int, channels: int, kernel: int):
        super().__init__()
        self.conv = SubMConv3d(in_channels, channels, kernel, indice_key="stem")
        self.norm = nn.LayerNorm(channels)

    def forward(self, points: SerializedPoints, feats: Tensor) -> Tensor:
        return F.gelu(self.norm(self.conv(points.sparse(feats), feats)))


# ---------------------------------------------------------------------------- outputs
@dataclass
class EncoderStages:
    """Everything one forward pass computed (S stages, N input points, B scenes).

    feats     list of [M_s, C_s]    features of each stage's voxels
    grid      list of [M_s, 3]      integer voxel coordinates of each stage (cells of grid_size * 2**s)
    batch     list of [M_s]         scene of each voxel
    clusters  list of index tensors: clusters[0] [N] input point -> stage-0 voxel,
              clusters[s] [M_{s-1}] stage s-1 voxel -> stage s voxel
    origin    [B, 3] int64          absolute stage-0 voxel index of each scene's origin
    """

    feats: list[Tensor]
    grid: list[Tensor]
    batch: list[Tensor]
    clusters: list[Tensor]
    origin: Tensor

    def point_to_stage(self, stage: int) -> Tensor:
        """[N] index of the stage-``stage`` voxel that holds each input point."""
        index = self.clusters[0]
        for s in range(1, stage + 1):
            index = self.clusters[s][index]
        return index

    def read_out(self) -> Tensor:
        """Per input point: all stages unpooled to stage 0 and concatenated. -> [N, sum(C_s)]."""
        feats = self.feats[-1]
        for s in range(len(self.feats) - 1, 0, -1):
            feats = torch.cat([self.feats[s - 1], feats[self.clusters[s]]], 1)
        return feats[self.clusters[0]]


# ---------------------------------------------------------------------------- model
class ChorusEncoder(nn.Module):
    """PTv3 encoder over Gaussians; see the module docstring for the data flow."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.out_dim = config.out_dim
        total_blocks = sum(config.depths)
        rates = torch.linspace(0, config.drop_path, max(total_blocks, 1)).tolist()
        self.stem = Stem(config.in_channels, config.channels[0], config.embed_kernel)
        self.pools = nn.ModuleList()
        self.stages = nn.ModuleList()
        block_index = 0
        for s, (c, d, h) in enumerate(zip(config.channels, config.depths, config.heads)):
            if s > 0:
                self.pools.append(GridPooling(config.channels[s - 1], c, config.pool_reduce))
            blocks = [Block(c, h, config, rates[block_index + i], indice_key=f"cpe{s}") for i in range(d)]
            block_index += d
            self.stages.append(nn.ModuleList(blocks))
        self.apply(_init_weights)

    def forward(self, means: Tensor, feats: Tensor, offset: Tensor) -> Tensor:
        """Per-point features.

        means: [N, 3] float metres (voxelization/serialization only); feats: [N, Cin];
        offset: [B] cumulative counts -> [N, out_dim] in input order.
        """
        return self.forward_stages(means, feats, offset).read_out()

    def forward_stages(self, means: Tensor, feats: Tensor, offset: Tensor) -> EncoderStages:
        """Run the encoder and return every stage (see :class:`EncoderStages`)."""
        cfg = self.config
        if feats.ndim != 2 or feats.shape[1] != cfg.in_channels:
            raise ValueError(f"feats has shape {tuple(feats.shape)}, expected (N, {cfg.in_channels}) for variant {cfg.variant!r}")
        if feats.shape[0] != means.shape[0]:
            raise ValueError(f"feats has {feats.shape[0]} rows, means {means.shape[0]}; expected equal")
        if means.shape[0] == 0:
            raise ValueError("the encoder got an empty batch (0 points)")
        offset = offset.to(means.device).long()
        batch_size = int(offset.shape[0])
        vox = voxelize(means, offset, cfg.grid_size, align=2 ** (cfg.num_stages - 1), max_bits=cfg.code_bits)
        orders = list(cfg.orders)
        if self.training and cfg.shuffle_orders:
            orders = [orders[i] for i in torch.randperm(len(orders)).tolist()]
        codes, _, _ = serialize(vox.grid_coord, vox.batch, tuple(orders), depth=cfg.code_bits)
        grid, batch = vox.grid_coord, vox.batch
        x = scatter_mean(feats.to(self.stem.norm.weight.dtype), vox.inverse, vox.num_voxels)
        out = EncoderStages([], [], [], [vox.inverse], vox.origin)
        for s, blocks in enumerate(self.stages):
            if s > 0:
                grid, batch, cluster = pool_grid(grid, batch, 2)
                x = self.pools[s - 1](x, cluster, grid.shape[0])
                # nesting curves: a parent's code is its children's code >> 3
                codes = codes.new_empty(codes.shape[0], grid.shape[0]).scatter_(1, cluster.expand(codes.shape[0], -1), codes >> 3)
                out.clusters.append(cluster)
            points = SerializedPoints(grid, batch, batch_size, codes, cfg.patch_size)
            if s == 0:
                x = self.stem(points, x)
            for i, block in enumerate(blocks):
                x = block(points, x, i % len(orders))
            out.feats.append(x)
            out.grid.append(grid)
            out.batch.append(batch)
        return out

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt", "model": "ChorusEncoder"})
        return directory

    @classmethod
    def from_pretrained(cls, directory, map_location="cpu") -> "ChorusEncoder":
        """Rebuild from ``config.json`` + ``model.safetensors`` (no pickle); strict key check."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing; a ChorusEncoder checkpoint folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
        try:
            config = EncoderConfig.from_dict(json.loads(config_path.read_text()))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{config_path}: invalid encoder config: {err}") from err
        model = cls(config)
        state = load_file(str(weights_path), device=str(map_location))
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        wrong_shape = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if k in state and state[k].shape != v.shape]
        if missing or unexpected or wrong_shape:
            raise ValueError(
                f"{weights_path}: weights do not match {config_path.name}: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}, wrong shapes {wrong_shape[:5]}"
            )
        model.load_state_dict(state, strict=True)
        return model.to(map_location)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _init_weights(module: nn.Module):
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
