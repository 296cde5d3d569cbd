"""PLY files: the INRIA 3DGS layout (read and write) and plain point clouds (read).

INRIA layout, one ``vertex`` element with float properties
``x y z [nx ny nz] f_dc_0..2 f_rest_0..(3K-1) opacity scale_0..2 rot_0..3``
(K = 0, 3, 8 or 15 for SH degree 0-3). Reading applies the 3DGS activations:

* ``opacity = sigmoid(opacity)``, ``scales = exp(scale_*)``
* ``colors = SH_C0 * f_dc + 0.5``, **not clipped**: trained scenes carry DC
  colours slightly outside [0, 1] that the higher bands compensate, and
  clipping would make a load/save cycle lossy. Consumers that need [0, 1]
  clamp.
* ``quats = rot / |rot|`` with ``w >= 0`` (rot_0 is w)
* ``f_rest`` is channel-major (all R coefficients, then G, then B) and becomes
  ``sh_rest`` (N, K, 3).
* all-zero ``nx ny nz`` (what 3DGS training writes) mean "no normals".
* integer ``semantic`` / ``instance`` properties are read (and written when set).

Activations and their inverses run in float64 so a scene survives
save -> load to float32 rounding; raw fields (means, rotations, SH rest,
normals, labels) are copied bit-exactly. Unknown properties are ignored.

Plain point-cloud PLYs (``x y z`` + optional colours, normals, labels; ascii or
binary) are handed to :mod:`data.io.pointcloud`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..scene import SH_C0, GaussianScene, SceneFormatError
from ..atomic import atomic_file
from .common import SH_REST_SIZES, build_scene, numpy_fields

MAX_HEADER_BYTES = 64 * 1024
MAX_ELEMENT_COUNT = 1 << 31
_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
INRIA_MARKERS = ("f_dc_0", "scale_0", "rot_0")  # "opacity" alone also occurs in plain point clouds
_OPACITY_CLIP = (1e-50, 1.0 - 2.0**-26)  # logit stays finite; 0 and 1 still read back exactly in float32
_SCALE_FLOOR = 1e-50  # log stays finite; a zero scale reads back as 0


@dataclass
class PlyElement:
    name: str
    count: int
    properties: list[tuple[str, str]]  # (name, numpy type code) for scalar properties
    has_list: bool = False


@dataclass
class PlyHeader:
    format: str  # ascii | binary_little_endian | binary_big_endian
    elements: list[PlyElement]
    data_offset: int  # byte offset of the first element's data


def read_header(path: Path, head: bytes) -> PlyHeader:
    """Parse the header at the start of ``head`` (the first bytes of the file, up to MAX_HEADER_BYTES)."""
    if not head.startswith(b"ply"):
        raise SceneFormatError(path, "header", "does not start with 'ply'")
    end = head.find(b"end_header")
    if end < 0:
        raise SceneFormatError(path, "header", f"no 'end_header' within the first {MAX_HEADER_BYTES} bytes")
    stop = end + len(b"end_header")
    if head[stop : stop + 2] == b"\r\n":
        stop += 2
    elif head[stop : stop + 1] in (b"\n", b"\r"):
        stop += 1
    else:
        raise SceneFormatError(path, "header", "'end_header' is not followed by a newline")
    try:
        text = head[:end].decode("ascii")
    except UnicodeDecodeError as e:
        raise SceneFormatError(path, "header", f"is not ASCII text (byte {e.start})") from None
    fmt, elements = None, []
    for lineno, line in enumerate(text.splitlines()[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        key = words[0]
        if key == "format":
            if len(words) != 3 or words[1] not in _FORMATS:
                raise SceneFormatError(path, "header", f"line {lineno} '{line}': expected 'format ascii|binary_little_endian|binary_big_endian 1.0'")
            fmt = words[1]
        elif key == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise SceneFormatError(path, "header", f"line {lineno} '{line}': expected 'element <name> <count>'")
            count = int(words[2])
            if count >= MAX_ELEMENT_COUNT:
                raise SceneFormatError(path, f"element {words[1]}", f"count {count} exceeds the limit {MAX_ELEMENT_COUNT}")
            elements.append(PlyElement(words[1], count, []))
        elif key == "property":
            if not elements:
                raise SceneFormatError(path, "header", f"line {lineno}: property before any element")
            el = elements[-1]
            if len(words) == 5 and words[1] == "list":
                if words[2] not in _TYPES or words[3] not in _TYPES:
                    raise SceneFormatError(path, "header", f"line {lineno} '{line}': unknown list type")
                el.has_list = True
                continue
            if len(words) != 3 or words[1] not in _TYPES:
                raise SceneFormatError(path, "header", f"line {lineno} '{line}': expected 'property <type> <name>' with type in {sorted(_TYPES)}")
            if any(words[2] == p for p, _ in el.properties):
                raise SceneFormatError(path, words[2], f"property is declared twice in element '{el.name}'")
            el.properties.append((words[2], _TYPES[words[1]]))
        else:
            raise SceneFormatError(path, "header", f"line {lineno}: unknown keyword '{key}'")
    if fmt is None:
        raise SceneFormatError(path, "header", "has no 'format' line")
    return PlyHeader(fmt, elements, stop)


def read_vertices(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str], int]:
    """The ``vertex`` element of a PLY file as columns.

    Returns ``(columns, types, count)``: property name -> (count,) array (in the
    file's type for binary files, float64 for ascii), property name -> NumPy type
    code as declared, and the number of vertices.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(MAX_HEADER_BYTES)
    header = read_header(path, head)
    names = [e.name for e in header.elements]
    if "vertex" not in names:
        raise SceneFormatError(path, "vertex", f"no 'vertex' element (elements: {names})")
    vi = names.index("vertex")
    vertex = header.elements[vi]
    if vertex.has_list:
        raise SceneFormatError(path, "vertex", "list properties in the vertex element are not supported")
    if not vertex.properties:
        raise SceneFormatError(path, "vertex", "has no properties")
    types = dict(vertex.properties)
    n = vertex.count
    if header.format == "ascii":
        return _read_ascii(path, header, vi, size), types, n
    endian = _FORMATS[header.format]
    offset = header.data_offset
    for el in header.elements[:vi]:
        if el.has_list:
            raise SceneFormatError(path, el.name, "a list-valued element before 'vertex' is not supported in binary files")
        offset += el.count * sum(np.dtype(t).itemsize for _, t in el.properties)
    dtype = np.dtype([(p, endian + t) for p, t in vertex.properties])
    if offset + n * dtype.itemsize > size:
        have = max(size - offset, 0) // dtype.itemsize
        raise SceneFormatError(path, "vertex", f"file is truncated: header declares {n} vertices of {dtype.itemsize} bytes, data holds {have}")
    data = np.fromfile(path, dtype=dtype, count=n, offset=offset)
    return {p: data[p] for p, _ in vertex.properties}, types, n


def _read_ascii(path: Path, header: PlyHeader, vi: int, size: int) -> dict[str, np.ndarray]:
    vertex = header.elements[vi]
    skip = sum(el.count for el in header.elements[:vi])
    with open(path, "rb") as fh:
        fh.seek(header.data_offset)
        body = fh.read()
    lines = body.splitlines()
    rows = lines[skip : skip + vertex.count]
    if len(rows) < vertex.count:
        raise SceneFormatError(path, "vertex", f"file is truncated: header declares {vertex.count} vertices, found {max(len(rows), 0)} lines")
    tokens = b" ".join(rows).split()
    k = len(vertex.properties)
    if len(tokens) != vertex.count * k:
        raise SceneFormatError(path, "vertex", f"expected {k} values on each of {vertex.count} lines, found {len(tokens)} values in all")
    try:
        table = np.array(tokens, dtype=np.float64).reshape(vertex.count, k)
    except ValueError as e:
        raise SceneFormatError(path, "vertex", f"non-numeric value in ascii data ({e})") from None
    return {p: table[:, i] for i, (p, _) in enumerate(vertex.properties)}


def is_inria(types: dict[str, str]) -> bool:
    return any(m in types for m in INRIA_MARKERS)


def _stack(path, cols, names, dtype=np.float64) -> np.ndarray:
    missing = [p for p in names if p not in cols]
    if missing:
        raise SceneFormatError(path, missing[0], f"missing property (an INRIA 3DGS .ply needs {', '.join(names)})")
    return np.stack([cols[p].astype(dtype, copy=False) for p in names], axis=1)


def _zero_means_absent(normals: np.ndarray | None) -> np.ndarray | None:
    return None if normals is None or not normals.any() else normals


def read_inria(path: Path, cols, types, n: int, *, name: str, estimate_normals: bool) -> GaussianScene:
    """Build a scene from the columns of an INRIA 3DGS vertex element (see the module docstring)."""
    rest_names = sorted((p for p in cols if p.startswith("f_rest_")), key=lambda p: (len(p), p))
    m = len(rest_names)
    if m and (m % 3 or m // 3 not in SH_REST_SIZES or rest_names != [f"f_rest_{i}" for i in range(m)]):
        raise SceneFormatError(path, "f_rest", f"found {m} f_rest_* properties, expected f_rest_0..f_rest_(3K-1) with 3K in (9, 24, 45)")
    with np.errstate(over="ignore", invalid="ignore"):
        f_dc = _stack(path, cols, ["f_dc_0", "f_dc_1", "f_dc_2"])
        logit = _stack(path, cols, ["opacity"])[:, 0]
        log_scale = _stack(path, cols, ["scale_0", "scale_1", "scale_2"])
        rot = _stack(path, cols, ["rot_0", "rot_1", "rot_2", "rot_3"], np.float32)
        means = _stack(path, cols, ["x", "y", "z"], np.float32)
        colors = SH_C0 * f_dc + 0.5
        opacities = 1.0 / (1.0 + np.exp(-logit))
        scales = np.exp(log_scale)
    sh_rest = None
    if m:
        sh_rest = _stack(path, cols, rest_names, np.float32).reshape(n, 3, m // 3).transpose(0, 2, 1)
    normals = None
    if all(p in cols for p in ("nx", "ny", "nz")):
        normals = _zero_means_absent(_stack(path, cols, ["nx", "ny", "nz"], np.float32))
    return build_scene(
        path, means=means, quats=rot, scales=scales, opacities=opacities, colors=colors,
        sh_rest=sh_rest, normals=normals, semantic=cols.get("semantic"), instance=cols.get("instance"),
        name=name, linear_scales=False, warn_quats=False, estimate_normals=estimate_normals,
    )  # fmt: skip


def read_ply(path: Path, *, name: str, estimate_normals: bool) -> GaussianScene:
    """Load an INRIA 3DGS or a plain point-cloud ``.ply`` (detected from its properties)."""
    cols, types, n = read_vertices(path)
    if is_inria(types):
        return read_inria(path, cols, types, n, name=name, estimate_normals=estimate_normals)
    from .pointcloud import scene_from_point_columns

    return scene_from_point_columns(path, cols, types, name=name, estimate_normals=estimate_normals)


def inria_property_names(sh_k: int) -> list[str]:
    """Float property names in the order INRIA's trainer writes them, for ``sh_k`` rest coefficients per channel."""
    return [
        "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2",
        *[f"f_rest_{i}" for i in range(3 * sh_k)],
        "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
    ]  # fmt: skip


def write_inria_ply(scene: GaussianScene, path) -> None:
    """Write ``scene`` as a binary little-endian INRIA 3DGS ``.ply`` (atomically).

    Inverse activations: ``f_dc = (colors - 0.5) / SH_C0``, ``opacity =
    logit(clip(opacities))``, ``scale = log(max(scales, tiny))``. Missing normals
    are written as zeros; ``semantic``/``instance`` become int32 properties.
    """
    path = Path(path)
    a = numpy_fields(scene)
    n = len(scene)
    k = 0 if a["sh_rest"] is None else a["sh_rest"].shape[1]
    names = inria_property_names(k)
    floats = np.empty((n, len(names)), dtype="<f4")
    floats[:, 0:3] = a["means"]
    floats[:, 3:6] = 0.0 if a["normals"] is None else a["normals"]
    floats[:, 6:9] = (a["colors"].astype(np.float64) - 0.5) / SH_C0
    if k:
        floats[:, 9 : 9 + 3 * k] = a["sh_rest"].transpose(0, 2, 1).reshape(n, 3 * k)
    o = np.clip(a["opacities"].astype(np.float64), *_OPACITY_CLIP)
    floats[:, 9 + 3 * k] = np.log(o) - np.log1p(-o)
    floats[:, 10 + 3 * k : 13 + 3 * k] = np.log(np.maximum(a["scales"].astype(np.float64), _SCALE_FLOOR))
    floats[:, 13 + 3 * k :] = a["quats"]

    labels = [key for key in ("semantic", "instance") if a[key] is not None]
    for key in labels:
        if a[key].size and (a[key].min() < -(2**31) or a[key].max() >= 2**31):
            raise SceneFormatError(path, key, f"ids span [{a[key].min()}, {a[key].max()}], which does not fit the int32 PLY property")
    record = np.dtype([("f", "<f4", (len(names),)), *[(key, "<i4") for key in labels]])
    data = np.empty(n, dtype=record)
    data["f"] = floats
    for key in labels:
        data[key] = a[key]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {p}" for p in names] + [f"property int {key}" for key in labels]
    header.append("end_header\n")
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fh.write("\n".join(header).encode("ascii"))
        data.tofile(fh)
