"""Full fine-tuning for semantic segmentation: the encoder and a linear head trained end to end.

The third probing regime of the paper after the linear and decoder probes: every encoder weight
is trained (at ``lr * encoder_lr_scale``) together with ``LinearProbe``-style head on the
labelled Gaussians, one scene (a random sphere crop of at most ``max_points`` Gaussians) per step.

    python -m encoder.finetune --checkpoint RUN --data ROOT --out OUT [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class FinetuneConfig:
    steps: int = 200
    lr: float = 1e-3  # head
    encoder_lr_scale: float = 0.1  # encoder weights train at lr * this
    weight_decay: float = 0.01
    max_points: int = 20_000  # sphere crop per step
    grad_clip: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.max_points < 1 or self.lr <= 0 or self.encoder_lr_scale < 0:
            raise ValueError(f"FinetuneConfig: steps={self.steps}, max_points={self.max_points} must be >= 1, "
                             f"lr={self.lr} > 0 and encoder_lr_scale={self.encoder_lr_scale} >= 0")


class SegmentationModel(nn.Module):
    """encoder -> LayerNorm -> Linear(C, num_classes). forward(means, feats, offset) -> logits [N, num_classes]."""

    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.norm = nn.LayerNorm(encoder.out_dim)
        self.head = nn.Linear(encoder.out_dim, num_classes)

    def forward(self, means, feats, offset):
        return self.head(self.norm(self.encoder(means, feats, offset)))


def sphere_crop(n_points: int, means: torch.Tensor, max_points: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of the ``max_points`` Gaussians nearest a random Gaussian (all of them when the scene is smaller)."""
    if len(means) <= max_points:
        return torch.arange(len(means))
    centre = means[torch.randint(len(means), (1,), generator=gen)]
    return torch.topk((means - centre).square().sum(1), max_points, largest=False).indices


def finetune(encoder, scenes: list, labels: list[torch.Tensor], num_classes: int, cfg: FinetuneConfig | None = None,
             progress: bool = True) -> tuple[SegmentationModel, list[dict]]:
    """Train encoder + head on scenes with labels [N_i] (-1 = unlabeled). Returns (model in eval mode, loss log)."""
    from encoder.inputs import scene_to_input

    cfg = cfg or FinetuneConfig()
    torch.manual_seed(cfg.seed)
    model = SegmentationModel(encoder, num_classes)
    for p in model.parameters():
        p.requires_grad_(True)
    enc_ids = {id(p) for p in model.encoder.parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) not in enc_ids], "lr": cfg.lr}]
    if cfg.encoder_lr_scale > 0:
        groups.append({"params": list(model.encoder.parameters()), "lr": cfg.lr * cfg.encoder_lr_scale})
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=cfg.steps, pct_start=0.1)
    inputs = [scene_to_input(s, encoder.config.variant) for s in scenes]
    gen = torch.Generator().manual_seed(cfg.seed)
    bar = range(cfg.steps)
    if progress:
        from tqdm import tqdm

        bar = tqdm(bar, desc="finetune", leave=False)
    log = []
    model.train()
    for step in bar:
        i = step % len(scenes)
        pick = sphere_crop(len(scenes[i]), scenes[i].means, cfg.max_points, gen)
        y = labels[i][pick].long()
        logits = model(scenes[i].means[pick], inputs[i][pick], torch.tensor([len(pick)]))
        keep = (y >= 0) & (y < num_classes)
        loss = F.cross_entropy(logits[keep], y[keep]) if keep.any() else logits.sum() * 0.0
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        log.append({"step": step, "loss": float(loss.detach())})
    return model.eval(), log


@torch.no_grad()
def predict(model: SegmentationModel, scene) -> torch.Tensor:
    """Labels [N] of a whole scene."""
    from encoder.inputs import scene_to_input

    model.eval()
    return model(scene.means, scene_to_input(scene, model.encoder.config.variant), torch.tensor([len(scene)])).argmax(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m encoder.finetune", description="Full fine-tuning (encoder + linear head) for semantic segmentation.")
    parser.add_argument("--checkpoint", help="pretraining output folder with encoder/")
    parser.add_argument("--encoder", help="ChorusEncoder folder")
    parser.add_argument("--random", choices=("small", "paper"), help="start from random weights")
    parser.add_argument("--data", required=True)
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--split", default="val")
    parser.add_argument("--label-set", default="synth")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--max-points", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from data import load_scene
    from encoder.evaluate import load_encoder_and_heads, map_labels, markdown_table, scene_dirs
    from encoder.label_sets import get_label_set
    from encoder.seg_metrics import confusion_matrix, segmentation_metrics

    names = get_label_set(args.label_set)
    encoder, _ = load_encoder_and_heads(args.checkpoint, args.encoder, None, args.random)
    train = [load_scene(d) for d in scene_dirs(args.data, args.train_split)]
    val = [load_scene(d) for d in scene_dirs(args.data, args.split)]
    cfg = FinetuneConfig(steps=args.steps, max_points=args.max_points)
    tic = time.perf_counter()
    model, log = finetune(encoder, train, [map_labels(s.semantic, s.class_names, names) for s in train], len(names), cfg)
    conf = sum(confusion_matrix(predict(model, s), map_labels(s.semantic, s.class_names, names), len(names)) for s in val)
    metrics = segmentation_metrics(np.asarray(conf), class_names=names)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(out / "encoder")
    record = {"config": asdict(cfg), "metrics": metrics, "seconds": round(time.perf_counter() - tic, 1), "loss": [r["loss"] for r in log]}
    (out / "metrics.json").write_text(json.dumps(record, indent=2, default=float))
    table = markdown_table([{"model": args.checkpoint or args.encoder or f"random {args.random}", **metrics}], ["model", "miou", "macc", "allacc"], "Full fine-tuning")
    (out / "metrics.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
