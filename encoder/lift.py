"""Lift 2D teacher features onto 3D Gaussians (Chorus paper, Eq. 3).

For every Gaussian ``i`` and teacher ``t``::

    f_i^t = sum_{v,p} w_ivp m_vp^t F_vp^t / sum_{v,p} w_ivp m_vp^t

where ``w_ivp = T_ivp alpha_ivp`` is Gaussian ``i``'s alpha-compositing weight
at pixel ``p`` of view ``v`` (from :func:`data.render.accumulate_to_gaussians`),
``F^t`` is the teacher's feature map resampled to the accumulation resolution
and ``m^t`` is 1 where the teacher has a target (non-zero feature) and 0 where
it has none (background pixels of the caption / instance-mask teachers).
Gaussians whose total weight ``sum w m`` is below ``min_weight`` get no feature.

Instance maps (for the caption and instance-mask teachers) are rendered,
not guessed: each Gaussian carries a one-hot code of its instance (plus one
"none" channel) as a rendered feature, so pixel ``p``'s channel ``k`` is the
total compositing weight of instance ``k`` along the ray; the pixel's instance
is the argmax (the object that contributes most colour), and pixels with
alpha below ``min_alpha`` or won by "none" are -1. This is exact (no decoding
ambiguity at boundaries, unlike rendering random codes) and comes for free
with the colour render; its cost grows with the number of instances, which is
tens in a room.

Accumulation happens at the render resolution divided by ``feature_downscale``
with a correspondingly scaled camera (same rays, fewer pixels); teacher maps are
resampled bilinearly (nearest for mask-painted teachers, whose zeros mean "no target").

Output per scene folder (SceneSplat layout), written atomically:
``<name>_feat.npy`` float16 [M, D] and ``<name>_feat_index.npy`` int32 [M].

CLI: ``python -m encoder.lift --scenes DIR --teachers offline`` (resumable).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from data.atomic import atomic_file
from data.scene import GaussianScene


@dataclass
class LiftConfig:
    """How views are sampled and features accumulated."""

    n_views: int = 24  # cameras per scene: the first n_views of data.camera.sample_views (grouped by position)
    n_directions: int = 8  # yaw directions per camera position (the paper's 8)
    width: int = 256  # render size in pixels (CPU cost grows with pixels; the paper renders 480x640)
    height: int = 192
    fov_deg: float = 70.0
    feature_downscale: int = 2  # accumulate at (width, height) / this
    min_weight: float = 1e-2  # Gaussians with sum of valid compositing weights below this get no feature
    min_alpha: float = 0.5  # pixels with lower alpha have no instance (-1)
    teacher_batch: int = 4  # views per teacher forward pass
    seed: int = 0

    def __post_init__(self):
        for name in ("n_views", "n_directions", "width", "height", "feature_downscale", "teacher_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"LiftConfig.{name}={getattr(self, name)!r}, expected a positive integer")
        if self.width % self.feature_downscale or self.height % self.feature_downscale:
            raise ValueError(
                f"LiftConfig.feature_downscale={self.feature_downscale} must divide width={self.width} and height={self.height}"
            )
        if self.min_weight < 0 or not 0 <= self.min_alpha <= 1:
            raise ValueError(f"LiftConfig: min_weight={self.min_weight} must be >= 0 and min_alpha={self.min_alpha} in [0, 1]")


# ---------------------------------------------------------------- pure helpers
def scale_camera(camera, factor: int):
    """The same camera with an image ``factor`` times smaller (pixel centres at (col + 0.5) stay consistent)."""
    if factor == 1:
        return camera
    from data.camera import Camera

    K = camera.K.clone()
    K[:2] /= factor
    return Camera(K, camera.world_to_cam, camera.width // factor, camera.height // factor, camera.near, camera.far)


def instance_one_hot(instance: Tensor) -> tuple[Tensor, Tensor]:
    """instance [N] int64 (-1 none) -> (codes [N, K+1] float32 one-hot, ids [K] sorted); channel K = "none"."""
    ids = torch.unique(instance[instance >= 0])
    channel = torch.full_like(instance, len(ids))
    if len(ids):
        pos = torch.searchsorted(ids, instance.clamp_min(0)).clamp_max(len(ids) - 1)
        hit = (instance >= 0) & (ids[pos] == instance)
        channel[hit] = pos[hit]
    return F.one_hot(channel, len(ids) + 1).float(), ids


def decode_instance_map(instance_weights: Tensor, alpha: Tensor, ids: Tensor, min_alpha: float) -> Tensor:
    """Rendered per-instance weights [H, W, K+1] and alpha [H, W] -> instance id per pixel [H, W] (-1 none)."""
    winner = instance_weights.argmax(-1)
    table = torch.cat([ids, ids.new_full((1,), -1)])
    out = table[winner]
    out[alpha.reshape(out.shape) < min_alpha] = -1
    return out


def resample_features(feat: Tensor, size: tuple[int, int], nearest: bool) -> Tensor:
    """feat [B, D, h, w] -> [B, D, *size]; nearest keeps painted masks exact, bilinear suits dense networks."""
    if tuple(feat.shape[-2:]) == tuple(size):
        return feat
    if nearest:
        return F.interpolate(feat, size=size, mode="nearest-exact")
    return F.interpolate(feat, size=size, mode="bilinear", align_corners=False)


def accumulate_pixels(scene: GaussianScene, camera, pixel_values: Tensor) -> Tensor:
    """sum_p w_ip v_p [N, C] for pixel_values [H, W, C] (the numerator of Eq. 3 for one view).

    On CPU this builds the [N, H*W] compositing-weight matrix from :func:`data.render.pair_weights` as a
    sparse COO matrix and multiplies once: for hundreds of channels that is ~10x faster than
    ``accumulate_to_gaussians``' chunked ``index_add_``. On CUDA it defers to ``accumulate_to_gaussians``
    (gsplat). Both give the same sums (tested against a dense brute force).
    """
    if scene.means.is_cuda:
        from data.render import accumulate_to_gaussians

        return accumulate_to_gaussians(scene, camera, pixel_values)[0]
    from data.render import pair_weights

    pairs = pair_weights(scene, camera)
    values = pixel_values.reshape(-1, pixel_values.shape[-1]).to(pairs.weight.dtype)
    matrix = torch.sparse_coo_tensor(torch.stack([pairs.gaussian, pairs.pixel]), pairs.weight, (len(scene), values.shape[0]),
                                     check_invariants=False)
    return torch.sparse.mm(matrix, values)  # COO x dense: ~2x faster here than converting to CSR first


def finalize_lift(weighted_sum: Tensor, weight: Tensor, min_weight: float) -> tuple[Tensor, Tensor]:
    """(sum w v [N, D], sum w [N]) -> (mean features [M, D] float16, index [M] int64) for weight >= min_weight."""
    keep = weight >= max(min_weight, 1e-12)
    index = torch.nonzero(keep).squeeze(1)
    feat = weighted_sum[index] / weight[index, None]
    return feat.to(torch.float16), index


# ---------------------------------------------------------------- lifting
def _resolve_teachers(teachers) -> list:
    from adapters.teachers import get_teacher, teacher_set

    if isinstance(teachers, str):
        teachers = teacher_set(teachers)
    return [get_teacher(t) if isinstance(t, str) else t for t in teachers]


def _needs_instances(teacher) -> bool:
    return bool(getattr(teacher, "needs_instance_maps", False))


def lift_scene(
    scene: GaussianScene,
    teachers,
    views: Sequence | int | None = None,
    captions: dict[int, str] | None = None,
    config: LiftConfig | None = None,
    progress: bool = False,
    timings: dict[str, float] | None = None,
) -> dict[str, tuple[Tensor, Tensor]]:
    """Lift every teacher's features onto the scene's Gaussians.

    teachers: teacher objects, specs, or a set name ("offline").
    views:    cameras (``data.camera.Camera``), a number of cameras to sample, or None (``config.n_views``).
    captions: instance id -> caption, for the caption teacher.
    timings:  if given, filled with seconds spent per phase (render, teachers, accumulate) and the view count.
    Returns teacher name -> (feat [M, D] float16, index [M] int64).
    """
    from adapters.teachers import TeacherInput
    from data.camera import sample_views
    from data.render import rasterize

    cfg = config or LiftConfig()
    teachers = _resolve_teachers(teachers)
    names = [t.name for t in teachers]
    if len(set(names)) != len(names):
        raise ValueError(f"lift_scene: teacher names must be unique, got {names}")
    if views is None or isinstance(views, int):
        limit = cfg.n_views if views is None else views
        # the sampler drops views that face a nearby wall (about half in a room): ask for twice the positions
        n_pos = max(1, math.ceil(2 * limit / cfg.n_directions))
        cameras = sample_views(scene, n_pos, cfg.n_directions, width=cfg.width, height=cfg.height, fov_deg=cfg.fov_deg,
                               seed=cfg.seed)[:limit]
    else:
        cameras = list(views)
    if not cameras:
        raise ValueError(f"lift_scene: no views for scene '{scene.name}'")

    need_instances = any(_needs_instances(t) for t in teachers)
    codes = ids = None
    if need_instances:
        if scene.instance is None:
            wanted = [t.name for t in teachers if _needs_instances(t)]
            raise ValueError(f"scene '{scene.name}': field 'instance' is None, but teachers {wanted} need instance labels")
        codes, ids = instance_one_hot(scene.instance.cpu())  # [N, K+1]: fine for tens..hundreds of instances
        codes = codes.to(scene.device)

    n = len(scene)
    sums = {t.name: torch.zeros(n, t.dim) for t in teachers}
    weights = {t.name: torch.zeros(n) for t in teachers}
    pending: list[tuple[object, Tensor, Tensor | None]] = []
    clock = {"render": 0.0, "teachers": 0.0, "accumulate": 0.0}

    def flush():
        images = torch.stack([img for _, img, _ in pending]).permute(0, 3, 1, 2).float().clamp(0, 1)
        inst = torch.stack([m for _, _, m in pending]) if need_instances else None
        inp = TeacherInput(images=images, instance_maps=inst, captions=captions)
        per_teacher = []
        tic = time.perf_counter()
        for t in teachers:
            feat = t.encode(inp).float().cpu()
            if feat.shape[1] != t.dim:
                raise ValueError(f"teacher '{t.name}' returned {feat.shape[1]} channels, declared dim={t.dim}")
            per_teacher.append(feat)
        clock["teachers"] += time.perf_counter() - tic
        tic = time.perf_counter()
        for b, (cam, _, _) in enumerate(pending):
            small = scale_camera(cam, cfg.feature_downscale)
            size = (small.height, small.width)
            blocks = []
            for t, feat in zip(teachers, per_teacher):
                f = resample_features(feat[b : b + 1], size, nearest=_needs_instances(t))[0].permute(1, 2, 0)  # [h, w, D]
                valid = (f.abs().amax(-1, keepdim=True) > 0).float()
                blocks += [f * valid, valid]
            weighted = accumulate_pixels(scene, small, torch.cat(blocks, -1))
            start = 0
            for t in teachers:
                sums[t.name] += weighted[:, start : start + t.dim].float().cpu()
                weights[t.name] += weighted[:, start + t.dim].float().cpu()
                start += t.dim + 1
        clock["accumulate"] += time.perf_counter() - tic
        pending.clear()

    iterator = cameras
    if progress:
        from tqdm import tqdm

        iterator = tqdm(cameras, desc=f"lift {scene.name}", leave=False)
    with torch.no_grad():
        for cam in iterator:
            tic = time.perf_counter()
            out = rasterize(scene, cam, features=codes)
            inst = decode_instance_map(out.features.cpu(), out.alpha.cpu(), ids, cfg.min_alpha) if need_instances else None
            pending.append((cam, out.color.detach().cpu(), inst))
            clock["render"] += time.perf_counter() - tic
            if len(pending) >= cfg.teacher_batch:
                flush()
        if pending:
            flush()
    if timings is not None:
        timings.update({k: round(v, 3) for k, v in clock.items()}, views=len(cameras))
    return {name: finalize_lift(sums[name], weights[name], cfg.min_weight) for name in names}


# ---------------------------------------------------------------- scene folders
def read_captions(scene_dir: str | Path) -> dict[int, str] | None:
    """instance id -> caption from ``<scene_dir>/scene.json`` (objects[].id, objects[].caption); None if absent."""
    path = Path(scene_dir) / "scene.json"
    if not path.is_file():
        return None
    meta = json.loads(path.read_text())
    out = {}
    for i, obj in enumerate(meta.get("objects", [])):
        if "caption" not in obj:
            continue
        key = obj.get("id", obj.get("instance_id"))
        if key is None:
            raise ValueError(f"{path}: field 'objects[{i}].id': missing, expected the instance id of the captioned object")
        out[int(key)] = str(obj["caption"])
    return out


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_file(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def feature_files(scene_dir: Path, name: str) -> tuple[Path, Path]:
    return scene_dir / f"{name}_feat.npy", scene_dir / f"{name}_feat_index.npy"


def is_lifted(scene_dir: str | Path, names: Sequence[str]) -> bool:
    scene_dir = Path(scene_dir)
    return all(p.is_file() for n in names for p in feature_files(scene_dir, n))


def write_lifted(scene_dir: str | Path, lifted: dict[str, tuple[Tensor, Tensor]]) -> None:
    """float16 ``<name>_feat.npy`` then int32 ``<name>_feat_index.npy`` (the index last: its presence marks completion)."""
    scene_dir = Path(scene_dir)
    for name, (feat, index) in lifted.items():
        feat_path, index_path = feature_files(scene_dir, name)
        save_npy_atomic(feat_path, feat.cpu().numpy().astype(np.float16))
        save_npy_atomic(index_path, index.cpu().numpy().astype(np.int32))


def lift_folder(scene_dir, teachers, views=None, config: LiftConfig | None = None, progress: bool = False) -> dict:
    """Load ``scene_dir`` (``data.load_scene``), lift, write files; returns {name: (feat, index)}."""
    from data import load_scene

    scene_dir = Path(scene_dir)
    scene = load_scene(scene_dir)
    lifted = lift_scene(scene, teachers, views=views, captions=read_captions(scene_dir), config=config, progress=progress)
    write_lifted(scene_dir, lifted)
    return lifted


def find_scene_dirs(root: str | Path) -> list[Path]:
    """Scene folders under ``root``: ``root`` itself if it holds a scene (coord.npy / scene.json / *.ply), else its subfolders."""
    root = Path(root)

    def is_scene(p: Path) -> bool:
        return (p / "coord.npy").is_file() or (p / "scene.json").is_file() or any(p.glob("*.ply"))

    if is_scene(root):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and is_scene(p))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m encoder.lift",
        description="Render views of each scene, run 2D teachers, lift their features onto the Gaussians "
        "(<teacher>_feat.npy float16 + <teacher>_feat_index.npy int32 in each scene folder). Resumable.",
    )
    parser.add_argument("--scenes", required=True, help="a scene folder or a folder of scene folders")
    parser.add_argument("--teachers", default="offline", help="teacher set (offline, paper) or comma-separated specs")
    parser.add_argument("--views", type=int, default=LiftConfig.n_views, help="cameras per scene")
    parser.add_argument("--directions", type=int, default=LiftConfig.n_directions, help="view directions per position")
    parser.add_argument("--width", type=int, default=LiftConfig.width)
    parser.add_argument("--height", type=int, default=LiftConfig.height)
    parser.add_argument("--downscale", type=int, default=LiftConfig.feature_downscale, help="accumulate at render size / this")
    parser.add_argument("--min-weight", type=float, default=LiftConfig.min_weight)
    parser.add_argument("--overwrite", action="store_true", help="lift scenes that already have every teacher's files")
    parser.add_argument("--log", default=None, help="JSONL file for seconds per scene (default: <scenes>/lift_log.jsonl)")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    cfg = LiftConfig(n_views=args.views, n_directions=args.directions, width=args.width,
                     height=args.height, feature_downscale=args.downscale, min_weight=args.min_weight)
    dirs = find_scene_dirs(args.scenes)
    if not dirs:
        print(f"no scene folders under {args.scenes}", file=sys.stderr)
        return 1
    teachers = _resolve_teachers(args.teachers)
    names = [t.name for t in teachers]
    todo = [d for d in dirs if args.overwrite or not is_lifted(d, names)]
    print(f"{len(dirs)} scenes, {len(dirs) - len(todo)} already lifted, teachers: {', '.join(names)}")
    log_path = Path(args.log) if args.log else Path(args.scenes) / "lift_log.jsonl"
    failures = 0
    bar = tqdm(todo, desc="lift", unit="scene")
    for scene_dir in bar:
        start = time.perf_counter()
        try:
            lifted = lift_folder(scene_dir, teachers, config=cfg)
        except (ValueError, OSError) as exc:  # one bad scene must not stop a long run
            failures += 1
            tqdm.write(f"FAILED {scene_dir}: {exc}")
            continue
        seconds = time.perf_counter() - start
        record = {"scene": str(scene_dir), "seconds": round(seconds, 3),
                  "lifted": {k: int(v[1].numel()) for k, v in lifted.items()}, "config": asdict(cfg)}
        with open(log_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        bar.set_postfix(sec_per_scene=f"{seconds:.1f}")
        tqdm.write(f"{scene_dir.name}: {seconds:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
