"""Evidence that multi-teacher pretraining learns something (a benchmark, not a test).

Stages (each skipped when its output exists, so the script resumes):
  data   python -m data.synth --scenes N --out WORK/synth --density D
  lift   python -m encoder.lift on the *train* rooms only (offline teachers)
  train  encoder.pretrain.train with configs/pretrain_synth.yaml (+ overrides)
  eval   on held-out rooms (val + test splits), for the pretrained encoder and for the same
         architecture with random weights:
           (a) zero-shot semantic segmentation: language-projector features vs MiniLM
               embeddings of "this is a {class}" -> argmax -> mIoU (and f-mIoU without
               wall/floor/ceiling);
           (b) linear probe on frozen per-Gaussian encoder features (trained on the
               train rooms' labels) -> mIoU;
         plus the teacher ceiling: zero-shot on the lifted caption targets of the train rooms.
  ceiling  linear probe on each teacher's lifted targets (and all of them concatenated): what a perfect
         student of that teacher would score. Only train rooms are lifted, so it fits on the first 3/4
         of them and scores the last 1/4 (not the held-out rooms of eval).
  fit    where the student's zero-shot is lost, on its own train rooms: (a) the lifted caption targets
         averaged within voxels of 2-8 cm (what a student that gives every Gaussian of a voxel one feature
         could score at best), (b) the trained student there: zero-shot mIoU and its mean cosine to the
         targets, raw and with each side's mean over the rooms taken off (the part that tells words apart).
  measure  one fwd+bwd step at 1 vs 2 threads (speed + run-to-run agreement) and under bf16 autocast.

Writes benchmarks/results/pretrain_probe.json and .md.

    python benchmarks/pretrain_probe.py                       # everything, ~1-2 h on 2 busy cores
    python benchmarks/pretrain_probe.py --stages eval         # re-evaluate an existing run
    python benchmarks/pretrain_probe.py --work runs/pp_warm --data-dir runs/pretrain_probe/synth --stages train,eval \
        --init-from runs/pretrain_probe/pretrain/checkpoints/step_0001500 --out benchmarks/results/pretrain_probe_warm.json
                                                              # 1500 more steps from a finished run, same rooms
    python benchmarks/pretrain_probe.py --vocab none          # the recipe of the released encoder (no vocabulary term)
    python benchmarks/pretrain_probe.py --work runs/pp_more --extra-train-rooms 60 --stages data,lift,train,eval
                                                              # 108 train rooms, the same 12 held out
    python benchmarks/pretrain_probe.py --work runs/pp_168 --extra-train-rooms 120 --stages data,lift,train,eval
                                                              # 168: two more whole worlds (seeds 1 and 3; 2 is Q&A's)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
LANGUAGE_TEACHER = "caption_minilm"
PROBE_EPOCHS = 20  # linear-probe epochs of every recorded result (evaluation and ceiling)


def run(cmd: list[str], log: Path) -> None:
    print("$", " ".join(cmd), flush=True)
    with log.open("a") as fh:
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)


def read_split(data_dir: Path, split: str) -> list[str]:
    return [s.strip() for s in (data_dir / "splits" / f"{split}.txt").read_text().splitlines() if s.strip()]


def probe_train_ids(args, data_dir: Path) -> list[str]:
    """The train rooms the linear probe, the teacher ceiling and the fit stage read: the base world's (synth<seed>_*).
    Rooms added by --extra-train-rooms only train the encoder, so every run is scored on the same probe rooms."""
    from data.synth.dataset import scene_id_for

    ids = read_split(data_dir, "train")
    prefix = scene_id_for(args.seed, 0)[: -len("0000")]
    return [i for i in ids if i.startswith(prefix)] or ids


def stage_data(args, data_dir: Path) -> None:
    if not (data_dir / "classes.json").is_file():
        run([sys.executable, "-m", "data.synth", "--scenes", str(args.scenes), "--out", str(data_dir), "--seed", str(args.seed),
             "--density", str(args.density)], args.work / "data.log")
    if args.extra_train_rooms > 0:
        add_train_rooms(args, data_dir)


def extra_worlds(args) -> list[tuple[int, int, str]]:
    """(world seed, rooms, folder name) of ``--extra-train-rooms N``: the rooms come from the next world seeds in
    turn, skipping the Q&A world's seed (data.synth.dataset.QA_WORLD_SEED), at most ``--scenes`` rooms from each;
    the first goes to DATA/extra, later ones to DATA/extra_seed<seed>. N <= --scenes is one world, as it always was."""
    from data.synth.dataset import QA_WORLD_SEED

    out, left, seed = [], int(args.extra_train_rooms), int(args.seed)
    while left > 0:
        seed += 1
        if seed == QA_WORLD_SEED:
            continue
        n = min(left, int(args.scenes))
        out.append((seed, n, "extra" if not out else f"extra_seed{seed}"))
        left -= n
    return out


def add_train_rooms(args, data_dir: Path) -> None:
    """``--extra-train-rooms N``: N more rooms from the next world seeds (ids synth<seed>_*, see extra_worlds),
    generated into DATA/extra*, linked into DATA/scenes and appended to the train split. The held-out rooms stay
    the same, so runs with and without them are scored alike. Idempotent."""
    ids = []
    for seed, n, name in extra_worlds(args):
        extra = data_dir / name
        if not (extra / "classes.json").is_file():
            run([sys.executable, "-m", "data.synth", "--scenes", str(n), "--out", str(extra), "--seed", str(seed),
                 "--density", str(args.density)], args.work / "data.log")
        if json.loads((extra / "classes.json").read_text()) != json.loads((data_dir / "classes.json").read_text()):
            raise ValueError(f"{extra}: its classes.json differs from {data_dir / 'classes.json'}; the rooms cannot share a probe")
        have = sorted(d.name for d in (extra / "scenes").iterdir() if d.is_dir())[:n]
        if len(have) < n:
            raise ValueError(f"{extra}: {len(have)} rooms, --extra-train-rooms asks for {n} from world seed {seed}")
        for sid in have:
            link = data_dir / "scenes" / sid
            if not link.exists():
                link.symlink_to(Path("..") / name / "scenes" / sid)
        ids += have
    train = read_split(data_dir, "train")
    new = [sid for sid in ids if sid not in train]
    if new:
        (data_dir / "splits" / "train.txt").write_text("\n".join(train + new) + "\n")


# Mask-painted teachers are cheap to run (a lookup per instance): they get many views, and a higher
# minimum compositing weight keeps Gaussians that only graze an object out of its targets. Measured on
# two train rooms (caption targets vs "this is a {class}" queries): 8 views, min weight 0.01 -> 72-86 %
# of Gaussians lifted, zero-shot mIoU 71 %; 24 views, min weight 0.1 -> 92-96 %, 82 %. EfficientNet is
# the expensive teacher and keeps the smaller view count.
MASK_TEACHERS = "caption-minilm,instance-mask"
IMAGE_TEACHERS = "efficientnet-lite0"


def stage_lift(args, data_dir: Path) -> float:
    """Lift the train rooms with ``args.lift_workers`` single-threaded lift CLI processes, each over a folder of
    symlinks to its share of the rooms (one thread per process: 2 threads per process were ~4x slower on our
    busy 2-core machine), in two passes: the mask teachers (``--mask-views``), then the image teacher
    (``--views``). Returns the summed seconds per scene from the lift logs."""
    import os

    from encoder.lift import LiftConfig

    ids = read_split(data_dir, "train")
    shares = [ids[k :: args.lift_workers] for k in range(args.lift_workers)]
    link_dirs = []
    for k, share in enumerate(shares):
        link_dir = data_dir / f"lift_train_{k}"
        link_dir.mkdir(exist_ok=True)
        for sid in share:
            link = link_dir / sid
            if not link.exists():
                link.symlink_to(Path("..") / "scenes" / sid)
        link_dirs.append(link_dir)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    passes = [(MASK_TEACHERS, args.mask_views, args.mask_min_weight), (IMAGE_TEACHERS, args.views, LiftConfig.min_weight)]
    for teachers, views, min_weight in passes:
        procs = []
        for k, link_dir in enumerate(link_dirs):
            cmd = [sys.executable, "-m", "encoder.lift", "--scenes", str(link_dir), "--teachers", teachers, "--views", str(views),
                   "--width", str(args.lift_width), "--height", str(args.lift_height), "--min-weight", str(min_weight)]
            print("$", " ".join(cmd), flush=True)
            fh = (args.work / f"lift_{k}.log").open("a")
            procs.append((subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env), fh))
        for proc, fh in procs:
            if proc.wait() != 0:
                raise RuntimeError(f"lifting failed (exit {proc.returncode}); see {args.work}/lift_*.log")
            fh.close()
    logs = [d / "lift_log.jsonl" for d in link_dirs]
    rows = [json.loads(line) for log in logs if log.is_file() for line in log.read_text().splitlines() if line.strip()]
    return float(sum(r.get("seconds", 0.0) for r in rows))


def pretrain_config(args, data_dir: Path):
    from encoder.pretrain import PretrainConfig

    d = PretrainConfig.from_yaml(args.config).to_dict()
    d["data"]["root"] = str(data_dir)
    d["output_dir"] = str(args.work / "pretrain")
    d["steps"] = args.steps
    d["augment"]["max_points"] = args.max_points
    if args.init_from:
        d["init_from"] = str(args.init_from)
    if args.vocab is not None or args.vocab_weight is not None:  # the language teacher's vocabulary term
        lang = [t for t in d["teachers"] if t["name"] == LANGUAGE_TEACHER]
        if not lang:
            raise ValueError(f"--vocab / --vocab-weight: the config has no {LANGUAGE_TEACHER} teacher")
        if args.vocab is not None:
            lang[0]["vocab"] = args.vocab
        if args.vocab_weight is not None:
            lang[0]["vocab_weight"] = args.vocab_weight
    return PretrainConfig.from_dict(d)


def stage_train(args, data_dir: Path) -> dict:
    from encoder.pretrain import train

    cfg = pretrain_config(args, data_dir)
    if (Path(cfg.output_dir) / "encoder" / "model.safetensors").is_file():
        return json.loads((Path(cfg.output_dir) / "summary.json").read_text())
    return train(cfg, resume="auto", progress=True)


# ---------------------------------------------------------------- evaluation
@torch.no_grad()
def encode_scene(encoder, scene, variant: str) -> torch.Tensor:
    from encoder.inputs import scene_to_input

    encoder.eval()
    return encoder(scene.means, scene_to_input(scene, variant), torch.tensor([len(scene)]))


def probe_pick(labels: torch.Tensor, probe_points: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of up to probe_points labelled (>= 0) rows of one room, drawn at random without replacement."""
    labelled = torch.nonzero(labels >= 0).squeeze(1)
    return labelled[torch.randperm(labelled.numel(), generator=gen)[:probe_points]]


