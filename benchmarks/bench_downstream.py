"""Downstream evidence for the Chorus encoder on held-out synthetic rooms.

    python benchmarks/bench_downstream.py [--checkpoint RUN] [--point-checkpoint RUN] [--train 16 --val 6]

For every encoder (the pretrained ``small`` one when a checkpoint is found or given, the same
architecture with random weights, and the point-cloud variant): zero-shot f-mIoU, open-vocabulary
instance mAP25/50, linear- and decoder-probe mIoU, and the data-efficient curves (PNG). Then
render-and-distill adaptation of the first encoder to a shifted domain (other palette, half the
density) with the probe mIoU before/after and the cost per view.

Rooms are generated in memory from seeds the pretraining world never uses (900000 + i), so they
are held out. Writes ``benchmarks/results/bench_downstream.json`` / ``.md`` and PNGs beside them.
Runs with one torch thread (fastest on our shared 2-core machines).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def find_checkpoints() -> dict[str, Path]:
    """variant -> run folder (holding encoder/ + heads/) found under checkpoints/ or named by pretrain_probe.json."""
    found: dict[str, Path] = {}
    candidates = sorted((ROOT / "checkpoints").glob("**/encoder/config.json"))
    probe = RESULTS / "pretrain_probe.json"
    if probe.is_file():
        def walk(x):
            if isinstance(x, dict):
                for v in x.values():
                    yield from walk(v)
            elif isinstance(x, list):
                for v in x:
                    yield from walk(v)
            elif isinstance(x, str) and ("checkpoint" in x or "runs/" in x):
                yield x
        for s in walk(json.loads(probe.read_text())):
            p = (ROOT / s) if not Path(s).is_absolute() else Path(s)
            for c in (p / "encoder" / "config.json", p / "config.json"):
                if c.is_file():
                    candidates.append(c)
    for cfg_path in candidates:
        run = cfg_path.parent.parent if cfg_path.parent.name == "encoder" else cfg_path.parent
        if not (run / "encoder" / "model.safetensors").is_file():
            continue
        variant = json.loads(cfg_path.read_text()).get("variant", "gaussian")
        found.setdefault(variant, run)
    return found


def recolour(scene):
    """The shifted palette: channels rotated (r, g, b) -> (b, r, g), contrast lowered, a warm tint added."""
    from data.scene import GaussianScene

    c = scene.colors[:, [2, 0, 1]]
    c = (0.12 + 0.7 * c + torch.tensor([0.12, 0.05, -0.05])).clamp(0, 1)
    return GaussianScene(means=scene.means, quats=scene.quats, scales=scene.scales, opacities=scene.opacities, colors=c,
                         normals=scene.normals, semantic=scene.semantic, instance=scene.instance,
                         class_names=scene.class_names, name=scene.name + "_shift")


def rooms(first_seed: int, count: int, density: float, shifted: bool = False) -> list:
    from data.synth import generate_room

    out = []
    for i in range(count):
        scene, _ = generate_room(first_seed + i, density=density, scene_id=f"held{first_seed + i}")
        out.append(recolour(scene) if shifted else scene)
    return out


def probe_scores(bank, train, val, class_names, epochs: int, decoder_epochs: int) -> dict:
    from encoder.decoder_probe import DecoderProbeConfig, evaluate_decoder_probe, knn_indices, train_decoder_probe
    from encoder.evaluate import map_labels
    from encoder.probe import LinearProbeConfig, evaluate_probe, train_linear_probe

    n = len(class_names)
    tr_f, va_f = [bank(s) for s in train], [bank(s) for s in val]
    tr_y = [map_labels(s.semantic, s.class_names, class_names) for s in train]
    va_y = [map_labels(s.semantic, s.class_names, class_names) for s in val]
    tic = time.perf_counter()
    lin = train_linear_probe(torch.cat(tr_f), torch.cat(tr_y), n, LinearProbeConfig(epochs=epochs, batch_size=4096))
    out = {"linear": evaluate_probe(lin, va_f, va_y, n)["miou"], "linear_seconds": round(time.perf_counter() - tic, 1)}
    if decoder_epochs:
        tic = time.perf_counter()
        tr_k, va_k = [knn_indices(s.means, 16) for s in train], [knn_indices(s.means, 16) for s in val]
        dec = train_decoder_probe(tr_f, tr_k, tr_y, n, DecoderProbeConfig(epochs=decoder_epochs, max_train_points=150_000))
        out["decoder"] = evaluate_decoder_probe(dec, va_f, va_k, va_y, n)["miou"]
        out["decoder_seconds"] = round(time.perf_counter() - tic, 1)
    return out, (tr_f, tr_y, va_f, va_y)


def evaluate_encoder(label, encoder, heads, train, val, args, class_names, text, picture: Path | None) -> dict:
    from encoder.data_efficient import DataEfficientConfig, run_data_efficient
    from encoder.evaluate import FeatureBank, project, run_instance, run_zeroshot
    from encoder.probe import LinearProbeConfig

    print(f"== {label}", flush=True)
    bank = FeatureBank(encoder, tag=label)
    row = {"model": label, "params": sum(p.numel() for p in encoder.parameters()), "variant": encoder.config.variant}
    tic = time.perf_counter()
    zs = run_zeroshot(val, lambda s: project(heads, "caption_minilm", bank(s)), class_names, text,
                      picture_dir=picture.parent if picture else None, n_pictures=1 if picture else 0)
    if picture and zs["pictures"]:
        Path(zs["pictures"][0]).replace(picture)
    row.update(zs_f_miou=zs["f_miou"], zs_f_macc=zs["f_macc"], zs_miou=zs["miou"], zeroshot_seconds=round(time.perf_counter() - tic, 1))
    print("zero-shot", row["zs_f_miou"], flush=True)
    tic = time.perf_counter()
    inst = run_instance(val, lambda s: project(heads, "instance_mask", bank(s)), lambda s: project(heads, "caption_minilm", bank(s)),
                        class_names, text)
    row.update(map25=inst["map25"], map50=inst["map50"], proposals_per_scene=inst["proposals_per_scene"],
               instance_seconds=round(time.perf_counter() - tic, 1))
    print("instance", row["map50"], flush=True)
    probes, (tr_f, tr_y, va_f, va_y) = probe_scores(bank, train, val, class_names, args.epochs, args.decoder_epochs)
    row.update(probes)
    print("probes", probes, flush=True)
    de = run_data_efficient(tr_f, tr_y, va_f, va_y, len(class_names),
                            DataEfficientConfig(seeds=tuple(range(args.de_seeds)), probe=LinearProbeConfig(epochs=args.epochs, batch_size=4096)))
    row["encode_seconds_per_scene"] = round(bank.seconds / max(len(bank.memory), 1), 2)
    return row, de


def adaptation(label, encoder, heads, args, class_names) -> dict:
    """Adapt to the shifted domain; linear probe on shifted rooms before vs after."""
    import copy

    from encoder.adapt import AdaptConfig, adapt_encoder
    from encoder.evaluate import FeatureBank

    train = rooms(950_000, args.shift_train, args.shift_density, shifted=True)
    val = rooms(960_000, args.shift_val, args.shift_density, shifted=True)
    before, _ = probe_scores(FeatureBank(encoder, tag="before"), train, val, class_names, args.epochs, 0)
    adapted = copy.deepcopy(encoder)
    cfg = AdaptConfig(teacher="efficientnet-lite0", steps=args.adapt_steps, views_per_scene=args.adapt_views,
                      views_per_step=2, width=160, height=120, lr=args.adapt_lr, seed=0)
    summary = adapt_encoder(adapted, copy.deepcopy(heads), train[: args.adapt_scenes], cfg, progress=True)
    after, _ = probe_scores(FeatureBank(adapted, tag="after"), train, val, class_names, args.epochs, 0)
    return {
        "model": label, "teacher": summary["teacher"], "head": summary["head"], "new_head": summary["new_head"],
        "shift": {"palette": "channels (r,g,b)->(b,r,g), 0.12 + 0.7 c + tint (0.12, 0.05, -0.05)", "density": args.shift_density},
        "adapt_scenes": args.adapt_scenes, "probe_train_scenes": len(train), "probe_val_scenes": len(val),
        "views": summary["views"], "steps": cfg.steps, "views_per_step": cfg.views_per_step, "render": [cfg.width, cfg.height],
        "feature_map": [cfg.width // cfg.feature_downscale, cfg.height // cfg.feature_downscale],
        "lora_rank": cfg.lora_rank, "trainable_parameters": summary["trainable_parameters"],
        "loss_first": summary["loss_first"], "loss_last": summary["loss_last"],
        "loss_first10_mean": float(np.mean([r["loss"] for r in summary["log"][:10]])),
        "loss_last10_mean": float(np.mean([r["loss"] for r in summary["log"][-10:]])),
        "prepare_seconds_per_view": summary["prepare_seconds_per_view"], "prepare_seconds": summary["prepare_seconds"],
        "train_seconds_per_view": summary["train_seconds_per_view"], "train_seconds": summary["train_seconds"],
        "probe_miou_before": before["linear"], "probe_miou_after": after["linear"],
        "probe_gain": after["linear"] - before["linear"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="pretrained small Gaussian encoder run (encoder/ + heads/); auto-detected")
    p.add_argument("--point-checkpoint", default=None, help="pretrained point-variant run; auto-detected")
    p.add_argument("--train", type=int, default=16, help="held-out rooms for probe training")
    p.add_argument("--val", type=int, default=6, help="held-out rooms for evaluation")
    p.add_argument("--density", type=float, default=0.3, help="room density (the pretraining world uses 0.3)")
    p.add_argument("--epochs", type=int, default=30, help="linear probe epochs")
    p.add_argument("--decoder-epochs", type=int, default=8)
    p.add_argument("--de-seeds", type=int, default=2, help="subsets per data-efficient setting")
    p.add_argument("--shift-density", type=float, default=0.15)
    p.add_argument("--shift-train", type=int, default=8)
    p.add_argument("--shift-val", type=int, default=4)
    p.add_argument("--adapt-scenes", type=int, default=4)
    p.add_argument("--adapt-views", type=int, default=8)
    p.add_argument("--adapt-steps", type=int, default=40)
    p.add_argument("--adapt-lr", type=float, default=1e-3)
    p.add_argument("--no-random-point", action="store_true", help="skip the random point-variant encoder")
    p.add_argument("--skip-adapt", action="store_true")
    p.add_argument("--models", default="pretrained,random,point",
                   help="which encoders to evaluate (comma-separated subset of pretrained,random,point); "
                        "e.g. `--models point --skip-adapt --out .../bench_downstream_point.json` adds one later")
    p.add_argument("--out", default=str(RESULTS / "bench_downstream.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from adapters.text import get_text_encoder
    from encoder.data_efficient import plot_data_efficient
    from encoder.evaluate import load_encoder_and_heads, markdown_table
    from encoder.label_sets import get_label_set

    found = find_checkpoints()
    gauss_ckpt = args.checkpoint or found.get("gaussian")
    point_ckpt = args.point_checkpoint or found.get("point")
    wanted = set(args.models.split(","))
    if wanted - {"pretrained", "random", "point"}:
        p.error(f"--models {args.models}: expected a subset of pretrained,random,point")
    models = []
    if gauss_ckpt and "pretrained" in wanted:
        models.append((f"pretrained small ({Path(gauss_ckpt).name})", *load_encoder_and_heads(checkpoint=gauss_ckpt)))
    if "random" in wanted:
        models.append(("random small (gaussian)", *load_encoder_and_heads(random_preset="small", seed=0)))
    if "point" in wanted and point_ckpt:
        models.append((f"pretrained small point ({Path(point_ckpt).name})", *load_encoder_and_heads(checkpoint=point_ckpt)))
    elif "point" in wanted and not args.no_random_point:
        models.append(("random small (point)", *load_encoder_and_heads(random_preset="small", variant="point", seed=0)))

    class_names = get_label_set("synth")
    text = get_text_encoder("minilm")
    t0 = time.perf_counter()
    train = rooms(900_000, args.train, args.density)
    val = rooms(910_000, args.val, args.density)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows, curves = [], []
    for i, (label, enc, heads) in enumerate(models):
        picture = out.with_name(out.stem + "_labels.png") if i == 0 else None
        row, de = evaluate_encoder(label, enc, heads, train, val, args, class_names, text, picture)
        rows.append(row)
        curves.append((label, de))
    plot_data_efficient(curves, out.with_name(out.stem + "_data_efficient.png"))
    adapt = None if args.skip_adapt else adaptation(models[0][0], models[0][1], models[0][2], args, class_names)
    record = {
        "benchmark": "bench_downstream", "machine": platform.machine(), "torch": torch.__version__, "threads": 1,
        "pretrained_checkpoint": str(gauss_ckpt) if gauss_ckpt else None,
        "point_checkpoint": str(point_ckpt) if point_ckpt else None,
        "note": None if gauss_ckpt else "no pretrained checkpoint was found: only random-weight encoders were evaluated",
        "rooms": {"train": args.train, "val": args.val, "density": args.density, "seeds": "900000+ (train), 910000+ (val)",
                  "mean_gaussians": int(np.mean([len(s) for s in train + val]))},
        "label_set": "synth", "text_encoder": "minilm", "zero_shot_template": "this is a {}",
        "results": rows, "data_efficient": dict(curves), "adaptation": adapt,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    out.write_text(json.dumps(record, indent=2, default=float))
    md = markdown_table(rows, ["model", "zs_f_miou", "zs_f_macc", "map25", "map50", "linear", "decoder"],
                        "Downstream on held-out synthetic rooms (percent)")
    de_rows = []
    for label, de in curves:
        de_rows.append({"model": label, **{f"{100 * r['fraction']:g}% scenes": r["miou"] for r in de["limited_scenes"]},
                        **{f"{r['points']} pts": r["miou"] for r in de["limited_annotations"]}, "full": de["full"]})
    md += "\n" + markdown_table(de_rows, list(de_rows[0]), "Data-efficient linear probing (val mIoU, percent)")
    if adapt:
        md += "\n" + markdown_table([{**adapt, "cost": f"{adapt['prepare_seconds_per_view']:.2f} s prep + {adapt['train_seconds_per_view']:.2f} s train"}],
                                    ["model", "views", "steps", "probe_miou_before", "probe_miou_after", "probe_gain", "cost"],
                                    "Render-and-distill on the shifted domain (cost per view)")
    if record["note"]:
        md = f"> {record['note']}\n\n" + md
    out.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
