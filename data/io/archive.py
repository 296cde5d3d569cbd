"""Safe extraction of uploaded ``.zip`` scenes.

A zip may hold a SceneSplat folder (at its root or in one top-level folder) or
a single supported scene file. Extraction refuses absolute paths, ``..``
components, links and special files, more than ``MAX_ZIP_MEMBERS`` members, and
more than ``MAX_ZIP_BYTES`` uncompressed bytes (counted while decompressing,
so a lying header cannot bomb the disk).
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from ..scene import SceneFormatError

MAX_ZIP_BYTES = 8 * 1024**3
MAX_ZIP_MEMBERS = 10_000
_CHUNK = 1 << 20


def _safe_member_path(archive: Path, info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The relative path of a member, or None for folder entries; raises on anything unsafe."""
    name = info.filename.replace("\\", "/")
    rel = PurePosixPath(name)
    if name.startswith("/") or (rel.parts and ":" in rel.parts[0]) or ".." in rel.parts or "\x00" in name:
        raise SceneFormatError(archive, info.filename, "unsafe path in zip (absolute or with '..')")
    mode = info.external_attr >> 16
    if mode and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise SceneFormatError(archive, info.filename, "zip member is a link or special file; only plain files are accepted")
    if info.is_dir() or not rel.parts:
        return None
    return rel


def extract_zip(archive: Path, dest: Path, *, max_bytes: int | None = None) -> None:
    """Extract ``archive`` into the existing folder ``dest`` with the checks in the module docstring."""
    max_bytes = MAX_ZIP_BYTES if max_bytes is None else max_bytes
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise SceneFormatError(archive, "zip", f"not a readable zip archive ({e})") from None
    with zf:
        members = zf.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            raise SceneFormatError(archive, "zip", f"{len(members)} members, more than the limit {MAX_ZIP_MEMBERS}")
        declared = sum(m.file_size for m in members)
        if declared > max_bytes:
            raise SceneFormatError(archive, "zip", f"{declared} uncompressed bytes, more than the limit {max_bytes}")
        total = 0
        for info in members:
            rel = _safe_member_path(archive, info)
            if rel is None:
                continue
            target = dest.joinpath(*rel.parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        total += len(chunk)
                        if total > max_bytes:
                            raise SceneFormatError(archive, info.filename, f"uncompressed data exceed the limit of {max_bytes} bytes")
                        out.write(chunk)
            except SceneFormatError:
                raise
            except Exception as e:  # BadZipFile (CRC), zlib.error, EOFError, NotImplementedError (compression), ...
                raise SceneFormatError(archive, info.filename, f"cannot be extracted ({type(e).__name__}: {e})") from None


def find_scene_in(folder: Path, archive: Path) -> Path:
    """The scene inside an extracted archive: a SceneSplat folder or the single scene file."""
    from . import SCENE_SUFFIXES

    candidates = [folder] + [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(("__MACOSX", "."))]
    for cand in candidates:
        if (cand / "coord.npy").is_file():
            return cand
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SCENE_SUFFIXES and "__MACOSX" not in p.parts]
    if len(files) == 1:
        return files[0]
    if not files:
        raise SceneFormatError(archive, "zip", f"holds no scene: expected a SceneSplat folder (coord.npy) or one of {sorted(SCENE_SUFFIXES)}")
    raise SceneFormatError(archive, "zip", f"holds {len(files)} scene files ({', '.join(sorted(p.name for p in files)[:5])}); expected exactly one")