def evaluate_encoder(encoder, heads, train_scenes, eval_scenes, class_names, text_encoder, probe_points: int, seed: int,
                     probe_epochs: int = PROBE_EPOCHS) -> dict:
    """Zero-shot + linear-probe metrics of one encoder (+ its language projector) on eval_scenes."""
    from encoder.probe import LinearProbeConfig, evaluate_probe, train_linear_probe
    from encoder.zeroshot import ZeroShotSegmenter

    seg = ZeroShotSegmenter(class_names, text_encoder)
    c = len(class_names)
    gen = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for s in train_scenes:
        f = encode_scene(encoder, s, encoder.config.variant)
        pick = probe_pick(s.semantic, probe_points, gen)
        xs.append(f[pick])
        ys.append(s.semantic[pick])
    t0 = time.time()
    probe = train_linear_probe(torch.cat(xs), torch.cat(ys), c, LinearProbeConfig(epochs=probe_epochs, seed=seed))
    probe_seconds = time.time() - t0
    conf_zs = np.zeros((c, c + 1), dtype=np.int64)
    feats, labels = [], []
    for s in eval_scenes:
        f = encode_scene(encoder, s, encoder.config.variant)
        conf_zs += seg.confusion(heads.project(LANGUAGE_TEACHER, f), s.semantic)
        feats.append(f)
        labels.append(s.semantic)
    zs = seg.metrics(conf_zs)
    lp = evaluate_probe(probe, feats, labels, c, class_names)
    keep = ("miou", "f_miou", "macc", "f_macc", "allacc")
    return {"zero_shot": {k: zs[k] for k in keep}, "zero_shot_per_class_iou": zs.get("per_class_iou"),
            "linear_probe": {k: lp[k] for k in ("miou", "macc", "allacc")}, "linear_probe_per_class_iou": lp.get("per_class_iou"),
            "probe_train_seconds": probe_seconds}


