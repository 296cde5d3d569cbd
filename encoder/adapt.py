"""Render-and-distill adaptation of a pretrained encoder to a new domain (entry module).

    chorus adapt --checkpoint RUN_DIR --scenes NEW_DOMAIN_ROOT --out OUT [--teacher efficientnet-lite0]

No 3D labels and no offline lifting: for every scene, cameras are sampled
(:func:`data.camera.sample_views`: farthest-point positions, ``n_directions`` yaws each),
RGB is rendered, the 2D teacher runs online on the renders, and the model's per-Gaussian
predictions (encoder -> that teacher's projector) are rendered with the same compositing
weights ``w_ip = T_ip alpha_ip`` as the colour::

    F_p = sum_i w_ip f_i / sum_i w_ip          (a weighted mean, like the lifted targets)

The loss is cosine + SmoothL1 (:func:`encoder.losses.distill_loss`) between ``F_p`` and the
teacher feature at pixels whose accumulated alpha (1 - final transmittance) is at least
``min_alpha`` and where the teacher has a target. Geometry is fixed, so each view's
(Gaussian, pixel, weight) triples are computed once, without gradients, and the training
step only scatters features through them.

Trainable: LoRA (rank 8) on every attention ``qkv`` projection; everything else (encoder
and projectors) is frozen. :class:`LoRALinear` is a small wrapper written here (no peft
dependency); after training the low-rank update is merged so ``OUT/encoder`` is a plain
:class:`~encoder.ptv3.ChorusEncoder` checkpoint, and the adapter alone goes to ``OUT/lora``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from torch import nn

from encoder.losses import distill_loss


# ---------------------------------------------------------------------------- LoRA
class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) * x A^T B^T`` with the base ``nn.Linear`` frozen. A [r, in] random, B [out, r] zero."""

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = 16.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRALinear: rank={rank}, expected >= 1")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.rank, self.scaling = rank, alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, dtype=base.weight.dtype, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scaling

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        out = out.to(self.base.weight.device, self.base.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scaling * self.lora_b @ self.lora_a)
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def apply_lora(model: nn.Module, targets: tuple[str, ...] = ("qkv",), rank: int = 8, alpha: float = 16.0) -> list[str]:
    """Freeze ``model`` and wrap every ``nn.Linear`` whose attribute name is in ``targets``; returns their paths."""
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                setattr(module, child_name, LoRALinear(child, rank, alpha))
                wrapped.append(f"{name}.{child_name}" if name else child_name)
    if not wrapped:
        raise ValueError(f"apply_lora: no nn.Linear named {targets} in {type(model).__name__}")
    return wrapped


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the LoRA factors (``...lora_a`` / ``...lora_b``)."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k.rsplit(".", 1)[-1] in ("lora_a", "lora_b")}


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` by its merged ``nn.Linear`` (in place); returns the model."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged())
    return model


# ---------------------------------------------------------------------------- config
@dataclass
class AdaptConfig:
    """Render-and-distill settings (paper: 480x640 renders, 120x160 feature maps, LoRA rank 8 on qkv)."""

    teacher: str = "efficientnet-lite0"  # any spec adapters.teachers.get_teacher accepts
    head: str | None = None  # projector to train through (default: the teacher's file name)
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ("qkv",)
    n_positions: int = 2  # camera positions per scene (farthest-point sampled)
    n_directions: int = 8  # yaw directions per position
    views_per_scene: int = 8  # cap on the sampled cameras kept per scene
    width: int = 160
    height: int = 120
    feature_downscale: int = 2  # features are compared at (width, height) / this
    fov_deg: float = 70.0
    min_alpha: float = 0.5  # pixels with less accumulated opacity are skipped
    steps: int = 60
    views_per_step: int = 2  # views of one scene per optimizer step
    lr: float = 1e-3
    weight_decay: float = 0.0
    cos_weight: float = 1.0
    l1_weight: float = 1.0
    seed: int = 0
    threads: int = 0  # torch CPU threads (0 = leave as is)

    def __post_init__(self):
        self.lora_targets = tuple(self.lora_targets)
        for name in ("lora_rank", "n_positions", "n_directions", "views_per_scene", "width", "height", "feature_downscale",
                     "steps", "views_per_step"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"AdaptConfig.{name}={getattr(self, name)!r}: expected a positive integer")
        if self.width % self.feature_downscale or self.height % self.feature_downscale:
            raise ValueError(f"AdaptConfig.feature_downscale={self.feature_downscale} must divide width={self.width} and height={self.height}")
        if not 0.0 <= self.min_alpha <= 1.0 or self.lr <= 0:
            raise ValueError(f"AdaptConfig: min_alpha={self.min_alpha} must be in [0, 1] and lr={self.lr} > 0")


# ---------------------------------------------------------------------------- views
@dataclass
class DistillView:
    """One precomputed view: compositing triples at feature resolution and the teacher target on valid pixels.

    gaussian / pixel / weight [P]: (Gaussian, flat pixel, w) triples; alpha [HW]; valid [V] flat pixel ids;
    target [V, D] teacher features there.
    """

    gaussian: torch.Tensor
    pixel: torch.Tensor
    weight: torch.Tensor
    alpha: torch.Tensor
    valid: torch.Tensor
    target: torch.Tensor


def prepare_views(scene, teacher, cfg: AdaptConfig, captions: dict | None = None) -> tuple[list[DistillView], dict]:
    """Sample cameras, render RGB (and instance maps if the teacher needs them), run the teacher, keep the triples.

    Returns (views, timings {"render", "teacher", "weights", "views"} in seconds).
    """
    from adapters.teachers import TeacherInput
    from data.camera import sample_views
    from data.render import pair_weights, rasterize
    from encoder.lift import decode_instance_map, instance_one_hot, resample_features, scale_camera

    needs_instances = bool(getattr(teacher, "needs_instance_maps", False))
    cameras = sample_views(scene, cfg.n_positions, cfg.n_directions, width=cfg.width, height=cfg.height,
                           fov_deg=cfg.fov_deg, seed=cfg.seed)[: cfg.views_per_scene]
    codes = ids = None
    if needs_instances:
        if scene.instance is None:
            raise ValueError(f"scene '{scene.name}': field 'instance' is None, but teacher '{teacher.name}' needs instance maps")
        codes, ids = instance_one_hot(scene.instance.cpu())
    clock = {"render": 0.0, "teacher": 0.0, "weights": 0.0}
    views = []
    with torch.no_grad():
        for cam in cameras:
            tic = time.perf_counter()
            out = rasterize(scene, cam, features=codes)
            inst = decode_instance_map(out.features, out.alpha, ids, 0.5)[None] if needs_instances else None
            clock["render"] += time.perf_counter() - tic
            tic = time.perf_counter()
            feat = teacher.encode(TeacherInput(out.color.permute(2, 0, 1)[None].clamp(0, 1).float(), inst, captions)).float().cpu()
            clock["teacher"] += time.perf_counter() - tic
            tic = time.perf_counter()
            small = scale_camera(cam, cfg.feature_downscale)
            target = resample_features(feat, (small.height, small.width), nearest=needs_instances)[0].permute(1, 2, 0).reshape(-1, feat.shape[1])
            pairs = pair_weights(scene, small)
            weight = pairs.weight.detach().float()
            alpha = torch.zeros(small.height * small.width).index_add_(0, pairs.pixel, weight)
            valid = torch.nonzero((alpha >= max(cfg.min_alpha, 1e-6)) & (target.abs().amax(1) > 0)).squeeze(1)
            views.append(DistillView(pairs.gaussian, pairs.pixel, weight, alpha, valid, target[valid]))
            clock["weights"] += time.perf_counter() - tic
    clock["views"] = len(views)
    return views, clock


def render_predictions(pred: torch.Tensor, view: DistillView) -> torch.Tensor:
    """Weighted-mean rendering of per-Gaussian predictions [N, D] at the view's valid pixels -> [V, D]."""
    from data.raster_torch import weighted_scatter

    image = weighted_scatter(pred, view.weight, view.gaussian, view.pixel, view.alpha.shape[0])
    return image[view.valid] / view.alpha[view.valid, None]


def view_loss(pred: torch.Tensor, views: list[DistillView], cfg: AdaptConfig) -> tuple[torch.Tensor, dict]:
    """Mean over views of cos + SmoothL1 between rendered predictions and teacher targets."""
    total, logs = pred.sum() * 0.0, {"cos": 0.0, "l1": 0.0}
    for v in views:
        loss, parts = distill_loss(render_predictions(pred, v), v.target, cfg.cos_weight, cfg.l1_weight)
        total = total + loss / len(views)
        logs["cos"] += float(parts["cos"]) / len(views)
        logs["l1"] += float(parts["l1"]) / len(views)
    return total, logs


# ---------------------------------------------------------------------------- training
def resolve_teacher(teacher):
    from adapters.teachers import get_teacher

    return get_teacher(teacher) if isinstance(teacher, str) else teacher


def adapt_encoder(encoder, heads, scenes: list, cfg: AdaptConfig | None = None, teacher=None,
                  captions: list[dict | None] | None = None, progress: bool = True) -> dict:
    """Adapt ``encoder`` in place (LoRA on qkv, merged at the end) on ``scenes`` (``GaussianScene`` list).

    heads: a :class:`~encoder.heads.MultiTeacherHeads` holding a projector for the teacher (frozen); when it has
    none, a fresh projector is created and trained with the LoRA factors (reported as ``new_head``).
    Returns a summary with the loss log, timings and the LoRA state (before merging) under ``"lora"``.
    """
    from encoder.heads import TeacherProjector
    from encoder.inputs import scene_to_input

    cfg = cfg or AdaptConfig()
    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        teacher = resolve_teacher(teacher if teacher is not None else cfg.teacher)
        head_name = cfg.head or teacher.name
        new_head = heads is None or head_name not in heads.names
        if new_head:
            projector = TeacherProjector(encoder.out_dim, teacher.dim, heads.cfg.hidden_mult if heads is not None else 4)
        else:
            projector = heads.projector(head_name)
            if projector.out_dim != teacher.dim:
                raise ValueError(f"projector '{head_name}' outputs {projector.out_dim}-D, teacher '{teacher.name}' gives {teacher.dim}-D")
            for p in projector.parameters():
                p.requires_grad_(False)
        torch.manual_seed(cfg.seed)
        wrapped = apply_lora(encoder, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha)
        encoder.eval()  # frozen statistics, no drop-path, fixed serialization orders; LoRA still gets gradients
        params = [p for p in encoder.parameters() if p.requires_grad] + ([p for p in projector.parameters()] if new_head else [])

        prep = {"render": 0.0, "teacher": 0.0, "weights": 0.0, "views": 0}
        data = []
        for i, scene in enumerate(scenes):
            views, clock = prepare_views(scene, teacher, cfg, captions[i] if captions else None)
            for k in prep:
                prep[k] += clock[k]
            if views:
                data.append((scene.means, scene_to_input(scene, encoder.config.variant), views))
        if not data:
            raise ValueError("adapt_encoder: no usable views in any scene")

        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
        gen = torch.Generator().manual_seed(cfg.seed)
        log = []
        bar = range(cfg.steps)
        if progress:
            from tqdm import tqdm

            bar = tqdm(bar, desc="adapt", leave=False)
        tic = time.perf_counter()
        for step in bar:
            means, feats, views = data[step % len(data)]
            pick = torch.randperm(len(views), generator=gen)[: cfg.views_per_step].tolist()
            chosen = [views[j] for j in pick]
            out = encoder(means, feats, torch.tensor([means.shape[0]]))
            needed = torch.unique(torch.cat([v.gaussian for v in chosen]))
            pred = out.new_zeros(out.shape[0], projector.out_dim).index_copy(0, needed, projector(out[needed]))
            loss, parts = view_loss(pred, chosen, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            log.append({"step": step, "loss": float(loss.detach()), **parts})
            if progress:
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        train_seconds = time.perf_counter() - tic
        lora = lora_state_dict(encoder)
        merge_lora(encoder)
        for p in encoder.parameters():
            p.requires_grad_(False)
        n_views = prep["views"]
        return {
            "log": log, "lora": lora, "wrapped": wrapped, "new_head": new_head, "head": head_name, "teacher": teacher.name,
            "projector": projector if new_head else None,
            "trainable_parameters": sum(v.numel() for v in lora.values()) + (sum(p.numel() for p in projector.parameters()) if new_head else 0),
            "prepare_seconds": {k: round(v, 3) for k, v in prep.items() if k != "views"}, "views": n_views,
            "prepare_seconds_per_view": round(sum(v for k, v in prep.items() if k != "views") / max(n_views, 1), 4),
            "train_seconds": round(train_seconds, 3),
            "train_seconds_per_view": round(train_seconds / (cfg.steps * cfg.views_per_step), 4),
            "loss_first": log[0]["loss"], "loss_last": log[-1]["loss"],
        }
    finally:
        torch.set_num_threads(threads_before)


def loss_on_views(encoder, projector, scene, views: list[DistillView], cfg: AdaptConfig) -> float:
    """The adaptation loss of a (frozen) encoder + projector on precomputed views, without gradients."""
    from encoder.inputs import scene_to_input

    with torch.no_grad():
        encoder.eval()
        out = encoder(scene.means, scene_to_input(scene, encoder.config.variant), torch.tensor([len(scene)]))
        return float(view_loss(projector(out), views, cfg)[0])


# ---------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chorus adapt", description=(
        "Render-and-distill adaptation: LoRA (rank 8) on the encoder's attention qkv, trained so the encoder's rendered "
        "per-Gaussian predictions match a 2D teacher run online on renders of the new domain's scenes."))
    src = parser.add_argument_group("model (one of --checkpoint, --encoder)")
    src.add_argument("--checkpoint", help="pretraining output folder holding encoder/ and heads/")
    src.add_argument("--encoder", help="ChorusEncoder folder (config.json + model.safetensors)")
    src.add_argument("--heads", help="MultiTeacherHeads folder (default: <checkpoint>/heads)")
    parser.add_argument("--scenes", required=True, help="dataset root (scenes/ + splits/) or a folder of scene folders")
    parser.add_argument("--split", default="train", help="split file to read under <scenes>/splits (default train)")
    parser.add_argument("--max-scenes", type=int, default=None, help="use at most this many scenes")
    parser.add_argument("--out", required=True, help="output folder: encoder/ (merged), heads/, lora/, summary.json, adapt_log.jsonl")
    parser.add_argument("--teacher", default="efficientnet-lite0", help="teacher spec (adapters.teachers.get_teacher)")
    parser.add_argument("--head", default=None, help="projector name (default: the teacher's file name)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--views-per-scene", type=int, default=8)
    parser.add_argument("--views-per-step", type=int, default=2)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from data import load_scene
    from encoder.evaluate import load_encoder_and_heads, scene_dirs
    from encoder.lift import read_captions

    encoder, heads = load_encoder_and_heads(args.checkpoint, args.encoder, args.heads)
    dirs = scene_dirs(args.scenes, args.split)[: args.max_scenes]
    scenes = [load_scene(d) for d in dirs]
    cfg = AdaptConfig(teacher=args.teacher, head=args.head, steps=args.steps, views_per_scene=args.views_per_scene,
                      views_per_step=args.views_per_step, width=args.width, height=args.height, lr=args.lr,
                      lora_rank=args.rank, seed=args.seed, threads=args.threads)
    summary = adapt_encoder(encoder, heads, scenes, cfg, captions=[read_captions(d) for d in dirs], progress=not args.no_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(out / "encoder")
    if heads is not None:
        if summary["new_head"]:
            from encoder.heads import HeadsConfig, MultiTeacherHeads

            merged = MultiTeacherHeads(HeadsConfig(heads.cfg.in_dim, {**heads.cfg.teacher_dims, summary["head"]: summary["projector"].out_dim},
                                                 heads.cfg.hidden_mult))
            merged.load_state_dict({**heads.state_dict(), **{f"projectors.{merged._key(summary['head'])}.{k}": v
                                                             for k, v in summary["projector"].state_dict().items()}})
            heads = merged
        heads.save_pretrained(out / "heads")
    from safetensors.torch import save_file

    (out / "lora").mkdir(exist_ok=True)
    save_file(summary["lora"], str(out / "lora" / "adapter.safetensors"))
    (out / "lora" / "adapter_config.json").write_text(json.dumps({"rank": cfg.lora_rank, "alpha": cfg.lora_alpha,
                                                                  "targets": list(cfg.lora_targets), "wrapped": summary["wrapped"]}, indent=2))
    (out / "adapt_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in summary["log"]))
    public = {k: v for k, v in summary.items() if k not in ("log", "lora", "projector", "wrapped")}
    public.update(config=asdict(cfg), scenes=[d.name for d in dirs])
    (out / "summary.json").write_text(json.dumps(public, indent=2))
    print(json.dumps({k: public[k] for k in ("loss_first", "loss_last", "views", "prepare_seconds_per_view", "train_seconds_per_view")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
