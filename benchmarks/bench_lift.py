"""Seconds per scene for lifting the offline teachers onto a synthetic-like room.

Uses ``data.synth.generate_room`` when it exists, else a procedural box room
(floor, walls, ceiling and a few captioned boxes as surface splats). Writes
``benchmarks/results/bench_lift.json``.

    python benchmarks/bench_lift.py [--views 32 --width 320 --height 240 --downscale 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from data.atomic import write_json  # noqa: E402
from data.scene import GaussianScene  # noqa: E402
from encoder.lift import LiftConfig, lift_scene  # noqa: E402


def _plane(origin, u, v, spacing, rng):
    """Splats on the rectangle origin + a u + b v (a, b in [0, 1])."""
    u, v, origin = np.asarray(u, float), np.asarray(v, float), np.asarray(origin, float)
    nu, nv = max(2, int(np.linalg.norm(u) / spacing)), max(2, int(np.linalg.norm(v) / spacing))
    a, b = np.meshgrid((np.arange(nu) + 0.5) / nu, (np.arange(nv) + 0.5) / nv, indexing="ij")
    pts = origin + a.reshape(-1, 1) * u + b.reshape(-1, 1) * v
    return pts + rng.normal(0, spacing * 0.1, pts.shape)


def _box(center, size, spacing, rng):
    c, s = np.asarray(center, float), np.asarray(size, float) / 2
    faces = []
    for axis in range(3):
        for sign in (-1, 1):
            o = c - s.copy()
            o[axis] = c[axis] + sign * s[axis]
            u, v = np.zeros(3), np.zeros(3)
            a1, a2 = [i for i in range(3) if i != axis]
            u[a1], v[a2] = 2 * s[a1], 2 * s[a2]
            faces.append(_plane(o, u, v, spacing, rng))
    return np.concatenate(faces)


def box_room(spacing: float = 0.04, seed: int = 0) -> tuple[GaussianScene, dict[int, str]]:
    """A 5 x 4 x 2.6 m room with six captioned boxes: (scene, instance id -> caption)."""
    rng = np.random.default_rng(seed)
    L, W, H = 5.0, 4.0, 2.6
    parts = [  # (points, colour, instance, caption)
        (_plane((0, 0, 0), (L, 0, 0), (0, W, 0), spacing, rng), (0.55, 0.45, 0.35), 0, "a wooden floor"),
        (_plane((0, 0, H), (L, 0, 0), (0, W, 0), spacing, rng), (0.9, 0.9, 0.9), 1, "a white ceiling"),
        (_plane((0, 0, 0), (L, 0, 0), (0, 0, H), spacing, rng), (0.8, 0.8, 0.7), 2, "a beige wall"),
        (_plane((0, W, 0), (L, 0, 0), (0, 0, H), spacing, rng), (0.8, 0.8, 0.7), 3, "a beige wall"),
        (_plane((0, 0, 0), (0, W, 0), (0, 0, H), spacing, rng), (0.7, 0.8, 0.8), 4, "a light blue wall"),
        (_plane((L, 0, 0), (0, W, 0), (0, 0, H), spacing, rng), (0.7, 0.8, 0.8), 5, "a light blue wall"),
    ]
    furniture = [((1.0, 1.0, 0.45), (0.5, 0.5, 0.9), (0.8, 0.1, 0.1), "a red chair"),
                 ((2.5, 2.0, 0.375), (1.4, 0.8, 0.75), (0.5, 0.3, 0.1), "a brown wooden table"),
                 ((4.2, 3.2, 0.4), (1.2, 0.9, 0.8), (0.2, 0.3, 0.7), "a blue sofa"),
                 ((4.5, 0.6, 0.9), (0.6, 0.4, 1.8), (0.3, 0.3, 0.3), "a grey bookshelf"),
                 ((0.6, 3.4, 0.3), (0.5, 0.5, 0.6), (0.9, 0.9, 0.2), "a yellow nightstand"),
                 ((2.5, 0.3, 1.4), (1.0, 0.1, 0.7), (0.1, 0.1, 0.1), "a black television")]
    for k, (c, s, col, cap) in enumerate(furniture, start=6):
        parts.append((_box(c, s, spacing, rng), col, k, cap))
    means = np.concatenate([p for p, *_ in parts]).astype(np.float32)
    colors = np.concatenate([np.tile(np.asarray(c, np.float32), (len(p), 1)) for p, c, *_ in parts])
    instance = np.concatenate([np.full(len(p), k) for p, _, k, _ in parts])
    n = len(means)
    colors = np.clip(colors + rng.normal(0, 0.03, colors.shape), 0, 1).astype(np.float32)
    scene = GaussianScene(means=means, quats=np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
                          scales=np.full((n, 3), spacing * 0.6, np.float32), opacities=np.full(n, 0.9, np.float32),
                          colors=colors, instance=instance, name="box_room")
    return scene, {k: cap for _, _, k, cap in parts}


def synthetic_room(seed: int):
    """(scene, captions) from ``data.synth.generate_room`` (objects[].id / .caption), or None if it is unavailable."""
    try:
        from data.synth import generate_room
    except ImportError:
        return None
    scene, meta = generate_room(seed)
    return scene, {int(o["id"]): o["caption"] for o in meta.get("objects", []) if "caption" in o}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, default=LiftConfig.n_views, help="cameras per scene")
    parser.add_argument("--width", type=int, default=LiftConfig.width)
    parser.add_argument("--height", type=int, default=LiftConfig.height)
    parser.add_argument("--downscale", type=int, default=2)
    parser.add_argument("--spacing", type=float, default=0.04, help="splat spacing of the procedural room (m)")
    parser.add_argument("--procedural", action="store_true", help="use the procedural box room even if data.synth exists")
    parser.add_argument("--per-teacher", action="store_true", help="also time each teacher on its own")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_lift.json"))
    args = parser.parse_args(argv)

    room = None if args.procedural else synthetic_room(seed=0)
    source = "data.synth.generate_room(seed=0)"
    if room is None:
        room, source = box_room(args.spacing), f"procedural box room (spacing {args.spacing} m)"
    scene, captions = room
    from adapters.teachers import get_teacher, teacher_set

    t0 = time.perf_counter()
    teachers = [get_teacher(s) for s in teacher_set("offline")]
    load_seconds = time.perf_counter() - t0
    cfg = LiftConfig(n_views=args.views, width=args.width, height=args.height, feature_downscale=args.downscale)
    results = {}
    runs = [("all_offline", teachers)] + ([(t.name, [t]) for t in teachers] if args.per_teacher else [])
    for label, group in runs:
        timings: dict = {}
        start, cpu_start, load_before = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        lifted = lift_scene(scene, group, captions=captions, config=cfg, timings=timings)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        # the machine is shared: CPU seconds (all threads) and the load average say how much the wall time is inflated
        results[label] = {"seconds_per_scene": round(seconds, 2), "cpu_seconds_per_scene": round(cpu_seconds, 2),
                          "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)], "phases": timings,
                          "lifted_fraction": {k: round(v[1].numel() / len(scene), 3) for k, v in lifted.items()}}
        print(f"{label}: {seconds:.1f} s/scene {timings}")
    report = {
        "benchmark": "lift offline teachers (caption-minilm, efficientnet-lite0, instance-mask) onto one room",
        "scene": {"source": source, "gaussians": len(scene), "instances": int(torch.unique(scene.instance).numel()) if scene.instance is not None else 0},
        "config": asdict(cfg),
        "teacher_load_seconds": round(load_seconds, 2),
        "results": results,
        "machine": {"cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "platform": platform.platform()},
    }
    write_json(Path(args.out), report, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