def stage_eval(args, data_dir: Path) -> dict:
    from adapters.text import get_text_encoder
    from data import load_scene
    from encoder.heads import MultiTeacherHeads
    from encoder.ptv3 import ChorusEncoder
    from encoder.zeroshot import ZeroShotSegmenter

    run_dir = args.work / "pretrain"
    class_names = json.loads((data_dir / "classes.json").read_text())["class_names"]
    text_encoder = get_text_encoder("minilm")
    train_ids = probe_train_ids(args, data_dir)
    held_ids = read_split(data_dir, "val") + read_split(data_dir, "test")
    train_scenes = [load_scene(data_dir / "scenes" / i) for i in train_ids]
    held_scenes = [load_scene(data_dir / "scenes" / i) for i in held_ids]

    # teacher ceiling: zero-shot on the lifted language targets themselves (train rooms)
    seg = ZeroShotSegmenter(class_names, text_encoder)
    conf = sum(seg.confusion(s.features[LANGUAGE_TEACHER][0].float(), s.semantic[s.features[LANGUAGE_TEACHER][1]])
               for s in train_scenes if LANGUAGE_TEACHER in s.features)
    ceiling = seg.metrics(conf)

    trained = ChorusEncoder.from_pretrained(run_dir / "encoder")
    heads = MultiTeacherHeads.from_pretrained(run_dir / "heads")
    torch.manual_seed(args.seed)
    random_enc = ChorusEncoder(trained.config)
    random_heads = MultiTeacherHeads(heads.cfg)
    out = {}
    for name, enc, hd in (("pretrained", trained, heads), ("random_weights", random_enc, random_heads)):
        t0 = time.time()
        out[name] = evaluate_encoder(enc, hd, train_scenes, held_scenes, class_names, text_encoder, args.probe_points, args.seed)
        out[name]["eval_seconds"] = time.time() - t0
        print(name, json.dumps({k: out[name][k] for k in ("zero_shot", "linear_probe")}), flush=True)
    out["teacher_ceiling_train_rooms"] = {k: ceiling[k] for k in ("miou", "f_miou", "macc", "allacc")}
    out["held_out_scenes"] = held_ids
    out["num_train_scenes"] = len(train_ids)
    out["mean_gaussians_held_out"] = float(np.mean([len(s) for s in held_scenes]))
    return out


