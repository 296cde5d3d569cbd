"""Multi-teacher pretraining of the Chorus encoder (entry module).

    accelerate launch encoder/pretrain.py --config configs/pretrain_synth.yaml
    python encoder/pretrain.py --config configs/pretrain_synth.yaml [--variant point] [--max-steps K]

One shared encoder, one projector per teacher (:mod:`encoder.heads`), cosine +
SmoothL1 to the lifted targets plus group InfoNCE (:mod:`encoder.losses`), the
paper's augmentations (:mod:`encoder.augment`), AdamW + OneCycle, gradient
clipping, gradient accumulation and optional bf16 autocast through
``accelerate``. Each teacher switches on at ``start_fraction`` of training (the
object-aware teacher at 0.5 by default).

Exact resume: the data stream is a pure function of (seed, epoch, position) and
every augmentation draws from a generator seeded by the sample key, so a run
that is stopped at a checkpoint (``--max-steps``) and resumed reproduces the
loss curve of an uninterrupted run. Checkpoints go to
``OUT/checkpoints/step_XXXXXXX`` (written atomically; :mod:`encoder.pretrain_state`),
``OUT/checkpoints/latest`` names the newest. Outputs: ``OUT/train_log.jsonl``,
``OUT/loss_curve.png``, ``OUT/encoder/`` (``save_pretrained``), ``OUT/heads/``,
``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from torch import nn

from encoder.augment import AugmentConfig, augment_scene
from encoder.heads import HeadsConfig, MultiTeacherHeads
from encoder.losses import distill_loss, group_infonce, loss_subset, vocab_kl
from encoder.pretrain_state import latest_checkpoint, load_checkpoint, load_init_weights, plot_loss_curve, read_log, save_checkpoint

CONTRAST_KINDS = ("none", "semantic", "instance")


# ============================================================================ config
@dataclass
class TeacherSpec:
    """One distillation target: lifted features ``<name>_feat.npy`` of dimension ``dim``.

    contrast: InfoNCE on class-pooled ("semantic") or instance-pooled ("instance") means, or "none".
    start_fraction: the teacher's losses switch on after this fraction of the total steps.
    vocab: for a language teacher, a label set (:mod:`encoder.label_sets`) whose prompt embeddings by
    ``text_encoder`` the student must rank as the teacher does (:func:`encoder.losses.vocab_kl`, weight
    ``vocab_weight``, temperature ``vocab_temperature``), or "none".
    """

    name: str
    dim: int
    weight: float = 1.0
    cos_weight: float = 1.0
    l1_weight: float = 1.0
    contrast: str = "none"
    contrast_weight: float = 0.02
    start_fraction: float = 0.0
    vocab: str = "none"
    vocab_weight: float = 1.0
    vocab_temperature: float = 0.03
    text_encoder: str = "minilm"

    def __post_init__(self):
        from encoder.label_sets import LABEL_SET_NAMES

        if self.vocab != "none" and self.vocab not in LABEL_SET_NAMES:
            raise ValueError(f"teachers[{self.name}].vocab={self.vocab!r}: expected 'none' or one of {LABEL_SET_NAMES}")
        if self.vocab_temperature <= 0:
            raise ValueError(f"teachers[{self.name}].vocab_temperature={self.vocab_temperature}: expected > 0")
        if self.dim <= 0:
            raise ValueError(f"teachers[{self.name}].dim={self.dim}: expected > 0")
        if self.contrast not in CONTRAST_KINDS:
            raise ValueError(f"teachers[{self.name}].contrast={self.contrast!r}: expected one of {CONTRAST_KINDS}")
        if not 0.0 <= self.start_fraction < 1.0:
            raise ValueError(f"teachers[{self.name}].start_fraction={self.start_fraction}: expected in [0, 1)")
        for k in ("weight", "cos_weight", "l1_weight", "contrast_weight", "vocab_weight"):
            if getattr(self, k) < 0:
                raise ValueError(f"teachers[{self.name}].{k}={getattr(self, k)}: expected >= 0")


@dataclass
class DataConfig:
    """root: a dataset folder (``root/scenes/<id>`` + ``root/splits/<split>.txt``) or a folder of scene folders."""

    root: str = "DATA"
    split: str | None = "train"
    cache_scenes: bool = True  # keep loaded scenes in memory (small synthetic rooms)
    num_workers: int = 0


@dataclass
class OptimConfig:
    lr: float = 2e-3  # projectors, stem, pooling
    block_lr_scale: float = 0.1  # transformer blocks get lr * this (paper: 2e-4 vs 2e-3)
    weight_decay: float = 0.05
    pct_start: float = 0.05
    div_factor: float = 10.0
    final_div_factor: float = 1e3
    grad_clip: float = 1.0

    def __post_init__(self):
        if self.lr <= 0 or self.block_lr_scale <= 0:
            raise ValueError(f"optim.lr={self.lr} and optim.block_lr_scale={self.block_lr_scale}: expected > 0")
        if not 0 < self.pct_start < 1:
            raise ValueError(f"optim.pct_start={self.pct_start}: expected in (0, 1)")


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs; ``configs/*.yaml`` are serialized instances."""

    output_dir: str = "runs/pretrain"
    encoder_preset: str = "small"  # "small" | "paper"
    encoder: dict = field(default_factory=dict)  # EncoderConfig overrides
    variant: str = "gaussian"  # "gaussian" | "point"
    teachers: list[TeacherSpec] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 1000  # optimizer steps (the OneCycle schedule length)
    # warm start: a checkpoint folder (``checkpoints/step_*`` with model.safetensors) or an exported encoder
    # (``encoder/`` + ``heads/``, e.g. checkpoints/demo) whose encoder + projector weights start this run, with a
    # fresh optimizer and schedule; ignored when the output dir has a checkpoint to resume (so a warm-started run
    # still resumes exactly)
    init_from: str | None = None
    batch_size: int = 2  # scenes per micro-batch
    grad_accum: int = 1
    mixed_precision: str = "no"  # "no" | "bf16"
    # hidden width of each teacher projector / encoder width. The paper's 4 makes the projectors, not the
    # encoder, the cost of a CPU step: small encoder, 3 teachers, 2 x 12k Gaussians: 4.4 s/step at 4,
    # 1.7 s at 1 (encoder fwd+bwd ~0.9 s either way); 1 also leaves the encoder features closer to the targets.
    head_hidden_mult: int = 4
    max_loss_points: int = 16384  # Gaussians per teacher and micro-batch that enter the losses (random subset)
    # 0: that subset is uniform (big classes, walls and floors, fill it); p > 0: class-balanced, each Gaussian
    # drawn with weight count(its semantic class)^-p (encoder.losses.loss_subset; 0.5 = inverse sqrt)
    loss_balance: float = 0.0
    min_group_size: int = 100  # InfoNCE: smaller groups (counted in the loss subset) are skipped
    temperature: float = 0.2
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0
    # torch CPU threads during training (0 = leave torch's default). 1 is the measured best on our
    # shared, busy 2-core machines: one fwd+bwd of the small encoder took 2.3 s with 1 thread and
    # 40-55 s with 2 (OpenMP threads fighting other processes; benchmarks/results/pretrain_probe.json).
    threads: int = 1

    def __post_init__(self):
        if self.threads < 0:
            raise ValueError(f"threads={self.threads}: expected >= 0 (0 = torch default)")
        if self.encoder_preset not in ("small", "paper"):
            raise ValueError(f"encoder_preset={self.encoder_preset!r}: expected 'small' or 'paper'")
        if self.variant not in ("gaussian", "point"):
            raise ValueError(f"variant={self.variant!r}: expected 'gaussian' or 'point'")
        if self.mixed_precision not in ("no", "bf16"):
            raise ValueError(f"mixed_precision={self.mixed_precision!r}: expected 'no' or 'bf16'")
        self.teachers = [t if isinstance(t, TeacherSpec) else _build(TeacherSpec, t, "teachers[]") for t in self.teachers]
        if not self.teachers:
            raise ValueError("teachers: empty; expected at least one teacher spec")
        names = [t.name for t in self.teachers]
        if len(set(names)) != len(names):
            raise ValueError(f"teachers: duplicate names in {names}")
        if not isinstance(self.data, DataConfig):
            self.data = _build(DataConfig, self.data, "data")
        if not isinstance(self.augment, AugmentConfig):
            self.augment = _build(AugmentConfig, self.augment, "augment")
        if not isinstance(self.optim, OptimConfig):
            self.optim = _build(OptimConfig, self.optim, "optim")
        for k in ("steps", "batch_size", "grad_accum", "head_hidden_mult", "max_loss_points", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, k) <= 0:
                raise ValueError(f"{k}={getattr(self, k)}: expected > 0")
        if not 0.0 <= self.loss_balance <= 1.0:
            raise ValueError(f"loss_balance={self.loss_balance}: expected in [0, 1] (0 = uniform, 1 = inverse class size)")
        if self.temperature <= 0 or self.min_group_size < 2:
            raise ValueError(f"temperature={self.temperature} (> 0) / min_group_size={self.min_group_size} (>= 2) out of range")

    def encoder_config(self):
        from encoder.config import EncoderConfig

        overrides = dict(self.encoder, variant=self.variant)
        overrides.pop("in_channels", None)
        return EncoderConfig.small(**overrides) if self.encoder_preset == "small" else EncoderConfig.paper(**overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PretrainConfig":
        return _build(cls, d, "config")

    @classmethod
    def from_yaml(cls, path) -> "PretrainConfig":
        import yaml

        path = Path(path)
        try:
            return cls.from_dict(yaml.safe_load(path.read_text()) or {})
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from err

    def to_yaml(self, path) -> None:
        import yaml

        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _build(cls, d, where: str):
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown}; known fields are {sorted(known)}")
    return cls(**d)


