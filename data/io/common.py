"""Shared pieces of the scene readers and writers: validation and repair.

Every reader turns its file into plain NumPy arrays and hands them to
:func:`build_scene`, which checks shapes and dtypes, drops non-finite rows with a
counted warning, canonicalises quaternions (unit length, ``w >= 0``) and builds
the :class:`~data.scene.GaussianScene`. Problems raise
:class:`~data.scene.SceneFormatError` naming the file and the field.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..scene import GaussianScene, SceneFormatError

SH_REST_SIZES = (3, 8, 15)  # higher-band coefficients per channel for SH degree 1, 2, 3
_UNIT_TOL = 1e-6  # |q|^2 within this of 1 counts as unit: left untouched so round trips stay bit-exact
_WARN_TOL = 1e-3  # |q| farther than this from 1 is worth a warning where the format promises unit quats


class SceneRepairWarning(UserWarning):
    """A scene file had fixable problems (non-finite rows, non-unit quaternions, ...); they were repaired."""


def warn_repair(path, field: str, count: int, total: int, action: str) -> None:
    warnings.warn(f"{path}: field '{field}': {count} of {total} Gaussians {action}", SceneRepairWarning, stacklevel=4)


def _float_array(path, field, value, trailing: tuple[int, ...], n: int | None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise SceneFormatError(path, field, f"has dtype {arr.dtype}, expected a numeric array")
    if trailing == () and arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    want = (n if n is not None else arr.shape[0] if arr.ndim else -1, *trailing)
    if arr.ndim != len(want) or tuple(arr.shape) != want:
        shape = ", ".join(["N", *map(str, trailing)])
        raise SceneFormatError(path, field, f"has shape {arr.shape}, expected ({shape}){'' if n is None else f' with N = {n}'}")
    return arr


def _int_array(path, field, value, n: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 2 and arr.shape[1] >= 1:  # SceneSplat stores (N, k) label columns; the first is the label
        arr = arr[:, 0]
    if arr.shape != (n,):
        raise SceneFormatError(path, field, f"has shape {arr.shape}, expected ({n},)")
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.dtype.itemsize >= 8 and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise SceneFormatError(path, field, "has ids beyond int64")
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2.0**62)
        if not ok.all():
            bad = int(np.argmin(ok))
            raise SceneFormatError(path, field, f"row {bad} holds {arr[bad]!r}, expected integer ids")
        return arr.astype(np.int64)
    raise SceneFormatError(path, field, f"has dtype {arr.dtype}, expected integer ids")


def canonical_quats(path, quats: np.ndarray, *, warn: bool) -> np.ndarray:
    """Unit quaternions with ``w >= 0``. quats: (N, 4) wxyz -> (N, 4) float32.

    Rows already unit to float32 precision are kept bit-for-bit. Zero rows are an
    error. With ``warn`` the repairs are reported as counted warnings.
    """
    q = quats.astype(np.float64)
    sq = np.einsum("ij,ij->i", q, q)
    zero = sq == 0
    if zero.any():
        raise SceneFormatError(path, "quats", f"{int(zero.sum())} zero quaternions (first at row {int(np.argmax(zero))}); a rotation needs |q| > 0")
    off = np.abs(sq - 1.0) > _UNIT_TOL
    out = quats.astype(np.float32, copy=True)
    if off.any():
        out[off] = (q[off] / np.sqrt(sq[off])[:, None]).astype(np.float32)
        if warn:
            far = int((np.abs(np.sqrt(sq) - 1.0) > _WARN_TOL).sum())
            if far:
                warn_repair(path, "quats", far, len(q), "had non-unit quaternions and were renormalised")
    neg = out[:, 0] < 0
    if neg.any():
        out[neg] *= -1.0
        if warn:
            warn_repair(path, "quats", int(neg.sum()), len(q), "had w < 0 and were flipped to -q (same rotation)")
    return out


def build_scene(
    path,
    *,
    means,
    quats,
    scales,
    opacities,
    colors,
    sh_rest=None,
    normals=None,
    semantic=None,
    instance=None,
    class_names=None,
    features: dict | None = None,
    name: str,
    linear_scales: bool,
    warn_quats: bool,
    estimate_normals: bool = False,
) -> GaussianScene:
    """Validate, repair and assemble per-Gaussian NumPy arrays into a scene.

    means (N,3), quats (N,4) wxyz, scales (N,3) activated, opacities (N,) in
    [0,1], colors (N,3), sh_rest (N,K,3), normals (N,3), semantic/instance (N,)
    integer, features name -> (feat (M,D), index (M,)). ``linear_scales`` means
    the file stored scales directly, so zero/negative ones are an error.
    """
    means = _float_array(path, "means", means, (3,), None)
    n = means.shape[0]
    if n == 0:
        raise SceneFormatError(path, "means", "the scene is empty (0 Gaussians); expected at least one")
    arrays = {
        "means": means,
        "quats": _float_array(path, "quats", quats, (4,), n),
        "scales": _float_array(path, "scales", scales, (3,), n),
        "opacities": _float_array(path, "opacities", opacities, (), n),
        "colors": _float_array(path, "colors", colors, (3,), n),
    }
    if sh_rest is not None:
        sh = np.asarray(sh_rest)
        if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3 or sh.shape[1] not in SH_REST_SIZES:
            raise SceneFormatError(path, "sh_rest", f"has shape {sh.shape}, expected ({n}, K, 3) with K in {SH_REST_SIZES}")
        arrays["sh_rest"] = _float_array(path, "sh_rest", sh, sh.shape[1:], n)
    if normals is not None:
        arrays["normals"] = _float_array(path, "normals", normals, (3,), n)
    ints = {k: _int_array(path, k, v, n) for k, v in (("semantic", semantic), ("instance", instance)) if v is not None}

    feats = {}
    for key, (feat, index) in (features or {}).items():
        feat, index = np.asarray(feat), np.asarray(index)
        if feat.ndim != 2 or feat.dtype.kind != "f":
            raise SceneFormatError(path, f"{key}_feat", f"has shape {feat.shape} and dtype {feat.dtype}, expected float (M, D)")
        if index.ndim != 1 or index.dtype.kind not in "iu" or index.shape[0] != feat.shape[0]:
            raise SceneFormatError(path, f"{key}_feat_index", f"has shape {index.shape} and dtype {index.dtype}, expected integer ({feat.shape[0]},)")
        if index.size and (index.min() < 0 or index.max() >= n):
            raise SceneFormatError(path, f"{key}_feat_index", f"indices span [{index.min()}, {index.max()}], expected within [0, {n})")
        feats[key] = (torch.from_numpy(np.ascontiguousarray(feat)), torch.from_numpy(index.astype(np.int64)))

    finite = np.ones(n, dtype=bool)
    per_field = {}
    for key, arr in arrays.items():
        bad = ~np.isfinite(arr).reshape(n, -1).all(axis=1)
        if bad.any():
            per_field[key] = int(bad.sum())
            finite &= ~bad
    if not finite.any():
        raise SceneFormatError(path, ", ".join(per_field), f"all {n} Gaussians have NaN/inf values; nothing left to load")
    if per_field:
        detail = ", ".join(f"{k}: {v}" for k, v in per_field.items())
        warn_repair(path, ", ".join(per_field), int(n - finite.sum()), n, f"had NaN/inf values and were dropped ({detail})")

    f = finite if not finite.all() else slice(None)
    scales = arrays["scales"][f]
    if linear_scales and (scales <= 0).any():
        bad = np.flatnonzero((scales <= 0).any(axis=1))
        raise SceneFormatError(path, "scales", f"{len(bad)} Gaussians have zero or negative scales (first: row {bad[0]} = {scales[bad[0]].tolist()}); expected > 0")
    opac = arrays["opacities"][f].astype(np.float32)
    if (opac < -1e-3).any() or (opac > 1 + 1e-3).any():
        raise SceneFormatError(path, "opacities", f"values span [{opac.min()}, {opac.max()}], expected activated opacities in [0, 1]")
    np.clip(opac, 0.0, 1.0, out=opac)

    out = {key: arr[f].astype(np.float32, copy=False) for key, arr in arrays.items()}
    out["opacities"] = opac
    out["quats"] = canonical_quats(path, arrays["quats"][f], warn=warn_quats)
    if "normals" not in out and estimate_normals:
        from ..geometry import estimate_normals as pca_normals

        out["normals"] = pca_normals(out["means"])
    tensors = {key: torch.from_numpy(np.ascontiguousarray(arr)) for key, arr in out.items()}
    for key, arr in ints.items():
        tensors[key] = torch.from_numpy(np.ascontiguousarray(arr[f]))

    if isinstance(f, np.ndarray):  # re-index lifted features onto the surviving rows
        new_pos = np.full(n, -1, dtype=np.int64)
        new_pos[f] = np.arange(int(f.sum()))
        for key, (feat, index) in list(feats.items()):
            mapped = new_pos[index.numpy()]
            keep = mapped >= 0
            feats[key] = (feat[torch.from_numpy(keep)], torch.from_numpy(mapped[keep]))
    if class_names is not None:
        if not isinstance(class_names, (list, tuple)) or not all(isinstance(c, str) for c in class_names):
            raise SceneFormatError(path, "class_names", "expected a list of strings")
        class_names = list(class_names)
    return GaussianScene(**tensors, class_names=class_names, features=feats, name=name)


def read_npy(fh, available: int, path, field: str) -> np.ndarray:
    """Read one ``.npy`` array from the open binary stream ``fh`` holding ``available`` bytes.

    Unlike ``np.load`` this checks the header against the bytes really present
    before allocating, so a corrupt shape cannot ask for terabytes, and it
    refuses object, structured and sub-array dtypes.
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as e:  # numpy's header parser raises ValueError, SyntaxError, tokenize.TokenError, ...
        raise SceneFormatError(path, field, f"is not a readable .npy array ({type(e).__name__}: {e})") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biuf":
        raise SceneFormatError(path, field, f"has dtype {dtype}, expected a plain numeric array")
    count = int(np.prod(shape, dtype=np.float64)) if shape else 1
    need = count * dtype.itemsize
    have = available - fh.tell() if available >= 0 else need
    if need > have:
        raise SceneFormatError(path, field, f"is truncated: its header declares shape {shape} ({need} bytes), {max(have, 0)} bytes are present")
    buf = bytearray(need)
    got = fh.readinto(buf) if need else 0
    if got != need:
        raise SceneFormatError(path, field, f"is truncated: read {got} of {need} bytes")
    arr = np.frombuffer(buf, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C")


def numpy_fields(scene: GaussianScene) -> dict[str, np.ndarray | None]:
    """Per-Gaussian fields of ``scene`` as CPU NumPy arrays (None where absent)."""
    out = {}
    for key in ("means", "quats", "scales", "opacities", "colors", "sh_rest", "normals", "semantic", "instance"):
        value = getattr(scene, key)
        out[key] = None if value is None else value.detach().cpu().numpy()
    if len(scene) == 0:
        raise SceneFormatError(scene.name, "means", "cannot save an empty scene")
    return out