def lifted_rows(scene, teachers) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each teacher's lifted target [M, D_t] on the M Gaussians every teacher reached, and their labels [M]."""
    common = None
    for t in teachers:
        seen = torch.zeros(len(scene), dtype=torch.bool)
        seen[scene.features[t][1].long()] = True
        common = seen if common is None else common & seen
    keep = torch.nonzero(common).squeeze(1)
    rows = []
    for t in teachers:
        target, index = scene.features[t]
        row_of = torch.full((len(scene),), -1, dtype=torch.long)
        row_of[index.long()] = torch.arange(len(index))
        rows.append(target[row_of[keep]].float())
    return rows, scene.semantic[keep].long()


def stage_ceiling(args, data_dir: Path) -> dict:
    """Linear-probe mIoU of the lifted teacher targets themselves (fit on 3/4 of the train rooms, scored on the rest)."""
    from data import load_scene
    from encoder.probe import LinearProbeConfig, evaluate_probe, train_linear_probe

    class_names = json.loads((data_dir / "classes.json").read_text())["class_names"]
    ids = probe_train_ids(args, data_dir)
    scenes = [load_scene(data_dir / "scenes" / i) for i in ids]
    teachers = sorted(set.intersection(*(set(s.features) for s in scenes)))
    if not teachers:
        raise ValueError(f"ceiling: the train rooms of {data_dir} share no lifted teacher (run the lift stage)")
    rows = [lifted_rows(s, teachers) for s in scenes]
    cut = (3 * len(rows)) // 4
    gen = torch.Generator().manual_seed(args.seed)
    out = {"teachers": teachers, "fit_rooms": cut, "scored_rooms": len(rows) - cut}
    for name, cols in [(t, [k]) for k, t in enumerate(teachers)] + [("all", list(range(len(teachers))))]:
        xs, ys = [], []
        for feats, y in rows[:cut]:
            pick = torch.randperm(len(y), generator=gen)[: args.probe_points]
            xs.append(torch.cat([feats[c] for c in cols], 1)[pick])
            ys.append(y[pick])
        probe = train_linear_probe(torch.cat(xs), torch.cat(ys), len(class_names), LinearProbeConfig(epochs=PROBE_EPOCHS, seed=args.seed))
        m = evaluate_probe(probe, [torch.cat([f[c] for c in cols], 1) for f, _ in rows[cut:]], [y for _, y in rows[cut:]],
                           len(class_names), class_names)
        out[name] = {k: m[k] for k in ("miou", "macc", "allacc")}
        print("ceiling", name, json.dumps(out[name]), flush=True)
    return out


