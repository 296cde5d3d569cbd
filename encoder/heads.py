"""Per-teacher projectors: shared encoder features -> each teacher's feature space.

Paper recipe: LayerNorm -> Linear(C, 4C) -> GELU -> Linear(4C, D_t), one
projector per teacher. The set of projectors is saved beside the encoder with
its own ``config.json`` + ``model.safetensors`` so a checkpoint folder reloads
from itself alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn


class TeacherProjector(nn.Module):
    """LayerNorm -> Linear(C, mult*C) -> GELU -> Linear(mult*C, D_t).

    forward(x: [N, C]) -> [N, D_t]
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_mult: int = 4):
        super().__init__()
        if in_dim <= 0 or out_dim <= 0 or hidden_mult <= 0:
            raise ValueError(f"TeacherProjector: in_dim={in_dim}, out_dim={out_dim}, hidden_mult={hidden_mult} must all be > 0")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.norm = nn.LayerNorm(in_dim)
        self.fc1 = nn.Linear(in_dim, hidden_mult * in_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_mult * in_dim, out_dim)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The activations before the last layer: [N, C] -> [N, mult*C]."""
        return self.act(self.fc1(self.norm(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.hidden(x))

    def scores(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``forward(x) @ targets.T`` [N, L] for targets [L, D_t], with the last layer folded into the targets:
        L * H instead of D_t * H multiply-adds per row, a third of the projector's cost when L << D_t."""
        targets = targets.to(self.fc2.weight.dtype)
        return self.hidden(x) @ (targets @ self.fc2.weight).T + targets @ self.fc2.bias


@dataclass
class HeadsConfig:
    """Shapes of the projector set.

    in_dim: encoder output channels C.
    teacher_dims: teacher name -> target dimension D_t.
    hidden_mult: hidden width multiplier (paper: 4).
    """

    in_dim: int
    teacher_dims: dict[str, int] = field(default_factory=dict)
    hidden_mult: int = 4

    def __post_init__(self):
        if self.in_dim <= 0:
            raise ValueError(f"HeadsConfig.in_dim={self.in_dim}: expected > 0")
        if not self.teacher_dims:
            raise ValueError("HeadsConfig.teacher_dims is empty: expected at least one teacher")
        for name, dim in self.teacher_dims.items():
            if int(dim) <= 0:
                raise ValueError(f"HeadsConfig.teacher_dims[{name!r}]={dim}: expected > 0")
        self.teacher_dims = {str(k): int(v) for k, v in self.teacher_dims.items()}


class MultiTeacherHeads(nn.Module):
    """One :class:`TeacherProjector` per teacher.

    forward(x: [N, C], names=None) -> {teacher: [N, D_t]} for ``names`` (default: all).
    """

    def __init__(self, cfg: HeadsConfig):
        super().__init__()
        self.cfg = cfg
        # ModuleDict keys may not contain '.', teacher names may ("siglip2-so400m-p16-512").
        self.projectors = nn.ModuleDict(
            {self._key(n): TeacherProjector(cfg.in_dim, d, cfg.hidden_mult) for n, d in cfg.teacher_dims.items()}
        )

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "_")

    @property
    def names(self) -> list[str]:
        return list(self.cfg.teacher_dims)

    def projector(self, name: str) -> TeacherProjector:
        if name not in self.cfg.teacher_dims:
            raise KeyError(f"no projector for teacher {name!r}; have {self.names}")
        return self.projectors[self._key(name)]

    def project(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C] -> [N, D_name]"""
        return self.projector(name)(x)

    def scores(self, name: str, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """x: [N, C], targets [L, D_name] -> [N, L] = project(name, x) @ targets.T (computed more cheaply)."""
        return self.projector(name).scores(x, targets)

    def forward(self, x: torch.Tensor, names: list[str] | None = None) -> dict[str, torch.Tensor]:
        return {n: self.project(n, x) for n in (names or self.names)}

    def save_pretrained(self, folder) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(asdict(self.cfg), indent=2))
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(folder / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, folder, map_location="cpu") -> "MultiTeacherHeads":
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path = folder / "config.json"
        if not cfg_path.exists():
            raise FileNotFoundError(f"{cfg_path}: missing; expected a folder written by MultiTeacherHeads.save_pretrained")
        heads = cls(HeadsConfig(**json.loads(cfg_path.read_text())))
        heads.load_state_dict(load_file(str(folder / "model.safetensors"), device=str(map_location)))
        return heads
