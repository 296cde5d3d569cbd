"""The data-efficient protocol (Sonata / Chorus): probing with few labelled scenes or few labelled points.

Two curves over frozen per-Gaussian features:

- limited scenes: a linear probe trained on ``scene_fractions`` (1 / 5 / 10 / 20 %) of the
  training scenes (at least one scene), all their labelled points;
- limited annotations: trained on every training scene with only ``points_per_scene``
  (20 / 50 / 100 / 200) randomly chosen labelled points each.

Each setting is repeated over ``seeds`` (different subsets) and scored by mIoU on the
validation scenes; the mean and the individual runs are reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .probe import LinearProbeConfig, evaluate_probe, train_linear_probe


@dataclass
class DataEfficientConfig:
    scene_fractions: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20)
    points_per_scene: tuple[int, ...] = (20, 50, 100, 200)
    seeds: tuple[int, ...] = (0, 1, 2)
    probe: LinearProbeConfig = field(default_factory=lambda: LinearProbeConfig(epochs=60, batch_size=4096))
    min_steps: int = 200  # tiny label sets get more epochs so every run takes at least this many optimizer steps

    def __post_init__(self):
        self.scene_fractions = tuple(float(f) for f in self.scene_fractions)
        self.points_per_scene = tuple(int(p) for p in self.points_per_scene)
        self.seeds = tuple(int(s) for s in self.seeds)
        if any(not 0 < f <= 1 for f in self.scene_fractions):
            raise ValueError(f"DataEfficientConfig.scene_fractions={self.scene_fractions}: expected fractions in (0, 1]")
        if any(p <= 0 for p in self.points_per_scene) or not self.seeds:
            raise ValueError(f"DataEfficientConfig: points_per_scene={self.points_per_scene} must be > 0 and seeds non-empty")
        if self.min_steps < 0:
            raise ValueError(f"DataEfficientConfig.min_steps={self.min_steps}: expected >= 0")
        if isinstance(self.probe, dict):
            self.probe = LinearProbeConfig(**self.probe)


def pick_scenes(n_scenes: int, fraction: float, seed: int) -> list[int]:
    """ceil(fraction * n) (at least 1) distinct scene indices, a seeded random choice."""
    count = min(n_scenes, max(1, math.ceil(fraction * n_scenes - 1e-9)))
    return sorted(np.random.default_rng([seed, 17]).permutation(n_scenes)[:count].tolist())


def limit_annotations(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """A copy of labels [N] with all but ``count`` randomly chosen labelled points set to -1."""
    labels = labels.long()
    labelled = torch.nonzero(labels >= 0).squeeze(1).numpy()
    keep = np.random.default_rng([seed, 31]).permutation(labelled)[:count]
    out = torch.full_like(labels, -1)
    out[torch.from_numpy(keep)] = labels[torch.from_numpy(keep)]
    return out


def run_data_efficient(train_feats: Sequence[torch.Tensor], train_labels: Sequence[torch.Tensor],
                       val_feats: Sequence[torch.Tensor], val_labels: Sequence[torch.Tensor], num_classes: int,
                       cfg: DataEfficientConfig | None = None, progress: bool = False) -> dict:
    """{"limited_scenes": [{fraction, scenes, miou, runs}], "limited_annotations": [{points, miou, runs}], "full": miou}."""
    cfg = cfg or DataEfficientConfig()
    n = len(train_feats)
    jobs = [("scenes", f) for f in cfg.scene_fractions] + [("points", p) for p in cfg.points_per_scene]
    if progress:
        from tqdm import tqdm

        jobs = tqdm(jobs, desc="data-efficient", leave=False)

    def fit_and_score(feats, labels, seed):
        labels = torch.cat(list(labels))
        n_points = min(int((labels >= 0).sum()), cfg.probe.max_train_points)
        steps_per_epoch = max(1, -(-n_points // cfg.probe.batch_size))
        epochs = max(cfg.probe.epochs, -(-cfg.min_steps // steps_per_epoch))
        probe_cfg = LinearProbeConfig(**{**cfg.probe.__dict__, "seed": seed, "epochs": epochs})
        probe = train_linear_probe(torch.cat(list(feats)), labels, num_classes, probe_cfg)
        return evaluate_probe(probe, val_feats, val_labels, num_classes)["miou"]

    out = {"limited_scenes": [], "limited_annotations": [], "train_scenes": n}
    for kind, value in jobs:
        runs = []
        for seed in cfg.seeds:
            if kind == "scenes":
                pick = pick_scenes(n, value, seed)
                runs.append(fit_and_score([train_feats[i] for i in pick], [train_labels[i] for i in pick], seed))
            else:
                labels = [limit_annotations(y, value, seed * 1000 + i) for i, y in enumerate(train_labels)]
                runs.append(fit_and_score(train_feats, labels, seed))
        row = {"miou": float(np.nanmean(runs)), "runs": [float(r) for r in runs]}
        if kind == "scenes":
            out["limited_scenes"].append({"fraction": value, "scenes": len(pick_scenes(n, value, 0)), **row})
        else:
            out["limited_annotations"].append({"points": value, **row})
    out["full"] = fit_and_score(train_feats, train_labels, cfg.seeds[0])
    return out


def plot_data_efficient(results: dict | Sequence[tuple[str, dict]], png) -> None:
    """Two panels (limited scenes, limited annotations); ``results`` is one result or (label, result) pairs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [("encoder", results)] if isinstance(results, dict) else list(results)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for label, res in series:
        xs = [100 * r["fraction"] for r in res["limited_scenes"]]
        axes[0].plot(xs, [100 * r["miou"] for r in res["limited_scenes"]], marker="o", label=label)
        xs = [r["points"] for r in res["limited_annotations"]]
        axes[1].plot(xs, [100 * r["miou"] for r in res["limited_annotations"]], marker="o", label=label)
    axes[0].set_xlabel("% of training scenes")
    axes[1].set_xlabel("labelled points per scene")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.set_ylabel("val mIoU (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("limited scenes (linear probe)")
    axes[1].set_title("limited annotations (linear probe)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