# ============================================================================ data
def resolve_scene_dirs(data: DataConfig) -> list[Path]:
    """Scene folders of ``data.root``: the ids listed in ``root/splits/<split>.txt`` under ``root/scenes``,
    else every sub-folder of ``root/scenes`` (or of ``root``)."""
    root = Path(data.root)
    scenes_root = root / "scenes" if (root / "scenes").is_dir() else root
    if data.split:
        split_file = root / "splits" / f"{data.split}.txt"
        if split_file.is_file():
            ids = [s.strip() for s in split_file.read_text().splitlines() if s.strip()]
            dirs = [scenes_root / i for i in ids]
            missing = [str(d) for d in dirs if not d.is_dir()]
            if missing:
                raise FileNotFoundError(f"{split_file}: lists scenes that do not exist: {missing[:3]}")
            return dirs
    dirs = sorted(p for p in scenes_root.iterdir() if p.is_dir()) if scenes_root.is_dir() else []
    if not dirs:
        raise FileNotFoundError(f"data.root={data.root}: no scene folders found")
    return dirs


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of one (epoch, sample): independent of anything that happened before."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_033 + index)


class SceneStreamSampler(torch.utils.data.Sampler):
    """An endless stream of (epoch, scene index) keys: a fresh permutation per epoch,
    starting ``skip`` keys in (resume); process ``rank`` of ``world`` takes every world-th key."""

    def __init__(self, num_scenes: int, seed: int, skip: int = 0, rank: int = 0, world: int = 1):
        self.n, self.seed, self.skip, self.rank, self.world = num_scenes, seed, skip, rank, world

    def __iter__(self):
        pos = self.skip * self.world + self.rank
        while True:
            epoch, i = divmod(pos, self.n)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
            yield (epoch, int(perm[i]))
            pos += self.world


