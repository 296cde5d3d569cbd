"""The projector from scene tokens into the LLM's embedding space (LLaVA's ``mlp2x_gelu``)."""

from __future__ import annotations

from torch import Tensor, nn


def mlp2x_gelu(in_dim: int, hidden_size: int) -> nn.Sequential:
    """Linear(in_dim -> hidden) -> GELU -> Linear(hidden -> hidden): [..., in_dim] -> [..., hidden_size]."""
    if in_dim <= 0 or hidden_size <= 0:
        raise ValueError(f"mlp2x_gelu({in_dim}, {hidden_size}): both widths must be positive")
    return nn.Sequential(nn.Linear(in_dim, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size))


def cap_norm(x: Tensor, max_norm: float) -> Tensor:
    """``x`` [..., D] with every vector longer than ``max_norm`` scaled down to that length (direction kept; shorter
    vectors unchanged). The gradient still turns a capped vector, it only cannot lengthen it."""
    norm = x.float().norm(dim=-1, keepdim=True)
    return x * (max_norm / norm.clamp_min(1e-12)).clamp(max=1.0).to(x.dtype)
