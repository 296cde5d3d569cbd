"""Spatial relation layers: self-attention among one scene's tokens, biased by each pair's geometry.

Scene tokens carry their own position (a Fourier encoding of the box centre), but comparing two positions, or
finding an object's nearest neighbour, is then left to the LLM, and a LoRA-tuned 135M LLM does not learn it in
one pass over the data (README: "closer" and "left/right" questions sit at chance). These layers do that work
before the projector, the way 3D vision-language encoders (3D-VisTA's spatial attention, Vil3DRef) relate
objects: every head adds to its attention logits a learned function of the pair's offset

    bias_h(i, j) = MLP_h(dx, dy, dz, |d_xy|, |d|, log(1 + |d|))      (d = centre_j - centre_i, metres)

so a head can attend to an object's nearest neighbours, to what lies above it, or to one particular class at
any distance, and write what it found into the object's own token ("near the door", "next to a bed").

Each layer is pre-norm attention + MLP with residuals whose output projections start at zero, so a model with
relation layers starts as exactly the model without them. Empty slots (no segment) neither attend nor are
attended to and pass through unchanged. Cheap: K = 32 tokens, two layers of width 256, ~1.1M parameters.

Written into the object tokens (``relation_tokens: false``), measured and not adopted (README; section ``relation_layers`` of ``benchmarks/results/qa_ablation.json``): two layers
on release C's recipe score -6.3 +- 0.7 EM@1 against it. Left/right and situated-turn questions gain ~5 points,
but the projector's residual grows to 1.26x the class-name word it is added to (C: 0.46x;
``benchmarks/token_norms.py``) and drowns the names: colour -24, room type -19, counting -12. The released
model keeps the relation output out of the name-carrying token: with ``relation_tokens`` (``ChorusQAModel``) the change
these layers make to an object token is projected into a token of its own after the object's, and the object token
stays as it was: +1.0 +- 0.5 EM@1 against C, left/right +4.9, situated turn +5.1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

PAIR_FEATURES = 6  # dx, dy, dz, horizontal distance, distance, log(1 + distance)


def pair_geometry(centres: Tensor) -> Tensor:
    """centres [..., K, 3] (metres) -> pair features [..., K, K, 6] of d = centre_j - centre_i (row i, column j)."""
    d = centres.unsqueeze(-3) - centres.unsqueeze(-2)
    horizontal = d[..., :2].norm(dim=-1, keepdim=True)
    dist = d.norm(dim=-1, keepdim=True)
    return torch.cat([d, horizontal, dist, torch.log1p(dist)], -1)


class RelationLayer(nn.Module):
    def __init__(self, dim: int, heads: int, bias_hidden: int = 32):
        super().__init__()
        if dim % heads:
            raise ValueError(f"RelationLayer: token width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_out = nn.Linear(dim, dim)
        self.pair_bias = nn.Sequential(nn.Linear(PAIR_FEATURES, bias_hidden), nn.GELU(), nn.Linear(bias_hidden, heads))
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        for out in (self.attn_out, self.mlp[-1]):
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)

    def forward(self, x: Tensor, pairs: Tensor, valid: Tensor) -> Tensor:
        """x [B, K, D], pairs [B, K, K, 6], valid [B, K] bool -> [B, K, D]."""
        b, k, dim = x.shape
        h = self.heads
        q, key, v = self.qkv(self.attn_norm(x)).view(b, k, 3, h, dim // h).permute(2, 0, 3, 1, 4)  # 3 x [B, h, K, dh]
        logits = q @ key.transpose(-1, -2) / math.sqrt(dim // h) + self.pair_bias(pairs).permute(0, 3, 1, 2)
        logits = logits.masked_fill(~valid[:, None, None, :], torch.finfo(logits.dtype).min)
        mixed = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, k, dim)
        keep = valid.unsqueeze(-1).to(x.dtype)
        x = x + keep * self.attn_out(mixed)
        return x + keep * self.mlp(self.mlp_norm(x))


class SpatialRelationEncoder(nn.Module):
    """``layers`` relation layers over the tokens of each scene (see the module docstring)."""

    def __init__(self, dim: int, layers: int = 2, heads: int = 4):
        super().__init__()
        if layers <= 0:
            raise ValueError(f"SpatialRelationEncoder: layers = {layers}, expected > 0 (0 means no relation encoder)")
        self.layers = nn.ModuleList(RelationLayer(dim, heads) for _ in range(layers))

    def forward(self, tokens: Tensor, centres: Tensor, valid: Tensor | None = None) -> Tensor:
        """tokens [K, D] or [B, K, D], centres [.., K, 3] (metres), valid [.., K] bool (default all) -> like tokens."""
        single = tokens.ndim == 2
        if single:
            tokens, centres = tokens.unsqueeze(0), centres.unsqueeze(0)
            valid = None if valid is None else valid.unsqueeze(0)
        if centres.shape != (*tokens.shape[:2], 3):
            raise ValueError(f"SpatialRelationEncoder: centres {tuple(centres.shape)} for tokens {tuple(tokens.shape)}")
        if valid is None:
            valid = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        pairs = pair_geometry(centres.to(tokens.dtype))
        for layer in self.layers:
            tokens = layer(tokens, pairs, valid.to(tokens.device))
        return tokens[0] if single else tokens