class SceneDataset(torch.utils.data.Dataset):
    """Loads scene folders, keeps the configured teachers' features, augments. Item key = (epoch, index)."""

    def __init__(self, scene_dirs: list[Path], teachers: list[str], augment: AugmentConfig, variant: str, seed: int, cache: bool):
        self.dirs, self.teachers, self.augment, self.variant, self.seed = scene_dirs, teachers, augment, variant, seed
        self.cache = {} if cache else None

    def __len__(self):
        return len(self.dirs)

    def load(self, i: int):
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        from data import load_scene

        scene = load_scene(self.dirs[i])
        missing = [t for t in self.teachers if t not in scene.features]
        if missing:
            raise FileNotFoundError(f"{self.dirs[i]}: no lifted features for teachers {missing} (expected <teacher>_feat.npy; run python -m encoder.lift)")
        scene.features = {t: scene.features[t] for t in self.teachers}
        scene.sh_rest = None
        if self.variant == "point" and scene.normals is None:
            from encoder.inputs import estimate_normals

            scene.normals = estimate_normals(scene.means)
        if self.cache is not None:
            self.cache[i] = scene
        return scene

    def __getitem__(self, key):
        epoch, i = key
        from encoder.inputs import scene_to_input

        scene = augment_scene(self.load(i), self.augment, sample_generator(self.seed, epoch, i))
        return scene, scene_to_input(scene, self.variant)


