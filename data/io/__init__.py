"""Scene files: one reader entry point that detects the format, one writer.

Formats (details in each module):

========================  ==========================  =========================
format                    read                        write
========================  ==========================  =========================
INRIA 3DGS ``.ply``       :mod:`data.io.ply`          ``save_scene(s, "x.ply")``
point-cloud ``.ply``      :mod:`data.io.pointcloud`   --
point-cloud ``.npz``      :mod:`data.io.pointcloud`   --
antimatter15 ``.splat``   :mod:`data.io.splat`        ``save_scene(s, "x.splat")`` (lossy)
SceneSplat folder         :mod:`data.io.scenesplat`   ``save_scene(s, "folder")``
``.zip`` of any of these  :mod:`data.io.archive`      --
========================  ==========================  =========================

Malformed input raises :class:`~data.scene.SceneFormatError` naming the file and
field; repairs (dropped NaN/inf rows, renormalised quaternions) are reported
as counted :class:`SceneRepairWarning` warnings.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..scene import GaussianScene, SceneFormatError
from .common import SceneRepairWarning

__all__ = ["load_scene", "save_scene", "detect_format", "SceneRepairWarning", "SCENE_SUFFIXES"]

SCENE_SUFFIXES = frozenset({".ply", ".splat", ".npz"})
_MAGIC = {b"ply": "ply", b"PK\x03\x04": "zip"}


def detect_format(path) -> str:
    """``'scenesplat'``, ``'ply'``, ``'splat'``, ``'npz'`` or ``'zip'`` for ``path``, from its suffix or magic bytes."""
    path = Path(path)
    if path.is_dir():
        from .scenesplat import is_scenesplat_dir

        if not is_scenesplat_dir(path):
            raise SceneFormatError(path, "coord", "folder has no coord.npy; a SceneSplat folder needs coord.npy, color.npy, ...")
        return "scenesplat"
    suffix = path.suffix.lower()
    if suffix in (".ply", ".splat", ".npz", ".zip"):
        return suffix[1:]
    with open(path, "rb") as fh:
        head = fh.read(4)
    for magic, fmt in _MAGIC.items():
        if head.startswith(magic):
            return "npz" if fmt == "zip" and suffix == ".npz" else fmt
    raise SceneFormatError(path, "format", f"unknown scene format '{suffix or '(no suffix)'}'; expected .ply, .splat, .npz, .zip or a SceneSplat folder")


def _reader(fmt: str):
    if fmt == "ply":
        from .ply import read_ply

        return read_ply
    if fmt == "splat":
        from .splat import read_splat

        return read_splat
    if fmt == "npz":
        from .pointcloud import read_npz

        return read_npz
    if fmt == "scenesplat":
        from .scenesplat import read_scenesplat

        return read_scenesplat
    return _read_zip


def _read_zip(path: Path, *, name: str, estimate_normals: bool) -> GaussianScene:
    from .archive import extract_zip, find_scene_in

    with tempfile.TemporaryDirectory(prefix="chorus-zip-") as tmp:
        extract_zip(path, Path(tmp))
        inner = find_scene_in(Path(tmp), path)
        fmt = detect_format(inner)
        if fmt == "zip":
            raise SceneFormatError(path, "zip", "nested zip archives are not supported")
        try:
            return _reader(fmt)(inner, name=name, estimate_normals=estimate_normals)
        except SceneFormatError as e:  # report the uploaded archive, not the temporary folder
            rel = Path(e.path).relative_to(tmp) if Path(e.path).is_relative_to(tmp) else Path(e.path).name
            raise SceneFormatError(f"{path}!{rel}", e.field, e.problem) from None


def load_scene(path, *, estimate_normals: bool = False, name: str | None = None) -> GaussianScene:
    """Load a scene file or folder of any supported format (detected from suffix, magic or folder contents).

    estimate_normals: fill missing normals by kNN PCA (:func:`data.geometry.estimate_normals`).
    name: the scene's name; the file or folder stem by default.
    Raises SceneFormatError for malformed input and FileNotFoundError for a missing path.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such scene file or folder")
    fmt = detect_format(path)
    name = name if name is not None else (path.name if path.is_dir() else path.stem)
    try:
        return _reader(fmt)(path, name=name, estimate_normals=estimate_normals)
    except (SceneFormatError, FileNotFoundError, PermissionError):
        raise
    except MemoryError:
        raise SceneFormatError(path, fmt, "too large to load into memory") from None
    except Exception as e:  # last line of defence: every malformed input must surface as SceneFormatError
        raise SceneFormatError(path, fmt, f"could not be parsed ({type(e).__name__}: {e})") from e


def save_scene(scene: GaussianScene, path) -> None:
    """Write ``scene``: ``.ply`` -> INRIA 3DGS, ``.splat`` -> antimatter15 (lossy), no suffix -> SceneSplat folder.

    Every write is atomic (temporary name, then ``os.replace``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".ply":
        from .ply import write_inria_ply

        write_inria_ply(scene, path)
    elif suffix == ".splat":
        from .splat import write_splat

        write_splat(scene, path)
    elif suffix == "" or path.is_dir():
        from .scenesplat import write_scenesplat

        write_scenesplat(scene, path)
    else:
        raise SceneFormatError(path, "format", f"cannot write '{suffix}'; expected .ply, .splat or a folder path without suffix")
