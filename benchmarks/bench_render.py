"""Speed of the pure-PyTorch rasterizer (data.render, backend "torch") on a synthetic room.

Writes benchmarks/results/bench_render.json: forward and forward+backward seconds (best and
median of --repeats runs) for 10k and 100k Gaussians at 160x120 and 320x240, the number of contributing
(Gaussian, pixel) pairs, and the brute-force reference time (and max difference) on the smallest case.

    python benchmarks/bench_render.py [--repeats 3] [--threads 2 1] [--out benchmarks/results/bench_render.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from data.atomic import write_json  # noqa: E402

from data.camera import look_at  # noqa: E402
from data.raster_torch import composite_pairs, project_gaussians, RasterOptions  # noqa: E402
from data.render import rasterize, rasterize_reference  # noqa: E402
from data.scene import GaussianScene  # noqa: E402


def synthetic_room(n: int, size=(6.0, 5.0, 2.8), clutter_fraction: float = 0.3, seed: int = 0) -> GaussianScene:
    """A box room (floor, ceiling, four walls) of flat Gaussians plus ``clutter_fraction`` of them in boxes inside."""
    g = torch.Generator().manual_seed(seed)
    sx, sy, sz = size
    n_clutter = int(n * clutter_fraction)
    n_wall = n - n_clutter
    areas = torch.tensor([sx * sy, sx * sy, sx * sz, sx * sz, sy * sz, sy * sz])
    face = torch.multinomial(areas / areas.sum(), n_wall, replacement=True, generator=g)
    u = torch.rand(n_wall, 3, generator=g) * torch.tensor([sx, sy, sz])
    fixed = torch.tensor([0.0, sz, 0.0, sy, 0.0, sx])  # the coordinate each face pins
    axis = torch.tensor([2, 2, 1, 1, 0, 0])[face]
    u[torch.arange(n_wall), axis] = fixed[face]
    wall_scales = torch.rand(n_wall, 3, generator=g) * 0.03 + 0.01
    wall_scales[torch.arange(n_wall), axis] = 0.004
    wall_colors = torch.tensor([[0.6, 0.5, 0.4], [0.9, 0.9, 0.9], [0.8, 0.7, 0.6], [0.7, 0.8, 0.7], [0.6, 0.7, 0.8], [0.8, 0.8, 0.6]])[face]
    wall_colors = (wall_colors + 0.05 * torch.randn(n_wall, 3, generator=g)).clamp(0, 1)

    n_boxes = 12
    centres = torch.rand(n_boxes, 3, generator=g) * torch.tensor([sx - 1.5, sy - 1.5, 0.0]) + torch.tensor([0.75, 0.75, 0.0])
    extents = torch.rand(n_boxes, 3, generator=g) * torch.tensor([0.8, 0.8, 1.2]) + 0.2
    centres[:, 2] = extents[:, 2] / 2
    box = torch.randint(0, n_boxes, (n_clutter,), generator=g)
    c_means = centres[box] + (torch.rand(n_clutter, 3, generator=g) - 0.5) * extents[box]
    c_scales = torch.rand(n_clutter, 3, generator=g) * 0.02 + 0.01
    c_colors = torch.rand(n_boxes, 3, generator=g)[box]

    means = torch.cat([u, c_means])
    scales = torch.cat([wall_scales, c_scales])
    quats = torch.randn(n, 4, generator=g)
    quats[:n_wall] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # wall splats stay aligned with their wall
    quats = quats / quats.norm(dim=1, keepdim=True)
    quats = torch.where(quats[:, :1] < 0, -quats, quats)
    opacities = torch.rand(n, generator=g) * 0.5 + 0.5
    colors = torch.cat([wall_colors, c_colors])
    return GaussianScene(means=means, quats=quats, scales=scales, opacities=opacities, colors=colors, name=f"room{n}")


def room_camera(scene_size=(6.0, 5.0, 2.8), width=320, height=240):
    sx, sy, _ = scene_size
    return look_at((0.6, 0.6, 1.5), (sx, sy * 0.8, 0.9), width=width, height=height, fov_deg=70)


def time_case(scene: GaussianScene, camera, repeats: int) -> dict:
    params = [scene.means, scene.quats, scene.scales, scene.opacities, scene.colors]
    fwd, fwd_bwd = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            rasterize(scene, camera, backend="torch")
        fwd.append(time.perf_counter() - t0)
    for _ in range(repeats):
        for p in params:
            p.requires_grad_(True)
            p.grad = None
        t0 = time.perf_counter()
        out = rasterize(scene, camera, backend="torch")
        loss = out.color.square().sum() + out.depth.mean()
        loss.backward()
        fwd_bwd.append(time.perf_counter() - t0)
        for p in params:
            p.requires_grad_(False)
    with torch.no_grad():
        opts = RasterOptions()
        proj = project_gaussians(scene.means, scene.quats, scene.scales, scene.opacities, camera, opts)
        pairs = composite_pairs(proj, scene.opacities, camera.width, camera.height, opts)
    return {"forward_s": round(min(fwd), 4), "forward_backward_s": round(min(fwd_bwd), 4),
            "forward_median_s": round(statistics.median(fwd), 4), "forward_backward_median_s": round(statistics.median(fwd_bwd), 4),
            "visible_gaussians": int(proj.visible.sum()), "pairs": int(pairs.weight.numel())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (best and median reported)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/bench_render.json"))
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()],
                        help="torch intra-op thread counts to run every case with (default: torch's choice)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    scenes = {n: synthetic_room(n) for n in (10_000, 100_000)}
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for n, scene in scenes.items():
            for width, height in ((160, 120), (320, 240)):
                camera = room_camera(width=width, height=height)
                rasterize(scene, camera, backend="torch")  # warm-up
                row = {"threads": threads, "gaussians": n, "width": width, "height": height,
                       **time_case(scene, camera, args.repeats)}
                print(row, flush=True)
                results.append(row)

    torch.set_num_threads(args.threads[0])
    scene = scenes[10_000]
    camera = room_camera(width=160, height=120)
    t0 = time.perf_counter()
    with torch.no_grad():
        ref = rasterize_reference(scene.means, scene.quats, scene.scales, scene.opacities, scene.colors, camera)
    ref_time = time.perf_counter() - t0
    with torch.no_grad():
        fast = rasterize(scene, camera, backend="torch")
    reference = {"threads": args.threads[0], "gaussians": 10_000, "width": 160, "height": 120,
                 "forward_s": round(ref_time, 4),
                 "max_abs_color_diff_vs_fast": float((ref.color - fast.color).abs().max()),
                 "max_abs_weight_diff_vs_fast": float((ref.weights - fast.weights).abs().max())}
    print({"reference": reference}, flush=True)
    report = {"benchmark": "bench_render", "backend": "torch", "device": "cpu", "cpu_count": os.cpu_count(),
              "torch": torch.__version__, "machine": platform.machine(), "repeats": args.repeats,
              "load_average_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
              "timing": "best of `repeats` wall-clock runs (median also given); the machine is shared, see load average",
              "scene": "synthetic_room(n): box room 6 x 5 x 2.8 m, 70% flat wall splats, 30% in 12 clutter boxes",
              "loss": "color.square().sum() + depth.mean()", "cases": results, "brute_force_reference": reference}
    write_json(Path(args.out), report, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