def collate_batch(items) -> dict:
    """[(scene, feats)] -> {"means" [N,3], "feats" [N,Cin], "offset" [B], "semantic"/"instance" [N] or None,
    "targets": {teacher: (feat [M,D] float32, index [M])}}"""
    from data import collate_scenes

    scene, offset = collate_scenes([s for s, _ in items])
    return {
        "means": scene.means,
        "feats": torch.cat([f for _, f in items], 0),
        "offset": offset,
        "semantic": scene.semantic,
        "instance": scene.instance,
        "targets": {k: (v.float(), i) for k, (v, i) in scene.features.items()},
    }


# ============================================================================ model + loss
class DistillationModel(nn.Module):
    """Shared encoder + per-teacher projectors. forward -> per-point encoder features [N, C]."""

    def __init__(self, encoder: nn.Module, heads: MultiTeacherHeads):
        super().__init__()
        self.encoder, self.heads = encoder, heads

    def forward(self, means, feats, offset):
        return self.encoder(means, feats, offset)


def active_teachers(cfg: PretrainConfig, step: int) -> list[TeacherSpec]:
    """Teachers whose losses are on at optimizer step ``step`` (0-based)."""
    return [t for t in cfg.teachers if step >= int(math.floor(t.start_fraction * cfg.steps))]


def teacher_vocabularies(teachers: list[TeacherSpec]) -> dict[str, torch.Tensor]:
    """Unit-norm prompt embeddings [V, dim] of each teacher's ``vocab`` (teachers without one are left out)."""
    from adapters.text import get_text_encoder
    from encoder.label_sets import get_label_set
    from encoder.zeroshot import encode_class_names

    out = {}
    for t in teachers:
        if t.vocab == "none":
            continue
        emb = encode_class_names(get_label_set(t.vocab), get_text_encoder(t.text_encoder))
        if emb.shape[1] != t.dim:
            raise ValueError(f"teachers[{t.name}]: text encoder {t.text_encoder!r} embeds the {t.vocab} vocabulary in "
                             f"{emb.shape[1]}-D, the teacher has dim={t.dim}; the vocab term needs the teacher's text space")
        out[t.name] = emb
    return out


def multi_teacher_loss(features, heads: MultiTeacherHeads, batch: dict, teachers: list[TeacherSpec], cfg: PretrainConfig, gen: torch.Generator,
                       vocab: dict[str, torch.Tensor] | None = None):
    """Sum over teachers of weight * (cos + SmoothL1 + contrast_weight * InfoNCE + vocab_weight * vocab KL).
    ``vocab``: :func:`teacher_vocabularies`. Returns (loss, logs)."""
    from data import offset_to_batch

    total = features.sum() * 0.0
    logs = {}
    scene_of_row = offset_to_batch(batch["offset"].to(features.device))
    for t in teachers:
        target, index = batch["targets"][t.name]
        if target.shape[1] != t.dim:
            raise ValueError(f"teacher {t.name}: lifted features have dim {target.shape[1]}, config says dim={t.dim}")
        if index.numel() > cfg.max_loss_points:
            if cfg.loss_balance > 0 and batch["semantic"] is None:
                raise ValueError("loss_balance > 0 balances the loss points by semantic class, but the scenes have no "
                                 "semantic labels; set loss_balance: 0")
            classes = batch["semantic"][index] if cfg.loss_balance > 0 else index  # uniform: only the count matters
            pick = loss_subset(classes, cfg.max_loss_points, cfg.loss_balance, gen).to(index.device)
            target, index = target[pick], index[pick]
        pred = heads.project(t.name, features[index]).float()
        target = target.to(pred.device)
        loss, parts = distill_loss(pred, target, t.cos_weight, t.l1_weight)
        logs[f"{t.name}/cos"], logs[f"{t.name}/l1"] = float(parts["cos"]), float(parts["l1"])
        labels = {"semantic": batch["semantic"], "instance": batch["instance"]}.get(t.contrast)
        if labels is not None and t.contrast_weight > 0:
            nce, used = group_infonce(pred, labels[index].to(pred.device), scene_of_row[index], cfg.min_group_size, cfg.temperature, gen)
            loss = loss + t.contrast_weight * nce
            logs[f"{t.name}/nce"] = float(nce.detach())
        if vocab is not None and t.name in vocab and t.vocab_weight > 0:
            kl = vocab_kl(pred, target, vocab[t.name], t.vocab_temperature)
            loss = loss + t.vocab_weight * kl
            logs[f"{t.name}/vocab_kl"] = float(kl.detach())
        total = total + t.weight * loss
    return total, logs


