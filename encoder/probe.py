"""Linear probing of frozen per-Gaussian features for semantic segmentation.

A single ``nn.Linear(D, C)`` over standardised features (mean/std of the
training features, stored in the probe) is trained on labelled Gaussians of
the training scenes and scored with mIoU on held-out scenes. Features are
computed once by the caller (the encoder stays frozen).

The loss is cross-entropy, optionally with class weights count(c)^-p
(``class_weight_power``) and plus ``lovasz_weight`` times the Lovasz-softmax
loss (Berman et al., CVPR 2018), the convex surrogate of 1 - IoU that
Pointcept's Sonata linear-probing configs add to cross-entropy. Both default
to off (plain cross-entropy, the protocol of every recorded result);
``benchmarks/probe_protocol.py`` measures what they change.
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
class LinearProbeConfig:
    """epochs over the (subsampled) training points, AdamW lr / weight decay, minibatch size."""

    epochs: int = 30
    lr: float = 1e-2
    weight_decay: float = 1e-4
    batch_size: int = 8192
    max_train_points: int = 400_000
    lovasz_weight: float = 0.0
    class_weight_power: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name in ("epochs", "batch_size", "max_train_points"):
            if getattr(self, name) <= 0:
                raise ValueError(f"LinearProbeConfig.{name}={getattr(self, name)}: expected > 0")
        if self.lovasz_weight < 0 or self.class_weight_power < 0:
            raise ValueError(f"LinearProbeConfig: lovasz_weight={self.lovasz_weight} and class_weight_power="
                             f"{self.class_weight_power} must be >= 0")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"LinearProbeConfig: lr={self.lr} must be > 0 and weight_decay={self.weight_decay} >= 0")


def lovasz_softmax(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lovasz-softmax loss over the classes present in ``labels``: probs [N, C] (rows sum to 1), labels [N] in
    [0, C). For each present class c, the per-point errors |1[y=c] - p_c| sorted in decreasing order are
    weighted by the increments of the Jaccard loss 1 - IoU along that order; the result is the mean over
    classes. With one-hot probs it equals the mean over present classes of 1 - IoU(c)."""
    if probs.ndim != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"lovasz_softmax: probs {tuple(probs.shape)} and labels {tuple(labels.shape)}: expected [N, C] and [N]")
    if probs.shape[0] == 0:
        return probs.sum() * 0.0
    present = torch.unique(labels)
    fg = (labels[:, None] == present[None, :]).to(probs.dtype)  # [N, P]
    errors = (fg - probs[:, present]).abs()
    errors, order = errors.sort(0, descending=True)
    fg = fg.gather(0, order)
    total = fg.sum(0, keepdim=True)
    intersection = total - fg.cumsum(0)
    union = total + (1.0 - fg).cumsum(0)
    jaccard = 1.0 - intersection / union
    jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]], 0)  # increments along the sorted order
    return (errors * jaccard).sum(0).mean()


class LinearProbe(nn.Module):
    """(x - mean) / std -> Linear(D, C). forward(x [N, D]) -> logits [N, C]."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x.float() - self.mean) / self.std)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
        """x [N, D] -> class ids [N]"""
        return torch.cat([self(x[i : i + chunk]).argmax(1) for i in range(0, x.shape[0], chunk)]) if len(x) else torch.zeros(0, dtype=torch.long)


def train_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: LinearProbeConfig | None = None) -> LinearProbe:
    """Fit a :class:`LinearProbe` on features [N, D] with labels [N] (-1 / out of range = unlabeled)."""
    cfg = cfg or LinearProbeConfig()
    if features.shape[0] != labels.shape[0]:
        raise ValueError(f"train_linear_probe: {features.shape[0]} features but {labels.shape[0]} labels")
    labels = labels.long()
    keep = (labels >= 0) & (labels < num_classes)
    x, y = features[keep].float(), labels[keep]
    if x.shape[0] == 0:
        raise ValueError("train_linear_probe: no labelled training points")
    gen = torch.Generator().manual_seed(cfg.seed)
    if x.shape[0] > cfg.max_train_points:
        pick = torch.randperm(x.shape[0], generator=gen)[: cfg.max_train_points]
        x, y = x[pick], y[pick]
    class_weight = None
    if cfg.class_weight_power > 0:
        counts = torch.bincount(y, minlength=num_classes).float().clamp_min(1.0)
        class_weight = counts ** -cfg.class_weight_power
        class_weight = class_weight / class_weight[y].mean()  # the mean weight of a training point stays 1
    probe = LinearProbe(x.shape[1], num_classes)
    probe.mean.copy_(x.mean(0))
    probe.std.copy_(x.std(0).clamp_min(1e-6))
    opt = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, -(-x.shape[0] // cfg.batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    for _ in range(cfg.epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        for i in range(0, x.shape[0], cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            logits = probe(x[idx])
            loss = F.cross_entropy(logits, y[idx], weight=class_weight)
            if cfg.lovasz_weight > 0:
                loss = loss + cfg.lovasz_weight * lovasz_softmax(logits.softmax(1), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return probe.eval()


def evaluate_probe(
    probe: LinearProbe, features: Sequence[torch.Tensor], labels: Sequence[torch.Tensor], num_classes: int,
    class_names: Sequence[str] | None = None,
) -> dict:
    """mIoU / mAcc / overall accuracy of the probe over scenes (lists of [N_i, D] and [N_i])."""
    conf = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
    for f, y in zip(features, labels):
        conf += confusion_matrix(probe.predict(f), y, num_classes)
    return segmentation_metrics(conf, class_names=class_names)
