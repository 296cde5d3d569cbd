"""Chorus encoder speed and memory: forward, forward+backward and chunked encoding per scene size.

Writes ``benchmarks/results/bench_encoder.json``. Scenes are procedural rooms
(``data.synth.generate_room``, ~4x4x2.8 m) with the density scaled to the wanted
number of Gaussians. Every case runs in its own subprocess so ``peak_rss_gib``
(the process's high-water mark, interpreter and torch included) belongs to that
case alone; ``baseline_rss_gib`` is the resident size just before the timed run.

Modes: ``forward`` (eval, no grad, one pass over the whole scene),
``forward_backward`` (train mode, loss = mean of the output),
``encode`` (``EncoderPredictor.encode``: chunked with overlap when N > chunk size).

    python benchmarks/bench_encoder.py --threads 1           # the default plan (~15 min on 2 shared cores)
    python benchmarks/bench_encoder.py --cases small:100000:forward --threads 2
    python benchmarks/bench_encoder.py --device cuda         # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data.atomic import write_json  # noqa: E402

DEFAULT_CASES = [
    "small:20000:forward",
    "small:20000:forward_backward",
    "small:100000:forward",
    "small:100000:forward_backward",
    "small:500000:forward",
    "small:500000:forward_backward",
    "small:1000000:encode",
    "paper:20000:forward",
    "paper:20000:forward_backward",
    "paper:100000:forward",
    "paper:500000:forward",
    "paper:1000000:encode",
]
SKIPPED = {
    "paper:forward_backward above 20k": "20k already takes ~30 s of CPU and 7.8 GiB; the paper config is not trained on CPU",
    "small:1000000:forward_backward": "training uses sphere crops / rooms of 20k-200k Gaussians",
}
NOTE = (
    "wall_s is elapsed time, cpu_s process CPU time (all threads). Measured with --threads 1 while other jobs shared "
    "the 2 cores (load_avg_before ~10-13, so this process got roughly a third of a core): cpu_s is the better estimate "
    "of single-core cost. With 2 threads on such a loaded machine OpenMP barriers inflate wall time 3-5x "
    "(small 20k forward: 29.9 s wall / 6.1 s CPU), so the default plan uses one thread."
)


def rss_gib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def make_scene(n: int, seed: int = 0):
    import torch

    from data.synth import generate_room

    base, _ = generate_room(seed, density=1.0)
    scene, _ = generate_room(seed, density=1.15 * n / len(base))
    if len(scene) < n:
        raise RuntimeError(f"room has {len(scene)} Gaussians, wanted {n}")
    keep = torch.randperm(len(scene), generator=torch.Generator().manual_seed(seed))[:n]
    return scene.subset(keep.sort().values)


def run_case(case: str, device: str, threads: int | None, chunk_size: int) -> dict:
    """Run one case in this process; return its record."""
    import torch

    from encoder import ChorusEncoder, EncoderConfig, EncoderPredictor, scene_to_input
    from encoder.grid import voxelize

    if threads:
        torch.set_num_threads(threads)
    config_name, n, mode = case.split(":")
    n = int(n)
    torch.manual_seed(0)
    config = getattr(EncoderConfig, config_name)()
    model = ChorusEncoder(config).to(device)
    scene = make_scene(n)
    voxels = voxelize(scene.means, torch.tensor([n]), config.grid_size).num_voxels
    record = dict(
        config=config_name, n_gaussians=n, mode=mode, device=device, threads=torch.get_num_threads(),
        n_voxels=voxels, params_m=round(model.num_parameters() / 1e6, 3), out_dim=model.out_dim,
        load_avg_before=round(os.getloadavg()[0], 2),
    )

    warm = make_scene(3000, seed=1)  # first-call costs (lazy imports, allocator) stay out of the timings
    with torch.no_grad():
        model.eval()(warm.means.to(device), scene_to_input(warm, config.variant).to(device), torch.tensor([len(warm)], device=device))
    del warm

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    if mode == "encode":
        predictor = EncoderPredictor(model, device=device, chunk_size=chunk_size)
        record["chunks"] = len(predictor.chunks(scene))
        record["chunk_size"] = chunk_size
        record["baseline_rss_gib"] = round(rss_gib(), 3)
        t0, c0 = time.perf_counter(), time.process_time()
        out = predictor.encode(scene)
        sync()
    else:
        means, feats = scene.means.to(device), scene_to_input(scene, config.variant).to(device)
        offset = torch.tensor([n], device=device)
        record["baseline_rss_gib"] = round(rss_gib(), 3)
        t0, c0 = time.perf_counter(), time.process_time()
        if mode == "forward":
            model.eval()
            with torch.no_grad():
                out = model(means, feats, offset)
        elif mode == "forward_backward":
            model.train()
            out = model(means, feats, offset)
            out.mean().backward()
        else:
            raise ValueError(f"unknown mode {mode!r}; expected forward, forward_backward or encode")
        sync()
    record["wall_s"] = round(time.perf_counter() - t0, 3)
    record["cpu_s"] = round(time.process_time() - c0, 3)
    record["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    if device.startswith("cuda"):
        record["peak_cuda_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    record["out_shape"] = list(out.shape)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="*", default=DEFAULT_CASES, help="config:gaussians:mode (mode: forward | forward_backward | encode)")
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--chunk-size", type=int, default=400_000, help="EncoderPredictor chunk size for 'encode' cases")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per case before it is recorded as skipped")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_encoder.json"))
    parser.add_argument("--append", action="store_true", help="add to the results already in --out instead of replacing them")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(run_case(args.worker, args.device, args.threads, args.chunk_size)))
        return 0

    out_path = Path(args.out)
    previous = json.loads(out_path.read_text()) if args.append and out_path.exists() else {}
    results = previous.get("results", [])
    from tqdm import tqdm

    for case in tqdm(args.cases, desc="bench_encoder"):
        cmd = [sys.executable, __file__, "--worker", case, "--device", args.device, "--chunk-size", str(args.chunk_size)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            results.append({"case": case, "skipped": f"timed out after {args.timeout:.0f} s"})
            continue
        if proc.returncode != 0:
            results.append({"case": case, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        record = json.loads(proc.stdout.strip().splitlines()[-1])
        tqdm.write(json.dumps(record))
        results.append(record)
    summary = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "note": NOTE,
        "skipped": SKIPPED,
        "results": results,
    }
    write_json(out_path, summary, indent=2)
    print(f"wrote {out_path}")
    return 0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


if __name__ == "__main__":
    raise SystemExit(main())
