"""Atomic writes of files and folders: write under a temporary name, then rename.

Readers (a loader, a resuming trainer, a second process) must never see a
half-written checkpoint, cache entry or scene. Every writer in the project
therefore writes into a hidden sibling of the target (same folder, so the final
``os.replace`` is a rename on one file system), swaps it in only once it is
complete, and removes it if anything fails::

    with atomic_file(path, suffix=".npy") as tmp:
        np.save(tmp, array)

    with atomic_directory(folder) as tmp:
        (tmp / "config.json").write_text(...)

A folder cannot be renamed over a non-empty folder, so :func:`replace_directory`
first moves the old one aside and deletes it only after the new one is in place:
at every moment either the old or the new complete folder exists under a name
(never a mix of both).

Temporary names start with a dot and carry the process id and a random tag
(``.NAME.tmp-PID-TAG``, ``.NAME.old-PID-TAG``), so concurrent writers do not
collide and globs like ``step_*`` do not pick them up.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator


def temp_sibling(path: str | os.PathLike, kind: str = "tmp", suffix: str = "") -> Path:
    """A unique hidden name beside ``path``: ``.NAME.<kind>-PID-TAG<suffix>`` (nothing is created)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; write the file there.

    On normal exit the temporary file replaces ``path`` in one ``os.replace``; on
    an exception it is deleted and ``path`` keeps its old content. ``suffix`` ends
    the temporary name, for writers that insist on an extension (``np.save`` adds
    ``.npy`` to a path without one). The parent folder is created if missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path, suffix=suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_json(path: str | os.PathLike, obj, indent: int = 1) -> Path:
    """Write ``obj`` as JSON (``indent``, a final newline) to ``path`` through :func:`atomic_file`: a result file is
    either the old one or the complete new one. Returns ``path``."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n")
    return path


def replace_directory(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Move the finished folder ``src`` to ``dst``, replacing whatever is there; returns ``dst``.

    An existing ``dst`` is renamed aside first and deleted only after ``src`` took
    its place, so a crash in between leaves a complete folder (old or new). ``src``
    must be on the same file system as ``dst`` (a sibling, as :func:`temp_sibling` gives).
    """
    src, dst = Path(src), Path(dst)
    old = None
    if dst.exists() or dst.is_symlink():
        old = temp_sibling(dst, kind="old")
        os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:
        if old is not None:
            os.replace(old, dst)  # put the old folder back under its name
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    return dst


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh empty temporary folder beside ``path``; fill it.

    On normal exit it replaces ``path`` through :func:`replace_directory` (the old
    folder, if any, survives until the swap); on an exception it is deleted and
    ``path`` is untouched. The parent folder is created if missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        replace_directory(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
