"""Scene file speed: save/load seconds and file size per format, for 100k and 1M Gaussians.

Writes ``benchmarks/results/bench_io.json``. Formats: INRIA ``.ply`` (SH degree 3,
labels), ``.splat``, SceneSplat folder (SH rest, labels, one 64-D feature set on
half the Gaussians), point-cloud ``.npz`` (load includes the nearest-neighbour
scales), plus the kNN helpers of ``data.geometry`` on the same points.

    python benchmarks/bench_io.py                 # 100k and 1M
    python benchmarks/bench_io.py --sizes 20000   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data import GaussianScene, load_scene, save_scene  # noqa: E402
from data.atomic import write_json  # noqa: E402
from data.geometry import estimate_normals, nearest_neighbor_distances  # noqa: E402


def random_scene(n: int, seed: int = 0) -> GaussianScene:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1
    scene = GaussianScene(
        means=rng.uniform(0, 10, size=(n, 3)).astype(np.float32),
        quats=q,
        scales=np.exp(rng.normal(-4, 1, size=(n, 3))).astype(np.float32),
        opacities=rng.uniform(size=n).astype(np.float32),
        colors=rng.uniform(size=(n, 3)).astype(np.float32),
        sh_rest=rng.normal(0, 0.1, size=(n, 15, 3)).astype(np.float32),
        semantic=rng.integers(-1, 20, n),
        instance=rng.integers(-1, 200, n),
        name=f"bench{n}",
    )
    return scene


def size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir()) / 1e6
    return path.stat().st_size / 1e6


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_size(n: int, work: Path, repeat: int) -> dict:
    scene = random_scene(n)
    feats = scene.clone()
    feats.features["dino"] = (torch.randn(n // 2, 64), torch.randperm(n)[: n // 2])
    rows = {}
    jobs = [("ply", scene, work / "s.ply"), ("splat", scene, work / "s.splat"), ("scenesplat", feats, work / "folder")]
    for fmt, sc, path in tqdm(jobs, desc=f"{n} Gaussians", leave=False):
        save_s = timed(lambda: save_scene(sc, path), repeat)
        load_s = timed(lambda: load_scene(path), repeat)
        rows[fmt] = {"save_s": round(save_s, 3), "load_s": round(load_s, 3), "mb": round(size_mb(path), 1)}
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    npz = work / "points.npz"
    t = time.perf_counter()
    np.savez(npz, xyz=scene.means.numpy(), rgb=(scene.colors.numpy() * 255).astype(np.uint8))
    save_s = time.perf_counter() - t
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows["npz_pointcloud"] = {
            "save_s": round(save_s, 3),
            "load_s": round(timed(lambda: load_scene(npz), repeat), 3),
            "mb": round(size_mb(npz), 1),
            "note": "save is np.savez (no writer); load includes nearest-neighbour scales",
        }
    npz.unlink()
    pts = scene.means.numpy()
    rows["geometry"] = {
        "nearest_neighbor_distances_s": round(timed(lambda: nearest_neighbor_distances(pts), 1), 3),
        "estimate_normals_k16_s": round(timed(lambda: estimate_normals(pts), 1), 3),
    }
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="scene sizes (Gaussians)")
    parser.add_argument("--repeat", type=int, default=2, help="timing repeats per measurement (best is kept)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_io.json", help="JSON output path")
    parser.add_argument("--tmp-dir", type=Path, default=None, help="where to write the benchmark files (default: system temp)")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    results = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__, "loadavg_at_start": [round(x, 1) for x in os.getloadavg()]},
        "scene": "SH degree 3 (45 f_rest), semantic + instance labels; SceneSplat adds a 64-D float16 feature on N/2",
        "sizes": {},
    }
    with tempfile.TemporaryDirectory(dir=args.tmp_dir, prefix="bench-io-") as tmp:
        for n in args.sizes:
            results["sizes"][str(n)] = bench_size(n, Path(tmp), args.repeat)
            print(n, json.dumps(results["sizes"][str(n)]))
    write_json(args.out, results, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
