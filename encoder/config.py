"""Configuration of the Chorus encoder (Point Transformer V3, encoder only).

``EncoderConfig.paper()`` is the paper's backbone (Sonata's PTv3 m2 encoder:
channels 48-96-192-384-512, depths 3-3-3-12-3, 1232-D read-out).
``EncoderConfig.small()`` is sized for pretraining on our 2-core CPUs.
The config round-trips through ``to_dict`` / ``from_dict`` (``config.json``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

VARIANT_CHANNELS = {"gaussian": 11, "point": 9}  # colour 3 + opacity 1 + quat 4 + scale 3 | xyz 3 + colour 3 + normal 3
KNOWN_ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")
POOL_REDUCTIONS = ("max", "mean")


@dataclass
class EncoderConfig:
    """Hyper-parameters of :class:`encoder.ChorusEncoder`. Lengths of channels/depths/heads = number of stages."""

    variant: str = "gaussian"  # "gaussian" (11 input channels) or "point" (9)
    in_channels: int | None = None  # derived from variant; if given it must match
    grid_size: float = 0.02  # metres per voxel at stage 0
    channels: tuple[int, ...] = (48, 96, 192, 384, 512)  # feature width per stage
    depths: tuple[int, ...] = (3, 3, 3, 12, 3)  # transformer blocks per stage
    heads: tuple[int, ...] = (3, 6, 12, 24, 32)  # attention heads per stage (must divide channels)
    patch_size: int = 1024  # points per attention patch (shrinks to the cloud size for small clouds)
    mlp_ratio: float = 4.0  # hidden width of the block MLP / channels
    drop_path: float = 0.3  # stochastic depth, linearly increasing over all blocks
    orders: tuple[str, ...] = KNOWN_ORDERS  # serialization orders, cycled over the blocks of a stage
    shuffle_orders: bool = True  # shuffle the orders every forward pass in training mode
    enable_flash: bool = True  # allow the flash SDPA backend on CUDA (ignored on CPU)
    qkv_bias: bool = True
    embed_kernel: int = 5  # kernel of the sparse-conv stem
    cpe_kernel: int = 3  # kernel of the conditional positional encoding (SubMConv3d)
    pool_reduce: str = "max"  # reduction of grid pooling between stages: "max" or "mean"
    code_bits: int = 16  # bits per axis of serialization codes at stage 0 (grid extent 2**bits voxels per scene)

    def __post_init__(self):
        def fail(field: str, problem: str):
            raise ValueError(f"EncoderConfig.{field}: {problem}")

        if self.variant not in VARIANT_CHANNELS:
            fail("variant", f"got {self.variant!r}, expected one of {sorted(VARIANT_CHANNELS)}")
        expected = VARIANT_CHANNELS[self.variant]
        if self.in_channels is None:
            self.in_channels = expected
        elif int(self.in_channels) != expected:
            fail("in_channels", f"got {self.in_channels}, expected {expected} for variant {self.variant!r}")
        self.channels = tuple(int(c) for c in self.channels)
        self.depths = tuple(int(d) for d in self.depths)
        self.heads = tuple(int(h) for h in self.heads)
        self.orders = tuple(str(o) for o in self.orders)
        n = len(self.channels)
        if n < 1:
            fail("channels", "needs at least one stage")
        for name in ("depths", "heads"):
            if len(getattr(self, name)) != n:
                fail(name, f"has {len(getattr(self, name))} entries, expected {n} (one per stage, like channels)")
        for s, (c, d, h) in enumerate(zip(self.channels, self.depths, self.heads)):
            if c <= 0 or d < 0 or h <= 0:
                fail("channels/depths/heads", f"stage {s} has channels={c}, depth={d}, heads={h}; expected positive (depth >= 0)")
            if c % h:
                fail("heads", f"stage {s}: {h} heads do not divide {c} channels")
        if not self.grid_size > 0:
            fail("grid_size", f"got {self.grid_size}, expected > 0 metres")
        if self.patch_size < 1:
            fail("patch_size", f"got {self.patch_size}, expected >= 1")
        if self.mlp_ratio <= 0:
            fail("mlp_ratio", f"got {self.mlp_ratio}, expected > 0")
        if not 0.0 <= self.drop_path < 1.0:
            fail("drop_path", f"got {self.drop_path}, expected in [0, 1)")
        if not self.orders:
            fail("orders", "needs at least one order")
        for o in self.orders:
            if o not in KNOWN_ORDERS:
                fail("orders", f"unknown order {o!r}, expected some of {KNOWN_ORDERS}")
        if self.pool_reduce not in POOL_REDUCTIONS:
            fail("pool_reduce", f"got {self.pool_reduce!r}, expected one of {POOL_REDUCTIONS}")
        if self.embed_kernel % 2 == 0 or self.cpe_kernel % 2 == 0:
            fail("embed_kernel/cpe_kernel", f"got {self.embed_kernel}/{self.cpe_kernel}, expected odd kernels")
        if not n - 1 < self.code_bits <= 16:
            fail("code_bits", f"got {self.code_bits}, expected in ({n - 1}, 16] (codes are packed in int64 with the batch index)")

    # ------------------------------------------------------------------ presets
    @classmethod
    def paper(cls, **overrides) -> "EncoderConfig":
        """The paper's encoder: 5 stages, 1232-D read-out, grid 0.02 m, patch 1024."""
        return cls(**overrides)

    @classmethod
    def small(cls, **overrides) -> "EncoderConfig":
        """A CPU-sized encoder: grid 0.05 m, 672-D read-out, 7 blocks, patch 512, 3^3 stem (7.2M params)."""
        base = dict(
            grid_size=0.05,
            channels=(32, 64, 128, 192, 256),
            depths=(1, 1, 2, 2, 1),
            heads=(2, 4, 8, 12, 16),
            patch_size=512,
            drop_path=0.1,
            embed_kernel=3,  # the 5^3 stem was half of the forward time on CPU
        )
        base.update(overrides)
        return cls(**base)

    # ------------------------------------------------------------------ derived
    @property
    def num_stages(self) -> int:
        return len(self.channels)

    @property
    def out_dim(self) -> int:
        """Width of the per-point read-out: all stages unpooled and concatenated."""
        return sum(self.channels)

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EncoderConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"EncoderConfig: unknown fields {unknown}; known fields are {sorted(known)}")
        return cls(**d)