def voxel_mean(means: torch.Tensor, feats: torch.Tensor, grid_size: float) -> torch.Tensor:
    """Every row of ``feats`` [N, D] replaced by the mean over the rows whose ``means`` [N, 3] share its voxel."""
    from encoder.grid import scatter_mean, voxelize

    vox = voxelize(means, torch.tensor([len(means)]), grid_size)
    return scatter_mean(feats, vox.inverse, vox.num_voxels)[vox.inverse]


FIT_GRIDS = (0.02, 0.03, 0.05, 0.08)


def stage_fit(args, data_dir: Path) -> dict:
    """Zero-shot of the voxel-averaged targets and of the student on the first ``--fit-rooms`` train rooms."""
    import torch.nn.functional as F

    from adapters.text import get_text_encoder
    from data import load_scene
    from encoder.heads import MultiTeacherHeads
    from encoder.ptv3 import ChorusEncoder
    from encoder.zeroshot import ZeroShotSegmenter

    class_names = json.loads((data_dir / "classes.json").read_text())["class_names"]
    seg = ZeroShotSegmenter(class_names, get_text_encoder("minilm"))
    run_dir = args.work / "pretrain"
    encoder = ChorusEncoder.from_pretrained(run_dir / "encoder")
    heads = MultiTeacherHeads.from_pretrained(run_dir / "heads")
    conf = {g: 0 for g in (0.0,) + FIT_GRIDS}
    conf_student, rows = 0, []
    for i in probe_train_ids(args, data_dir)[: args.fit_rooms]:
        scene = load_scene(data_dir / "scenes" / i)
        if LANGUAGE_TEACHER not in scene.features:
            continue
        target, index = scene.features[LANGUAGE_TEACHER]
        target, index = target.float(), index.long()
        labels = scene.semantic[index]
        for g in conf:
            conf[g] = conf[g] + seg.confusion(voxel_mean(scene.means[index], target, g) if g else target, labels)
        pred = heads.project(LANGUAGE_TEACHER, encode_scene(encoder, scene, encoder.config.variant))[index].float()
        conf_student = conf_student + seg.confusion(pred, labels)
        rows.append((pred, target))
    if not rows:
        raise ValueError(f"fit: no train room of {data_dir} has lifted {LANGUAGE_TEACHER} targets (run the lift stage)")
    mean_p = torch.cat([p for p, _ in rows]).mean(0)
    mean_t = torch.cat([t for _, t in rows]).mean(0)
    cos = torch.cat([F.cosine_similarity(p, t) for p, t in rows]).mean()
    cos_c = torch.cat([F.cosine_similarity(p - mean_p, t - mean_t) for p, t in rows]).mean()
    out = {"rooms": len(rows), "targets_zero_shot_miou": {("none" if g == 0 else f"{g:g} m"): seg.metrics(c)["miou"] for g, c in conf.items()},
           "student_zero_shot_miou": seg.metrics(conf_student)["miou"], "student_target_cosine": float(cos),
           "student_target_cosine_centred": float(cos_c)}
    print("fit", json.dumps(out), flush=True)
    return out