def build_optimizer(model: DistillationModel, cfg: PretrainConfig):
    """AdamW with the transformer blocks at lr * block_lr_scale; OneCycle (cosine) over cfg.steps."""
    block_ids = {id(p) for p in model.encoder.stages.parameters()} if hasattr(model.encoder, "stages") else set()
    blocks = [p for p in model.parameters() if id(p) in block_ids]
    rest = [p for p in model.parameters() if id(p) not in block_ids]
    o = cfg.optim
    groups = [{"params": rest, "lr": o.lr}] + ([{"params": blocks, "lr": o.lr * o.block_lr_scale}] if blocks else [])
    opt = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=[g["lr"] for g in groups], total_steps=cfg.steps, pct_start=o.pct_start,
        anneal_strategy="cos", div_factor=o.div_factor, final_div_factor=o.final_div_factor, cycle_momentum=False,
    )
    return opt, sched


# ============================================================================ training
def train(cfg: PretrainConfig, max_steps: int | None = None, resume: str = "auto", progress: bool = True) -> dict:
    """Run (or continue) pretraining. ``max_steps`` stops after that many total steps without
    changing the schedule (a planned interruption). Returns a summary dict."""
    out = Path(cfg.output_dir)
    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, out, max_steps, resume, progress)
    finally:
        torch.set_num_threads(threads_before)


