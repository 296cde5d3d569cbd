"""antimatter15 ``.splat`` files: 32 bytes per Gaussian, no header.

Record layout (little endian)::

    position  3 x float32
    scale     3 x float32   linear (already exp-activated)
    rgba      4 x uint8     colour * 255, opacity * 255
    rotation  4 x uint8     q * 128 + 128, wxyz, q unit

Writing is lossy (colour/opacity to 8 bits, rotation to 7 bits per component)
and sorts Gaussians by ``opacity * volume`` descending, like antimatter15's
converter, so viewers can stream the most visible ones first. SH rest,
normals, labels and features are not stored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..scene import GaussianScene, SceneFormatError
from ..atomic import atomic_file
from .common import build_scene, numpy_fields

SPLAT_RECORD = np.dtype([("position", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)), ("rot", "u1", (4,))])
assert SPLAT_RECORD.itemsize == 32


def read_splat(path: Path, *, name: str, estimate_normals: bool) -> GaussianScene:
    size = path.stat().st_size
    if size == 0:
        raise SceneFormatError(path, "records", "the file is empty; expected at least one 32-byte splat")
    if size % SPLAT_RECORD.itemsize:
        raise SceneFormatError(path, "records", f"file size {size} is not a multiple of {SPLAT_RECORD.itemsize} bytes (truncated or not a .splat)")
    rec = np.fromfile(path, dtype=SPLAT_RECORD)
    rgba = rec["rgba"].astype(np.float32) / 255.0
    quats = (rec["rot"].astype(np.float32) - 128.0) / 128.0
    return build_scene(
        path, means=rec["position"], quats=quats, scales=rec["scale"], opacities=rgba[:, 3],
        colors=rgba[:, :3], name=name, linear_scales=True, warn_quats=False, estimate_normals=estimate_normals,
    )  # fmt: skip


def splat_order(opacities: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Row order of a ``.splat`` file: ``opacity * scale_x * scale_y * scale_z`` descending, ties by row (stable)."""
    key = opacities.astype(np.float64) * np.prod(scales.astype(np.float64), axis=1)
    return np.argsort(-key, kind="stable")


def write_splat(scene: GaussianScene, path) -> None:
    """Write ``scene`` as an antimatter15 ``.splat`` (lossy, sorted; see the module docstring)."""
    a = numpy_fields(scene)
    order = splat_order(a["opacities"], a["scales"])
    rec = np.empty(len(order), dtype=SPLAT_RECORD)
    rec["position"] = a["means"][order]
    rec["scale"] = a["scales"][order]
    rgba = np.concatenate([a["colors"][order], a["opacities"][order, None]], axis=1)
    rec["rgba"] = np.clip(np.rint(rgba.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    q = a["quats"][order].astype(np.float64)
    q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    rec["rot"] = np.clip(np.rint(q * 128.0 + 128.0), 0, 255).astype(np.uint8)
    with atomic_file(path) as tmp:
        rec.tofile(tmp)
