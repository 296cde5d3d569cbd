"""Synthetic world speed: seconds and Gaussians per room at a few densities, plus a full dataset run.

    python benchmarks/bench_synth.py [--rooms 12] [--dataset-scenes 200] [--workers 1]

Writes benchmarks/results/bench_synth.json. The dataset run writes to a temporary folder
(SceneSplat folders + scene.json + questions) and reports wall-clock seconds for all of it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    import sys

    sys.path.insert(0, str(ROOT))
    from data.synth import generate_room
    from data.synth.dataset import generate_dataset

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rooms", type=int, default=12, help="rooms per density for the per-room timing")
    p.add_argument("--densities", type=float, nargs="+", default=[0.3, 1.0, 2.0])
    p.add_argument("--dataset-scenes", type=int, default=200, help="rooms for the end-to-end dataset run (0 to skip)")
    p.add_argument("--dataset-density", type=float, default=1.0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_synth.json"))
    args = p.parse_args(argv)

    result = {"machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()}, "per_density": {}}
    generate_room(0, density=0.1)  # warm imports
    for dens in args.densities:
        secs, counts = [], []
        for s in range(args.rooms):
            t = time.perf_counter()
            scene, _ = generate_room(10_000 + s, density=dens)
            secs.append(time.perf_counter() - t)
            counts.append(len(scene))
        result["per_density"][str(dens)] = {
            "rooms": args.rooms, "seconds_per_room_mean": round(statistics.mean(secs), 3),
            "seconds_per_room_max": round(max(secs), 3), "gaussians_mean": int(statistics.mean(counts)),
            "gaussians_min": min(counts), "gaussians_max": max(counts)}
        print(dens, result["per_density"][str(dens)], flush=True)
    if args.dataset_scenes:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            summary = generate_dataset(Path(tmp) / "w", args.dataset_scenes, seed=0, density=args.dataset_density,
                                       workers=args.workers)
            wall = time.perf_counter() - t
            size = sum(f.stat().st_size for f in (Path(tmp) / "w").rglob("*") if f.is_file())
            qa_dir = Path(tmp) / "w" / "qa"
            n_scanqa = sum(len(json.loads((qa_dir / f"ScanQA_v1.0_{s}.json").read_text())) for s in ("train", "val", "test"))
            n_sqa = sum(len(json.loads((qa_dir / "SQA3D" / f"v1_balanced_questions_{s}_scannetv2.json").read_text())["questions"])
                        for s in ("train", "val", "test"))
        g = list(summary["gaussians"].values())
        result["dataset"] = {"scenes": args.dataset_scenes, "density": args.dataset_density, "workers": args.workers,
                             "seconds_total": round(wall, 1), "seconds_per_room": round(wall / args.dataset_scenes, 3),
                             "gaussians_mean": int(statistics.mean(g)), "bytes_on_disk": size,
                             "scanqa_questions": n_scanqa, "sqa3d_questions": n_sqa,
                             "blind_baseline_val": {k: round(v["overall"], 3) for k, v in summary["blind_baseline"].items()}}
        print(result["dataset"], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
