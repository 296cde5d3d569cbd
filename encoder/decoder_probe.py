"""Decoder probing: a light trainable decoder over frozen per-Gaussian features.

Between a linear probe (one ``Linear`` per point) and full fine-tuning: the decoder
sees each Gaussian's feature and those of its ``knn_k`` nearest neighbours in space::

    h_j   = GELU(LN(W_in (x_j - mean) / std))             for the point and its neighbours
    ctx_i = [h_i, max_j h_j, mean_j h_j]                   (j over the k neighbours)
    logit = Linear(GELU(LN(W_mid ctx_i)))                  -> [C]

so it can smooth labels and use local context the frozen features did not encode,
with about ``D*h + 3*h*h + h*C`` parameters (h = ``hidden``). Features stay frozen and
are computed once by the caller; neighbour indices are computed once per scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .seg_metrics import confusion_matrix, segmentation_metrics


@dataclass
class DecoderProbeConfig:
    """hidden width, neighbours, AdamW schedule over (subsampled) labelled points."""

    hidden: int = 128
    knn_k: int = 16
    epochs: int = 20
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 2048
    max_train_points: int = 200_000
    seed: int = 0

    def __post_init__(self):
        for name in ("hidden", "knn_k", "epochs", "batch_size", "max_train_points"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DecoderProbeConfig.{name}={getattr(self, name)}: expected > 0")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"DecoderProbeConfig: lr={self.lr} must be > 0 and weight_decay={self.weight_decay} >= 0")


def knn_indices(xyz, k: int) -> torch.Tensor:
    """[N, k] indices of each point's k nearest other points (itself when N <= k)."""
    from scipy.spatial import cKDTree

    pts = np.asarray(torch.as_tensor(xyz).detach().cpu(), dtype=np.float64)
    kk = min(k + 1, len(pts))
    _, idx = cKDTree(pts).query(pts, k=kk)
    idx = idx.reshape(len(pts), kk)[:, 1:] if kk > 1 else idx.reshape(len(pts), 1)
    if idx.shape[1] < k:  # tiny scenes: repeat neighbours
        idx = np.concatenate([idx, np.repeat(idx[:, -1:], k - idx.shape[1], 1)], 1)
    return torch.from_numpy(idx.astype(np.int64))


class DecoderProbe(nn.Module):
    """forward(x [B, D], neighbours [B, k, D]) -> logits [B, C]; see the module docstring."""

    def __init__(self, dim: int, num_classes: int, hidden: int = 128):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.embed = nn.Sequential(nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.GELU())
        self.mix = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.LayerNorm(hidden), nn.GELU())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        h = self.embed((x.float() - self.mean) / self.std)
        hn = self.embed((neighbours.float() - self.mean) / self.std)
        return self.head(self.mix(torch.cat([h, hn.amax(1), hn.mean(1)], 1)))

    @torch.no_grad()
    def predict(self, features: torch.Tensor, knn: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """Labels [N] for one scene: features [N, D], knn [N, k] (indices into the same scene)."""
        out = [self(features[i : i + chunk], features[knn[i : i + chunk]]).argmax(1) for i in range(0, len(features), chunk)]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def train_decoder_probe(features: Sequence[torch.Tensor], knns: Sequence[torch.Tensor], labels: Sequence[torch.Tensor],
                        num_classes: int, cfg: DecoderProbeConfig | None = None, progress: bool = False) -> DecoderProbe:
    """Fit a :class:`DecoderProbe` on scenes (features [N_i, D], knn [N_i, k], labels [N_i]; -1 = unlabeled)."""
    cfg = cfg or DecoderProbeConfig()
    if not (len(features) == len(knns) == len(labels)) or not features:
        raise ValueError(f"train_decoder_probe: got {len(features)} feature, {len(knns)} knn and {len(labels)} label arrays; expected equal and > 0")
    offsets = np.cumsum([0] + [len(f) for f in features])
    allf = torch.cat([f.to(torch.float16) if f.dtype != torch.float16 else f for f in features])
    allk = torch.cat([k + int(o) for k, o in zip(knns, offsets[:-1])])
    ally = torch.cat([y.long() for y in labels])
    rows = torch.nonzero((ally >= 0) & (ally < num_classes)).squeeze(1)
    if rows.numel() == 0:
        raise ValueError("train_decoder_probe: no labelled training points")
    gen = torch.Generator().manual_seed(cfg.seed)
    if rows.numel() > cfg.max_train_points:
        rows = rows[torch.randperm(rows.numel(), generator=gen)[: cfg.max_train_points]]
    torch.manual_seed(cfg.seed)
    probe = DecoderProbe(allf.shape[1], num_classes, cfg.hidden)
    sample = allf[rows].float()
    probe.mean.copy_(sample.mean(0))
    probe.std.copy_(sample.std(0).clamp_min(1e-6) if len(sample) > 1 else torch.ones(allf.shape[1]))
    opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * max(1, -(-rows.numel() // cfg.batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    epochs = range(cfg.epochs)
    if progress:
        from tqdm import tqdm

        epochs = tqdm(epochs, desc="decoder probe", leave=False)
    probe.train()
    for _ in epochs:
        order = rows[torch.randperm(rows.numel(), generator=gen)]
        for i in range(0, order.numel(), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = F.cross_entropy(probe(allf[idx], allf[allk[idx]]), ally[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return probe.eval()


def evaluate_decoder_probe(probe: DecoderProbe, features: Sequence[torch.Tensor], knns: Sequence[torch.Tensor],
                           labels: Sequence[torch.Tensor], num_classes: int, class_names: Sequence[str] | None = None) -> dict:
    """mIoU / mAcc / overall accuracy over scenes."""
    conf = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    for f, k, y in zip(features, knns, labels):
        conf += confusion_matrix(probe.predict(f, k), y, num_classes)
    return segmentation_metrics(conf, class_names=class_names)
