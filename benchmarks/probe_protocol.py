"""Is the linear-probe mIoU limited by the probe's training or by the features? (a benchmark, not a test)

Encodes the rooms of a pretraining run once and fits linear probes with the same data and a few loss
choices (``encoder.probe.LinearProbeConfig``):

  ce              plain cross-entropy, 20 epochs: the protocol of every recorded pretrain_probe result
  ce_lovasz       + the Lovasz-softmax IoU surrogate (weight 1), as Pointcept's Sonata linear probing does
  ce_balanced     cross-entropy with class weights count(c)^-0.5
  ce_40_epochs    plain cross-entropy, twice as long
  *_all_points    the same, fit on every labelled Gaussian of the train rooms instead of --probe-points a
                  room (Pointcept's linear probing trains on whole scenes)

each on the encoder's features (``backbone``) and, for comparison, on the output of its frozen language
projector (``language_projector``, what zero-shot queries read). Writes JSON + markdown.

    python benchmarks/probe_protocol.py --run runs/pp_vocab/pretrain --data-dir runs/pp_vocab/synth \\
        --out benchmarks/results/probe_protocol.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.pretrain_probe import LANGUAGE_TEACHER, PROBE_EPOCHS, encode_scene, probe_pick, probe_train_ids, read_split  # noqa: E402

BASE = {"epochs": PROBE_EPOCHS}
ALL = {"points": "all", "max_train_points": 4_000_000}
PROTOCOLS = {
    "ce": {},
    "ce_lovasz": {"lovasz_weight": 1.0},
    "ce_balanced": {"class_weight_power": 0.5},
    "ce_40_epochs": {"epochs": 40},
    "ce_all_points": ALL,
    "ce_lovasz_all_points": {**ALL, "lovasz_weight": 1.0},
    "ce_balanced_all_points": {**ALL, "class_weight_power": 0.5},
}


def encode_rooms(enc, heads, data_dir: Path, ids: list[str]) -> dict[str, list]:
    """{"backbone": [...], "language_projector": [...], "labels": [...]} per room, float16 features."""
    from tqdm import tqdm

    from data import load_scene

    out = {"backbone": [], "language_projector": [], "labels": []}
    for sid in tqdm(ids, desc="encode", unit="room"):
        scene = load_scene(data_dir / "scenes" / sid)
        with torch.no_grad():
            f = encode_scene(enc, scene, enc.config.variant)
            out["language_projector"].append(heads.project(LANGUAGE_TEACHER, f).half())
        out["backbone"].append(f.half())
        out["labels"].append(scene.semantic.long())
    return out


def main(argv=None) -> int:
    from encoder.heads import MultiTeacherHeads
    from encoder.probe import LinearProbeConfig, evaluate_probe, train_linear_probe
    from encoder.ptv3 import ChorusEncoder

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a pretraining output folder with encoder/ and heads/")
    p.add_argument("--data-dir", type=Path, required=True, help="the lifted rooms (splits/ + scenes/ + classes.json)")
    p.add_argument("--probe-points", type=int, default=4000, help="labelled Gaussians per train room")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "probe_protocol.json")
    args = p.parse_args(argv)
    for sub in ("encoder", "heads"):
        if not (args.run / sub).is_dir():
            raise SystemExit(f"--run {args.run}: no {sub}/ folder; expected a pretraining output folder")
    torch.set_num_threads(1)  # spconv's CPU convolutions want one thread (benchmarks/pretrain_probe.py, measure)
    class_names = json.loads((args.data_dir / "classes.json").read_text())["class_names"]
    train_ids = probe_train_ids(args, args.data_dir)  # the base world's rooms, as pretrain_probe's probe
    held_ids = read_split(args.data_dir, "val") + read_split(args.data_dir, "test")
    enc, heads = ChorusEncoder.from_pretrained(args.run / "encoder"), MultiTeacherHeads.from_pretrained(args.run / "heads")
    train, held = encode_rooms(enc, heads, args.data_dir, train_ids), encode_rooms(enc, heads, args.data_dir, held_ids)
    gen = torch.Generator().manual_seed(args.seed)
    picks = {"sampled": [probe_pick(y, args.probe_points, gen) for y in train["labels"]],
             "all": [torch.nonzero(y >= 0).squeeze(1) for y in train["labels"]]}
    points = {k: v.get("points", "sampled") for k, v in PROTOCOLS.items()}
    configs = {k: {n: x for n, x in {**BASE, **v, "seed": args.seed}.items() if n != "points"} for k, v in PROTOCOLS.items()}
    res = {"run": str(args.run), "data_dir": str(args.data_dir), "train_rooms": len(train_ids), "held_out_rooms": len(held_ids),
           "probe_points": args.probe_points, "train_points": {k: int(sum(i.numel() for i in v)) for k, v in picks.items()},
           "protocols": {k: {**LinearProbeConfig(**c).__dict__, "points": points[k]} for k, c in configs.items()}, "results": {}}
    y_train = {kind: torch.cat([y[i] for y, i in zip(train["labels"], pk)]) for kind, pk in picks.items()}
    for feats in ("backbone", "language_projector"):  # each point set gathered once per feature kind, not per protocol
        x_train = {kind: torch.cat([f[i] for f, i in zip(train[feats], pk)]).float() for kind, pk in picks.items()}
        for name in PROTOCOLS:
            t0 = time.time()
            probe = train_linear_probe(x_train[points[name]], y_train[points[name]], len(class_names),
                                       LinearProbeConfig(**configs[name]))
            m = evaluate_probe(probe, [f.float() for f in held[feats]], held["labels"], len(class_names), class_names)
            res["results"][f"{feats}/{name}"] = {"miou": m["miou"], "macc": m["macc"], "allacc": m["allacc"],
                                                 "seconds": round(time.time() - t0, 1), "per_class_iou": m.get("per_class_iou")}
            print(f"{feats:18s} {name:13s} mIoU {100 * m['miou']:.1f}  mAcc {100 * m['macc']:.1f}", flush=True)
    res["command"] = "python benchmarks/probe_protocol.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    lines = [f"# Linear-probe protocol ({res['train_rooms']} train / {res['held_out_rooms']} held-out rooms, `{args.run}`)", "",
             "| features | protocol | mIoU | mAcc | overall acc |", "|---|---|---:|---:|---:|"]
    for key, m in res["results"].items():
        feats, name = key.split("/")
        lines.append(f"| {feats} | {name} | {100 * m['miou']:.1f} | {100 * m['macc']:.1f} | {100 * m['allacc']:.1f} |")
    lines += ["", f"Reproduce: `{res['command']}`"]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