def _train(cfg: PretrainConfig, out: Path, max_steps: int | None, resume: str, progress: bool) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs
    from tqdm import tqdm

    from encoder.ptv3 import ChorusEncoder

    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available(),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        cfg.to_yaml(out / "pretrain_config.yaml")
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    enc_cfg = cfg.encoder_config()
    encoder = ChorusEncoder(enc_cfg)
    heads = MultiTeacherHeads(HeadsConfig(in_dim=enc_cfg.out_dim, teacher_dims={t.name: t.dim for t in cfg.teachers},
                                          hidden_mult=cfg.head_hidden_mult))
    model = DistillationModel(encoder, heads)
    vocab = teacher_vocabularies(cfg.teachers)
    opt, sched = build_optimizer(model, cfg)

    start = 0
    ckpt = latest_checkpoint(out) if resume == "auto" else (None if resume == "never" else Path(resume))
    if ckpt is not None:
        start = load_checkpoint(ckpt, model, opt, sched)
        accelerator.print(f"resumed from {ckpt} at step {start}")
    elif cfg.init_from:
        load_init_weights(Path(cfg.init_from), model)
        accelerator.print(f"weights from {cfg.init_from}; new optimizer and {cfg.steps}-step schedule")
    log_path = out / "train_log.jsonl"
    log = [r for r in read_log(log_path) if r["step"] < start] if start else []
    if accelerator.is_main_process:
        log_path.write_text("".join(json.dumps(r) + "\n" for r in log))

    dirs = resolve_scene_dirs(cfg.data)
    dataset = SceneDataset(dirs, [t.name for t in cfg.teachers], cfg.augment, cfg.variant, cfg.seed, cfg.data.cache_scenes)
    per_step = cfg.batch_size * cfg.grad_accum
    sampler = SceneStreamSampler(len(dataset), cfg.seed, skip=start * per_step, rank=accelerator.process_index, world=accelerator.num_processes)
    # own generator: creating the iterator must not draw from the global RNG (exact resume)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate_batch,
                                         num_workers=cfg.data.num_workers, generator=torch.Generator().manual_seed(cfg.seed))
    model, opt = accelerator.prepare(model, opt)
    raw = accelerator.unwrap_model(model)
    data_iter = iter(loader)

    stop = min(cfg.steps, max_steps) if max_steps is not None else cfg.steps
    t0 = time.time()
    bar = tqdm(range(start, stop), initial=start, total=stop, desc="pretrain", disable=not (progress and accelerator.is_local_main_process))
    model.train()
    for step in bar:
        teachers = active_teachers(cfg, step)
        loss_gen = torch.Generator().manual_seed(cfg.seed * 100_003 + step)
        logs_acc, loss_acc, points = {}, 0.0, 0
        for micro in range(cfg.grad_accum):
            batch = next(data_iter)
            dev = accelerator.device
            sync = nullcontext() if micro == cfg.grad_accum - 1 else accelerator.no_sync(model)
            with sync:
                with accelerator.autocast():
                    features = model(batch["means"].to(dev), batch["feats"].to(dev), batch["offset"].to(dev))
                    loss, logs = multi_teacher_loss(features, raw.heads, batch, teachers, cfg, loss_gen, vocab)
                accelerator.backward(loss / cfg.grad_accum)
            loss_acc += float(loss.detach()) / cfg.grad_accum
            points += int(batch["means"].shape[0])
            for k, v in logs.items():
                logs_acc[k] = logs_acc.get(k, 0.0) + v / cfg.grad_accum
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        record = {"step": step, "loss": loss_acc, "lr": sched.get_last_lr()[0], "grad_norm": float(grad_norm), "points": points,
                  "teachers": [t.name for t in teachers], **logs_acc}
        if accelerator.is_main_process:
            with log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        bar.set_postfix(loss=f"{loss_acc:.4f}")
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == stop:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(out, done, raw, opt.optimizer if hasattr(opt, "optimizer") else opt, sched, cfg.keep_checkpoints)
    seconds = time.time() - t0
    summary = {"start_step": start, "end_step": stop, "total_steps": cfg.steps, "seconds": seconds,
               "seconds_per_step": seconds / max(stop - start, 1), "variant": cfg.variant,
               "encoder_params": sum(p.numel() for p in raw.encoder.parameters()), "mixed_precision": cfg.mixed_precision}
    if accelerator.is_main_process:
        plot_loss_curve(read_log(log_path), out / "loss_curve.png", title=f"{cfg.variant} encoder, {cfg.steps} steps")
        if stop == cfg.steps:
            raw.encoder.save_pretrained(out / "encoder")
            raw.heads.save_pretrained(out / "heads")
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Multi-teacher pretraining of the Chorus encoder on lifted scene folders.")
    parser.add_argument("--config", required=True, help="YAML file holding a serialized PretrainConfig")
    parser.add_argument("--output-dir", default=None, help="override config.output_dir")
    parser.add_argument("--data-root", default=None, help="override config.data.root")
    parser.add_argument("--variant", choices=("gaussian", "point"), default=None, help="train the Gaussian (default) or point-cloud variant")
    parser.add_argument("--steps", type=int, default=None, help="override config.steps (schedule length)")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many total steps (keeps the schedule; resume later)")
    parser.add_argument("--mixed-precision", choices=("no", "bf16"), default=None)
    parser.add_argument("--resume", default="auto", help="'auto' (newest checkpoint in output dir), 'never', or a checkpoint folder")
    parser.add_argument("--no-progress", action="store_true", help="disable the tqdm bar")
    args = parser.parse_args(argv)
    d = PretrainConfig.from_yaml(args.config).to_dict()
    if args.output_dir:
        d["output_dir"] = args.output_dir
    if args.data_root:
        d["data"]["root"] = args.data_root
    if args.variant:
        d["variant"] = args.variant
    if args.steps:
        d["steps"] = args.steps
    if args.mixed_precision:
        d["mixed_precision"] = args.mixed_precision
    cfg = PretrainConfig.from_dict(d)
    summary = train(cfg, max_steps=args.max_steps, resume=args.resume, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
