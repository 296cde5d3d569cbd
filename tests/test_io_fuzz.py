"""Property tests for scene files: generated scenes round-trip; damaged files load or raise SceneFormatError."""

from __future__ import annotations

import io
import itertools
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from data import GaussianScene, SceneFormatError, load_scene, save_scene

FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
FAST_MUTATIONS = settings(max_examples=240, deadline=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
_counter = itertools.count()
_TMP = Path(tempfile.mkdtemp(prefix="chorus-io-fuzz-"))
_BASE_TMP = Path(tempfile.mkdtemp(prefix="chorus-io-base-"))


@pytest.fixture(scope="module", autouse=True)
def _cleanup_tmp():
    yield
    shutil.rmtree(_TMP, ignore_errors=True)
    shutil.rmtree(_BASE_TMP, ignore_errors=True)


def _f32(lo, hi, **kw):
    lo, hi = float(np.float32(lo)), float(np.float32(hi))
    return st.floats(lo, hi, width=32, allow_nan=False, allow_infinity=False, **kw)


@st.composite
def scenes(draw, colors_unit=False):
    n = draw(st.integers(1, 24))
    k = draw(st.sampled_from([0, 3, 8, 15]))
    arr = lambda shape, elems: draw(hnp.arrays(np.float32, shape, elements=elems))  # noqa: E731
    q = arr((n, 4), _f32(-1, 1))
    q[np.abs(q).sum(1) < 1e-3] = [1, 0, 0, 0]
    q = (q.astype(np.float64) / np.linalg.norm(q.astype(np.float64), axis=1, keepdims=True)).astype(np.float32)
    q[q[:, 0] < 0] *= -1
    optional = draw(st.fixed_dictionaries({}, optional={"normals": st.just(1), "semantic": st.just(1), "instance": st.just(1)}))
    return GaussianScene(
        means=arr((n, 3), _f32(-1e6, 1e6)),
        quats=q,
        scales=arr((n, 3), _f32(1e-20, 1e6)),
        opacities=arr((n,), _f32(0, 1)),
        colors=arr((n, 3), _f32(0, 1) if colors_unit else _f32(-4, 4)),
        sh_rest=arr((n, k, 3), _f32(-100, 100)) if k else None,
        normals=arr((n, 3), _f32(-1, 1)) if "normals" in optional else None,
        semantic=draw(hnp.arrays(np.int64, (n,), elements=st.integers(-1, 2**31 - 1))) if "semantic" in optional else None,
        instance=draw(hnp.arrays(np.int64, (n,), elements=st.integers(-(2**31), 2**31 - 1))) if "instance" in optional else None,
        name="fuzz",
    )


def _fresh(suffix: str) -> Path:
    return _TMP / f"case{next(_counter)}{suffix}"


def _check_activated(a: GaussianScene, b: GaussianScene):
    """Scales/opacities/colours after a float32 parameter trip: equal up to rounding of log/logit/DC values."""
    eps = 2.0**-23
    s0, s1 = a.scales.double(), b.scales.double()
    assert ((s1 - s0).abs() <= s0 * eps * (s0.log().abs() + 2)).all()
    o0, o1 = a.opacities.double(), b.opacities.double()
    logit = (o0.clamp(1e-45, 1 - 2**-26).log() - (-o0).log1p().clamp(min=-60)).abs()
    assert ((o1 - o0).abs() <= eps * (o0 * (1 - o0) * (logit + 2) + 2 * o0 * eps) + 2**-25).all()
    assert ((a.colors.double() - b.colors.double()).abs() <= eps * (a.colors.double().abs() + 2)).all()


@FAST
@given(scenes())
def test_generated_scenes_round_trip_through_ply_and_scenesplat(scene):
    ply = _fresh(".ply")
    save_scene(scene, ply)
    back = load_scene(ply)
    for f in ("means", "quats", "sh_rest", "normals", "semantic", "instance"):
        a, b = getattr(scene, f), getattr(back, f)
        if f == "normals" and a is not None and not a.any():
            a = None  # all-zero normals are the INRIA placeholder for "none"
        assert (a is None and b is None) or torch.equal(a, b), f
    _check_activated(scene, back)
    folder = _fresh("")
    save_scene(scene, folder)
    again = load_scene(folder)
    for f in ("means", "quats", "scales", "opacities", "colors", "sh_rest", "normals", "semantic", "instance"):
        a, b = getattr(scene, f), getattr(again, f)
        assert (a is None and b is None) or torch.equal(a, b), f


@FAST
@given(scenes(colors_unit=True))
def test_generated_scenes_round_trip_through_splat(scene):
    path = _fresh(".splat")
    save_scene(scene, path)
    back = load_scene(path)
    assert len(back) == len(scene)
    key = scene.opacities.double() * scene.scales.double().prod(1)
    order = torch.from_numpy(np.argsort(-key.numpy(), kind="stable"))
    ref = scene.subset(order)
    assert torch.equal(back.means, ref.means) and torch.equal(back.scales, ref.scales)
    assert (back.colors - ref.colors).abs().max() <= 0.5 / 255 + 1e-6
    assert (back.opacities - ref.opacities).abs().max() <= 0.5 / 255 + 1e-6
    assert (back.quats * ref.quats).sum(1).abs().min() > 0.995


# ---------------------------------------------------------------- damaged files
def _base_files() -> dict[str, tuple[str, bytes]]:
    """Small valid files of every format: name -> (suffix, bytes)."""
    rng = np.random.default_rng(0)
    n = 6
    scene = GaussianScene(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        quats=np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
        scales=np.full((n, 3), 0.05, np.float32),
        opacities=np.full(n, 0.7, np.float32),
        colors=rng.uniform(size=(n, 3)).astype(np.float32),
        sh_rest=rng.normal(size=(n, 3, 3)).astype(np.float32),
        semantic=np.arange(n),
        name="base",
    )
    scene.features["dino"] = (torch.randn(3, 2), torch.tensor([0, 2, 4]))
    out = {}
    work = _BASE_TMP
    for suffix in (".ply", ".splat"):
        save_scene(scene, work / f"s{suffix}")
        out[suffix] = (suffix, (work / f"s{suffix}").read_bytes())
    pts = np.c_[rng.normal(size=(n, 3)), rng.integers(0, 256, (n, 3))]
    head = "ply\nformat ascii 1.0\nelement vertex 6\nproperty float x\nproperty float y\nproperty float z\n"
    head += "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    out["ascii.ply"] = (".ply", (head + "".join(f"{r[0]} {r[1]} {r[2]} {int(r[3])} {int(r[4])} {int(r[5])}\n" for r in pts)).encode())
    buf = io.BytesIO()
    np.savez(buf, xyz=pts[:, :3].astype(np.float32), rgb=pts[:, 3:].astype(np.uint8), segment=np.arange(n))
    out[".npz"] = (".npz", buf.getvalue())
    save_scene(scene, work / "folder")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((work / "folder").iterdir()):
            zf.write(p, f"folder/{p.name}")
    out[".zip"] = (".zip", buf.getvalue())
    for p in sorted((work / "folder").iterdir()):  # each .npy of a SceneSplat folder, damaged on its own
        out[f"folder/{p.name}"] = ("/", p.read_bytes())
    return out


BASES = _base_files()


@st.composite
def damaged(draw):
    key = draw(st.sampled_from(sorted(BASES)))
    suffix, data = BASES[key]
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "header_number"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "header_number":  # replace one ASCII digit run near the start (counts, shapes)
            digits = [i for i, b in enumerate(data[:400]) if chr(b).isdigit()]
            if digits:
                i = draw(st.sampled_from(digits))
                data[i : i + 1] = str(draw(st.sampled_from([0, 1, 7, 255, 10**9, 2**40, 10**30]))).encode()
    return key, suffix, bytes(data)


def _load_damaged(case):
    key, suffix, data = case
    if suffix == "/":  # one file of a SceneSplat folder
        folder = _fresh("")
        folder.mkdir()
        for name, (sfx, content) in BASES.items():
            if sfx == "/":
                (folder / name.split("/", 1)[1]).write_bytes(content)
        (folder / key.split("/", 1)[1]).write_bytes(data)
        path = folder
    else:
        path = _fresh(suffix)
        path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            scene = load_scene(path)
        except SceneFormatError as e:
            assert path.name in str(e)
            return
    assert len(scene) >= 1
    assert torch.isfinite(scene.means).all() and torch.isfinite(scene.quats).all()
    assert ((scene.quats.norm(dim=1) - 1).abs() < 1e-5).all() and (scene.quats[:, 0] >= 0).all()
    assert ((scene.opacities >= 0) & (scene.opacities <= 1)).all()


def test_base_files_are_valid():
    for key in BASES:
        if not key.startswith("folder/") or key == "folder/coord.npy":
            _load_damaged((key, *BASES[key]))


@FAST_MUTATIONS
@given(damaged())
def test_damaged_files_load_or_raise_scene_format_error(case):
    _load_damaged(case)


@pytest.mark.slow
@SLOW
@given(damaged())
def test_damaged_files_load_or_raise_scene_format_error_long(case):
    _load_damaged(case)


@pytest.mark.slow
@SLOW
@given(scenes())
def test_generated_scenes_round_trip_long(scene):
    test_generated_scenes_round_trip_through_ply_and_scenesplat.hypothesis.inner_test(scene)