def stage_measure(args, data_dir: Path) -> dict:
    """fwd+bwd of the small encoder on one cropped room: 1 vs 2 threads, agreement, bf16 autocast."""
    from data import load_scene
    from encoder.augment import crop
    from encoder.config import EncoderConfig
    from encoder.inputs import scene_to_input
    from encoder.ptv3 import ChorusEncoder

    scene = load_scene(data_dir / "scenes" / read_split(data_dir, "val")[0])
    scene = crop(scene, args.max_points, scene.means.mean(0))
    x, off = scene_to_input(scene, "gaussian"), torch.tensor([len(scene)])
    torch.manual_seed(0)
    enc = ChorusEncoder(EncoderConfig.small(drop_path=0.0)).eval()
    res = {"points": len(scene)}
    before = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        outs, times = [], []
        for _ in range(3):
            t0 = time.time()
            y = enc(scene.means, x, off)
            y.pow(2).mean().backward()
            times.append(time.time() - t0)
            outs.append(y.detach())
        res[f"threads_{threads}"] = {"seconds_fwd_bwd": times, "max_abs_diff_between_runs": max(float((o - outs[0]).abs().max()) for o in outs)}
    torch.set_num_threads(1)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            t0 = time.time()
            enc(scene.means, x, off).float().pow(2).mean().backward()
        res["bf16_autocast"] = {"seconds_fwd_bwd": time.time() - t0}
    except Exception as err:  # spconv has no bf16 kernels: record what happened
        res["bf16_autocast"] = {"error": f"{type(err).__name__}: {str(err)[:200]}"}
    torch.set_num_threads(before)
    return res


def train_rooms(res: dict) -> str:
    """'48 train', or '108 pretraining / 48 probe-training' when --extra-train-rooms trained on more rooms."""
    probe = res.get("eval", {}).get("num_train_scenes", "?")
    pre = res.get("pretrain_train_rooms", probe)
    if probe == "?":  # no eval stage: only the pretraining rooms are known
        return f"{pre} train"
    return f"{probe} train" if pre == probe else f"{pre} pretraining / {probe} probe-training"


