"""SceneSplat folders: one ``.npy`` file per field.

Files (N Gaussians)::

    coord.npy     (N,3) float            centres                      required
    color.npy     (N,3) uint8 0-255 or float (taken as is)           required
    opacity.npy   (N,) or (N,1) float    activated, in [0,1]
    scale.npy     (N,3) float            activated (linear), > 0
    quat.npy      (N,4) float            wxyz
    normal.npy    (N,3) float            optional
    segment.npy   (N,) or (N,k) int      semantic id (column 0), optional
    instance.npy  (N,) or (N,k) int      optional
    sh_rest.npy   (N,K,3) float          optional, a Chorus-QA extension for lossless round trips
    <name>_feat.npy + <name>_feat_index.npy   lifted features (M,D) for Gaussians index (M,)
    lang_feat.npy + valid_feat_mask.npy       SceneSplat release layout: name "lang",
                                              index = nonzero(mask); feat (N,D) or (M,D)
    class_names.json                          list of class names

A folder with only coordinates and colours (no opacity/scale/quat), like
Pointcept's point-cloud folders, loads as a point cloud (see
:mod:`data.io.pointcloud`). Writing uses uint8 colours when every colour is an
exact multiple of 1/255 and float32 otherwise (so nothing is lost), float16
features with int32 indices, and replaces the folder atomically; files in an
existing folder that are not scene files are carried over.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..scene import GaussianScene, SceneFormatError
from ..atomic import atomic_directory
from .common import build_scene, numpy_fields, read_npy
from .pointcloud import colors_to_unit, scene_from_points

_FIELD_FILES = ("coord", "color", "opacity", "scale", "quat", "normal", "segment", "instance", "sh_rest")
_GAUSSIAN_FILES = ("opacity", "scale", "quat")
MAX_CLASS_NAMES_BYTES = 4 * 1024 * 1024


def is_scenesplat_dir(path: Path) -> bool:
    return path.is_dir() and (path / "coord.npy").is_file()


def _load(folder: Path, stem: str) -> np.ndarray:
    file = folder / f"{stem}.npy"
    with open(file, "rb") as fh:
        return read_npy(fh, file.stat().st_size, file, stem)


def _features(folder: Path, names: set[str], n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    feats = {}
    for fname in sorted(names):
        if not fname.endswith("_feat.npy"):
            continue
        key = fname[: -len("_feat.npy")]
        feat = _load(folder, f"{key}_feat")
        if feat.ndim != 2 or feat.dtype.kind != "f":
            raise SceneFormatError(folder / fname, f"{key}_feat", f"has shape {feat.shape} and dtype {feat.dtype}, expected float (M, D)")
        if f"{key}_feat_index.npy" in names:
            index = _load(folder, f"{key}_feat_index")
        elif key == "lang" and "valid_feat_mask.npy" in names:
            mask = _load(folder, "valid_feat_mask").reshape(-1)
            if mask.shape != (n,):
                raise SceneFormatError(folder / "valid_feat_mask.npy", "valid_feat_mask", f"has shape {mask.shape}, expected ({n},)")
            mask = mask.astype(bool)
            index = np.flatnonzero(mask)
            if feat.shape[0] == n and index.size != n:
                feat = feat[mask]
        elif feat.shape[0] == n:
            index = np.arange(n)
        else:
            raise SceneFormatError(folder / fname, f"{key}_feat_index", f"missing, and the {feat.shape[0]} feature rows do not cover all {n} Gaussians")
        if index.ndim != 1 or index.shape[0] != feat.shape[0]:
            raise SceneFormatError(folder / f"{key}_feat_index.npy", f"{key}_feat_index", f"has shape {index.shape}, expected ({feat.shape[0]},) to match {key}_feat")
        feats[key] = (feat, index)
    return feats


def read_scenesplat(path: Path, *, name: str, estimate_normals: bool) -> GaussianScene:
    """Load a SceneSplat folder (see the module docstring)."""
    names = {p.name for p in path.iterdir() if p.is_file()}
    arr = {stem: _load(path, stem) for stem in _FIELD_FILES if f"{stem}.npy" in names}
    if "color" not in arr:
        raise SceneFormatError(path / "color.npy", "color", "missing; a SceneSplat folder needs coord.npy and color.npy")
    coord = arr["coord"]
    n = coord.shape[0] if coord.ndim else 0
    present = [s for s in _GAUSSIAN_FILES if s in arr]
    if not present:
        color = arr["color"]
        if color.ndim != 2 or color.shape[1] < 3:
            raise SceneFormatError(path / "color.npy", "color", f"has shape {color.shape}, expected (N, 3)")
        return scene_from_points(
            path, coord, colors_to_unit(path / "color.npy", color[:, :3]), normals=arr.get("normal"),
            semantic=arr.get("segment"), instance=arr.get("instance"), name=name, estimate_normals=estimate_normals,
        )  # fmt: skip
    for stem in _GAUSSIAN_FILES:
        if stem not in arr:
            raise SceneFormatError(path / f"{stem}.npy", stem, f"missing; a Gaussian SceneSplat folder with {', '.join(present)} also needs it")
    color = arr["color"]
    if color.dtype.kind in "iub":
        if color.dtype.kind == "b" or (color.size and (color.min() < 0 or color.max() > 255)):
            raise SceneFormatError(path / "color.npy", "color", "integer colours must be 0-255")
        color = color.astype(np.float32) / np.float32(255.0)
    class_names = None
    if "class_names.json" in names:
        file = path / "class_names.json"
        if file.stat().st_size > MAX_CLASS_NAMES_BYTES:
            raise SceneFormatError(file, "class_names", f"larger than {MAX_CLASS_NAMES_BYTES} bytes")
        try:
            class_names = json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise SceneFormatError(file, "class_names", f"is not valid JSON ({e})") from None
    return build_scene(
        path, means=coord, quats=arr["quat"], scales=arr["scale"], opacities=arr["opacity"], colors=color,
        sh_rest=arr.get("sh_rest"), normals=arr.get("normal"), semantic=arr.get("segment"),
        instance=arr.get("instance"), class_names=class_names, features=_features(path, names, n), name=name,
        linear_scales=True, warn_quats=True, estimate_normals=estimate_normals,
    )  # fmt: skip


def _is_scene_file(fname: str) -> bool:
    stem = fname[:-4] if fname.endswith(".npy") else None
    return (
        stem in _FIELD_FILES
        or fname in ("class_names.json", "valid_feat_mask.npy")
        or fname.endswith(("_feat.npy", "_feat_index.npy"))
    )


def _labels(values: np.ndarray) -> np.ndarray:
    fits = values.size == 0 or (values.min() >= -(2**31) and values.max() < 2**31)
    return values.astype(np.int32 if fits else np.int64)


def write_scenesplat(scene: GaussianScene, path) -> None:
    """Write ``scene`` as a SceneSplat folder at ``path`` (see the module docstring)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SceneFormatError(path, "path", "exists and is not a directory; cannot write a SceneSplat folder there")
    a = numpy_fields(scene)
    with atomic_directory(path) as tmp:
        np.save(tmp / "coord.npy", a["means"].astype(np.float32))
        colors = a["colors"].astype(np.float32)
        as_u8 = np.rint(colors.astype(np.float64) * 255.0)
        exact = bool(np.all((as_u8 >= 0) & (as_u8 <= 255))) and np.array_equal((as_u8 / 255.0).astype(np.float32), colors)
        np.save(tmp / "color.npy", as_u8.astype(np.uint8) if exact else colors)
        np.save(tmp / "opacity.npy", a["opacities"].astype(np.float32))
        np.save(tmp / "scale.npy", a["scales"].astype(np.float32))
        np.save(tmp / "quat.npy", a["quats"].astype(np.float32))
        for stem, key in (("normal", "normals"), ("sh_rest", "sh_rest")):
            if a[key] is not None:
                np.save(tmp / f"{stem}.npy", a[key].astype(np.float32))
        for stem, key in (("segment", "semantic"), ("instance", "instance")):
            if a[key] is not None:
                np.save(tmp / f"{stem}.npy", _labels(a[key]))
        for key, (feat, index) in scene.features.items():
            np.save(tmp / f"{key}_feat.npy", feat.detach().cpu().numpy().astype(np.float16))
            np.save(tmp / f"{key}_feat_index.npy", index.detach().cpu().numpy().astype(np.int32))
        if scene.class_names is not None:
            (tmp / "class_names.json").write_text(json.dumps(list(scene.class_names)), encoding="utf-8")
        _carry_over_extra_files(path, tmp)


def _carry_over_extra_files(path: Path, tmp: Path) -> None:
    """Copy the files of an existing folder ``path`` that are not scene files (and not rewritten) into ``tmp``."""
    if not path.is_dir():
        return
    for entry in path.iterdir():
        if not _is_scene_file(entry.name) and not (tmp / entry.name).exists():
            if entry.is_dir():
                shutil.copytree(entry, tmp / entry.name, symlinks=True)
            else:
                shutil.copy2(entry, tmp / entry.name, follow_symlinks=False)
