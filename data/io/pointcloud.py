"""Plain point clouds (``.ply`` without Gaussian properties, ``.npz``) as Gaussian scenes.

Each point becomes an isotropic Gaussian:

* scale = distance to its nearest other point, clamped to
  ``[POINT_SCALE_MIN, POINT_SCALE_MEDIAN_FACTOR * median]`` (duplicates would
  give 0, isolated outliers huge blobs); a lone point gets ``POINT_SCALE_SINGLE``
* identity rotation, opacity ``POINT_OPACITY``
* colours from 8-bit (/255), 16-bit (/65535) or float (0-1) values; float
  colours above 1 are taken as 0-255 (with a warning); no colours -> grey 0.5
* normals from the file, else by kNN PCA when ``estimate_normals=True``

``.npz`` keys: ``xyz|coord|points`` (N,3), ``rgb|color|colors`` (N,3),
optional ``normal|normals`` (N,3), ``semantic|segment`` (N,) and ``instance`` (N,).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..scene import GaussianScene, SceneFormatError
from .common import SceneRepairWarning, build_scene, read_npy

POINT_OPACITY = 0.9
POINT_SCALE_MIN = 1e-4  # metres
POINT_SCALE_MEDIAN_FACTOR = 10.0
POINT_SCALE_SINGLE = 0.01  # metres, for a cloud of one point

_NPZ_KEYS = {
    "means": ("xyz", "coord", "points"),
    "colors": ("rgb", "color", "colors"),
    "normals": ("normal", "normals"),
    "semantic": ("semantic", "segment"),
    "instance": ("instance",),
}
_PLY_COLOR_NAMES = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))


def point_scales(means: np.ndarray) -> np.ndarray:
    """Isotropic Gaussian scale per point from nearest-neighbour spacing. means: (N,3) -> (N,) float32."""
    from ..geometry import nearest_neighbor_distances

    if len(means) < 2:
        return np.full(len(means), POINT_SCALE_SINGLE, dtype=np.float32)
    d = nearest_neighbor_distances(means)
    hi = max(POINT_SCALE_MEDIAN_FACTOR * float(np.median(d)), POINT_SCALE_MIN)
    return np.clip(d, POINT_SCALE_MIN, hi).astype(np.float32)


def colors_to_unit(path, values: np.ndarray, declared: str | None = None) -> np.ndarray:
    """Colour values (N,3) of any common encoding -> float (N,3) in [0, 1]."""
    kind = np.dtype(declared or values.dtype)
    if kind.kind in "iu":
        full = 65535.0 if kind.itemsize == 2 and kind.kind == "u" else 255.0
        return np.clip(values.astype(np.float64) / full, 0.0, 1.0)
    if kind.kind != "f":
        raise SceneFormatError(path, "colors", f"has dtype {kind}, expected uint8 0-255 or float 0-1")
    vals = values.astype(np.float64)
    with np.errstate(invalid="ignore"):
        top = np.nanmax(vals) if np.isfinite(vals).any() else 0.0
    if top > 1.0 + 1e-6:
        if top > 255.0 + 1e-6:
            raise SceneFormatError(path, "colors", f"maximum {top} exceeds 255; expected 0-1 floats or 0-255 values")
        warnings.warn(f"{path}: field 'colors': float colours reach {top}; reading them as 0-255", SceneRepairWarning, stacklevel=3)
        vals = vals / 255.0
    return np.clip(vals, 0.0, 1.0)


def scene_from_points(
    path, means, colors, *, normals=None, semantic=None, instance=None, name: str, estimate_normals: bool
) -> GaussianScene:
    """Isotropic Gaussians on a point cloud (see the module docstring). means (N,3), colors (N,3) in [0,1] or None."""
    means = np.asarray(means)
    if means.ndim != 2 or means.shape[1] != 3 or means.dtype.kind not in "fiu":
        raise SceneFormatError(path, "means", f"has shape {means.shape} and dtype {means.dtype}, expected numeric (N, 3)")
    n = len(means)
    if n == 0:
        raise SceneFormatError(path, "means", "the point cloud is empty; expected at least one point")
    if colors is None:
        warnings.warn(f"{path}: field 'colors': no colours in the point cloud; using grey 0.5", SceneRepairWarning, stacklevel=3)
        colors = np.full((n, 3), 0.5)
    means = means.astype(np.float32)
    # Neighbour spacing only among finite points; non-finite rows are dropped by build_scene.
    finite = np.isfinite(means).all(axis=1)
    scales = np.full(n, POINT_SCALE_SINGLE, dtype=np.float32)
    scales[finite] = point_scales(means[finite])
    quats = np.zeros((n, 4), dtype=np.float32)
    quats[:, 0] = 1.0
    return build_scene(
        path, means=means, quats=quats, scales=np.repeat(scales[:, None], 3, axis=1),
        opacities=np.full(n, POINT_OPACITY, dtype=np.float32), colors=colors, normals=normals,
        semantic=semantic, instance=instance, name=name, linear_scales=True, warn_quats=False,
        estimate_normals=estimate_normals,
    )  # fmt: skip


def scene_from_point_columns(path, cols: dict, types: dict, *, name: str, estimate_normals: bool) -> GaussianScene:
    """A scene from the vertex columns of a point-cloud PLY (no Gaussian properties)."""
    for p in ("x", "y", "z"):
        if p not in cols:
            raise SceneFormatError(path, p, "missing property; a point-cloud .ply needs x, y, z")
    means = np.stack([cols[p] for p in ("x", "y", "z")], axis=1).astype(np.float64)
    colors = None
    for names in _PLY_COLOR_NAMES:
        if all(p in cols for p in names):
            declared = {types[p] for p in names}
            if len(declared) != 1:
                raise SceneFormatError(path, names[0], f"colour properties have mixed types {sorted(declared)}")
            colors = colors_to_unit(path, np.stack([cols[p] for p in names], axis=1), declared.pop())
            break
    normals = None
    if all(p in cols for p in ("nx", "ny", "nz")):
        normals = np.stack([cols[p] for p in ("nx", "ny", "nz")], axis=1).astype(np.float32)
        if not normals.any():
            normals = None
    semantic = cols.get("semantic", cols.get("label"))
    return scene_from_points(
        path, means, colors, normals=normals, semantic=semantic, instance=cols.get("instance"),
        name=name, estimate_normals=estimate_normals,
    )  # fmt: skip


def read_npz(path: Path, *, name: str, estimate_normals: bool) -> GaussianScene:
    """Load a point cloud stored as ``.npz`` (see the module docstring for keys)."""
    import zipfile

    found = {}
    try:
        with zipfile.ZipFile(path) as zf:
            members = {info.filename[:-4]: info for info in zf.infolist() if info.filename.endswith(".npy")}
            for field, keys in _NPZ_KEYS.items():
                key = next((k for k in keys if k in members), None)
                if key is None:
                    continue
                try:
                    with zf.open(members[key]) as fh:
                        found[field] = read_npy(fh, members[key].file_size, path, key)
                except SceneFormatError:
                    raise
                except Exception as e:  # corrupt member: CRC, zlib, truncated stream, ...
                    raise SceneFormatError(path, key, f"cannot be read ({type(e).__name__}: {e})") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        if isinstance(e, SceneFormatError):
            raise
        raise SceneFormatError(path, "npz", f"not a readable .npz archive ({type(e).__name__}: {e})") from None
    if "means" not in found:
        raise SceneFormatError(path, "xyz", f"no point coordinates: expected one of the keys {_NPZ_KEYS['means']}")
    colors = found.get("colors")
    if colors is not None:
        colors = np.asarray(colors)
        if colors.ndim != 2 or colors.shape[1] < 3:
            raise SceneFormatError(path, "colors", f"has shape {colors.shape}, expected (N, 3)")
        colors = colors_to_unit(path, colors[:, :3])
    return scene_from_points(
        path, found["means"], colors, normals=found.get("normals"), semantic=found.get("semantic"),
        instance=found.get("instance"), name=name, estimate_normals=estimate_normals,
    )  # fmt: skip