def markdown(res: dict) -> str:
    """The run's report. Stages that did not run (e.g. a data,lift-only run) leave their parts out."""
    ev, tr = res.get("eval", {}), res.get("train", {})
    facts = [f"{res['num_scenes']} rooms (density {res['density']}"
             + (f", ~{ev['mean_gaussians_held_out']:.0f} Gaussians)" if "mean_gaussians_held_out" in ev else ")"),
             f"{train_rooms(res)}" + (f" / {len(ev['held_out_scenes'])} held-out (val+test)" if "held_out_scenes" in ev else "")]
    if tr:
        facts.append(f"`small` encoder ({tr.get('encoder_params', 0) / 1e6:.1f}M params), {tr.get('end_step', '?')} steps, "
                     f"training {tr.get('seconds', 0) / 60:.1f} min")
    if "lift_seconds" in res:
        facts.append(f"lifting {res['lift_seconds'] / 60:.1f} CPU-min (summed over {res.get('lift_workers', 2)} parallel workers)")
    lines = ["# Pretraining evidence: synthetic rooms", "", ", ".join(facts) + " on 2 shared CPU cores."]
    if ev:
        lines += ["", "| encoder | zero-shot mIoU | zero-shot f-mIoU | linear-probe mIoU | linear-probe mAcc |", "|---|---|---|---|---|"]
    for name in ("pretrained", "random_weights"):
        if name in ev:
            z, p = ev[name]["zero_shot"], ev[name]["linear_probe"]
            lines.append(f"| {name} | {100 * z['miou']:.1f} | {100 * z['f_miou']:.1f} | {100 * p['miou']:.1f} | {100 * p['macc']:.1f} |")
    if "teacher_ceiling_train_rooms" in ev:
        c = ev["teacher_ceiling_train_rooms"]
        lines.append(f"| lifted teacher targets (train rooms, ceiling) | {100 * c['miou']:.1f} | {100 * c['f_miou']:.1f} | - | - |")
    ceil = res.get("teacher_probe_ceiling")
    if ceil:
        lines += ["", f"Linear probe on the lifted teacher targets themselves (fit on {ceil['fit_rooms']} train rooms, scored on the "
                  f"other {ceil['scored_rooms']}; held-out rooms are not lifted): the most a perfect student of each teacher "
                  "would give the probe.", "", "| teacher targets | linear-probe mIoU | mAcc | overall acc |", "|---|---|---|---|"]
        for name in ceil["teachers"] + ["all"]:
            m = ceil[name]
            lines.append(f"| {name if name != 'all' else 'all, concatenated'} | {100 * m['miou']:.1f} | {100 * m['macc']:.1f} | {100 * m['allacc']:.1f} |")
    fit = res.get("fit")
    if fit:
        grids = ", ".join(f"{k} {100 * v:.1f}" for k, v in fit["targets_zero_shot_miou"].items())
        lines += ["", f"Fit on {fit['rooms']} of its own train rooms (the `fit` stage): zero-shot mIoU of the lifted caption "
                  f"targets averaged per voxel: {grids}; the student there: {100 * fit['student_zero_shot_miou']:.1f}, "
                  f"cosine to the targets {fit['student_target_cosine']:.3f} (centred {fit['student_target_cosine_centred']:.3f})."]
    lines += ["", f"Reproduce: `{res['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "pretrain_probe", help="data + run folder (not committed)")
    p.add_argument("--config", default=str(ROOT / "configs" / "pretrain_synth.yaml"))
    p.add_argument("--scenes", type=int, default=60)
    p.add_argument("--density", type=float, default=0.3)
    p.add_argument("--extra-train-rooms", type=int, default=0,
                   help="more train rooms from the next world seeds, at most --scenes from each; the held-out rooms do not change")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--views", type=int, default=8, help="lifting cameras per room for the image teacher")
    p.add_argument("--mask-views", type=int, default=24, help="lifting cameras per room for the mask-painted teachers")
    p.add_argument("--mask-min-weight", type=float, default=0.1, help="min compositing weight for mask-teacher targets")
    p.add_argument("--lift-workers", type=int, default=2, help="parallel single-threaded lift processes")
    p.add_argument("--lift-width", type=int, default=192, help="lifting render width (accumulated at half)")
    p.add_argument("--lift-height", type=int, default=144)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--max-points", type=int, default=12000, help="training crop per room")
    p.add_argument("--probe-points", type=int, default=4000, help="labelled Gaussians per train room for the linear probe")
    p.add_argument("--stages", default="data,lift,train,eval,ceiling,measure")
    p.add_argument("--vocab", default=None, help="the language teacher's vocabulary term: a label set (e.g. scannet200) or none "
                   "(default: the config's)")
    p.add_argument("--vocab-weight", type=float, default=None, help="its weight (default: the config's)")
    p.add_argument("--fit-rooms", type=int, default=24, help="train rooms the fit stage reads")
    p.add_argument("--out", type=Path, default=RESULTS / "pretrain_probe.json")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="generated + lifted rooms of another run (default WORK/synth), e.g. to warm-start on the same rooms")
    p.add_argument("--init-from", default=None,
                   help="warm start: a pretraining checkpoint folder (RUN/checkpoints/step_N) or an exported encoder "
                        "(encoder/ + heads/, e.g. checkpoints/demo); new optimizer and schedule")
    args = p.parse_args(argv)
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # spconv's CPU convs are wrong and slow with >1 thread (see measure)
    data_dir = args.data_dir.resolve() if args.data_dir else args.work / "synth"
    stages = set(args.stages.split(","))
    res = json.loads(args.out.read_text()) if args.out.is_file() else {}
    command = "python benchmarks/pretrain_probe.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if "data" in stages:
        stage_data(args, data_dir)
    meta = {"num_scenes": args.scenes if not (data_dir / "splits").is_dir() else
                sum(len(read_split(data_dir, k)) for k in ("train", "val", "test")), "density": args.density, "views": args.views, "mask_views": args.mask_views, "lift_size": [args.lift_width, args.lift_height], "steps": args.steps,
                "max_points": args.max_points, "lift_workers": args.lift_workers, "command": command}
    if (data_dir / "splits").is_dir():  # read after the data stage, which may add --extra-train-rooms
        meta["pretrain_train_rooms"] = len(read_split(data_dir, "train"))
    if stages & {"data", "lift", "train", "eval"} or "command" not in res:
        res.update(meta)  # a later ceiling / measure pass keeps the settings and command that made the run

    def save() -> None:  # after every stage, so a later stage that dies (e.g. out of memory) loses nothing before it
        from data.atomic import atomic_file

        for path, text in ((args.out, json.dumps(res, indent=1)), (args.out.with_suffix(".md"), markdown(res))):
            with atomic_file(path) as tmp:
                tmp.write_text(text)

    for stage, key, run_stage in (("lift", "lift_seconds", stage_lift), ("train", "train", stage_train), ("eval", "eval", stage_eval),
                                  ("ceiling", "teacher_probe_ceiling", stage_ceiling), ("fit", "fit", stage_fit),
                                  ("measure", "measure", stage_measure)):
        if stage in stages:
            res[key] = run_stage(args, data_dir)
            if stage == "ceiling":
                res[key]["command"] = command
            save()
    save()  # also a data-only run, which no stage above saved
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
