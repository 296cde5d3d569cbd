"""Scene file formats: known answers, round trips, repairs and malformed input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
import torch

from data import GaussianScene, SceneFormatError, load_scene, save_scene
from data.geometry import estimate_normals, knn, nearest_neighbor_distances
from data.io import SceneRepairWarning
from data.io import pointcloud as pc
from data.io.splat import splat_order

SH_C0 = 0.28209479177387814
RAW_FIELDS = ("means", "quats", "sh_rest", "normals", "semantic", "instance")


# ---------------------------------------------------------------- helpers
def random_scene(n=200, k=15, extras=True, seed=0) -> GaussianScene:
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1
    return GaussianScene(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        quats=q.astype(np.float32),
        scales=np.exp(rng.normal(-4, 1.5, size=(n, 3))).astype(np.float32),
        opacities=rng.uniform(size=n).astype(np.float32),
        colors=rng.uniform(-0.2, 1.2, size=(n, 3)).astype(np.float32),
        sh_rest=rng.normal(size=(n, k, 3)).astype(np.float32) if k else None,
        normals=rng.normal(size=(n, 3)).astype(np.float32) if extras else None,
        semantic=rng.integers(-1, 20, n) if extras else None,
        instance=rng.integers(-1, 50, n) if extras else None,
        name="rand",
    )


def ply_bytes(props, rows, fmt="binary_little_endian", extra_header="") -> bytes:
    """A PLY file built by hand: props [(name, plytype)], rows (n, len(props)) numbers."""
    codes = {"float": "f4", "double": "f8", "uchar": "u1", "int": "i4", "ushort": "u2"}
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, len(props))
    head = ["ply", f"format {fmt} 1.0", f"element vertex {len(rows)}"]
    head += [f"property {t} {p}" for p, t in props]
    head = ("\n".join(head) + "\n" + extra_header + "end_header\n").encode()
    if fmt == "ascii":
        return head + "".join(" ".join(repr(float(v)) if t in ("float", "double") else str(int(v)) for v, (_, t) in zip(r, props)) + "\n" for r in rows).encode()
    e = "<" if fmt == "binary_little_endian" else ">"
    dt = np.dtype([(p, e + codes[t]) for p, t in props])
    data = np.empty(len(rows), dtype=dt)
    for i, (p, _) in enumerate(props):
        data[p] = rows[:, i]
    return head + data.tobytes()


def inria_props(k=0, normals=True):
    names = ["x", "y", "z"] + (["nx", "ny", "nz"] if normals else []) + ["f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * k)] + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return [(p, "float") for p in names]


def expect_error(path, field, **kw):
    with pytest.raises(SceneFormatError) as info:
        load_scene(path, **kw)
    msg = str(info.value)
    assert os.path.basename(str(path)) in msg, msg
    assert field in msg, msg
    return info.value


def assert_activated_close(a: GaussianScene, b: GaussianScene):
    """Activated fields after a float32 .ply trip: equal up to rounding of the stored parameters."""
    eps = 2.0**-23
    s0, s1 = a.scales.double(), b.scales.double()
    assert ((s1 - s0).abs() <= s0 * eps * (s0.log().abs() + 2)).all()
    assert ((a.opacities.double() - b.opacities.double()).abs() <= 2 * eps * (a.opacities.double() + 2**-40)).all() or torch.allclose(a.opacities, b.opacities, rtol=0, atol=2 * eps)
    assert ((a.colors.double() - b.colors.double()).abs() <= eps).all()


# ---------------------------------------------------------------- INRIA .ply
@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
def test_inria_ply_known_values(tmp_path, fmt):
    props = inria_props(k=3)
    f_rest = np.arange(9, dtype=float)  # channel-major: R0 R1 R2 G0 G1 G2 B0 B1 B2
    row0 = [1, 2, 3, 0, 0, 1, 0.0, 1.0, -1.0, *f_rest, 0.0, math.log(0.1), math.log(0.2), math.log(0.5), 2, 0, 0, 0]
    row1 = [-1, 0, 5, 0, 1, 0, 2.0, 0.0, 0.0, *(f_rest + 10), math.log(3.0), 0.0, 0.0, 0.0, -1, 0, 0, 1]
    path = tmp_path / "known.ply"
    path.write_bytes(ply_bytes(props, [row0, row1], fmt, extra_header="comment made by hand\n"))
    s = load_scene(path)
    assert s.name == "known" and len(s) == 2
    torch.testing.assert_close(s.means, torch.tensor([[1.0, 2, 3], [-1, 0, 5]]))
    torch.testing.assert_close(s.opacities, torch.tensor([0.5, 0.75]))
    torch.testing.assert_close(s.scales, torch.tensor([[0.1, 0.2, 0.5], [1, 1, 1]]))
    r = 1 / math.sqrt(2)
    torch.testing.assert_close(s.quats, torch.tensor([[1.0, 0, 0, 0], [r, 0, 0, -r]]))
    torch.testing.assert_close(s.colors, torch.tensor([[0.5, 0.5 + SH_C0, 0.5 - SH_C0], [0.5 + 2 * SH_C0, 0.5, 0.5]]))
    assert s.colors.max() > 1  # DC colours are kept unclipped (documented) so the file round-trips
    assert s.sh_rest.shape == (2, 3, 3)
    torch.testing.assert_close(s.sh_rest[0], torch.tensor([[0.0, 3, 6], [1, 4, 7], [2, 5, 8]]))
    torch.testing.assert_close(s.normals, torch.tensor([[0.0, 0, 1], [0, 1, 0]]))
    assert s.semantic is None and s.instance is None


def test_inria_ply_zero_normals_are_absent_and_extras_ignored(tmp_path):
    props = inria_props() + [("semantic", "int"), ("instance", "int"), ("some_extra", "float")]
    row = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1.0, 0, 0, 0, 1, 0, 0, 0, 7, 3, 42.0]
    path = tmp_path / "labels.ply"
    path.write_bytes(ply_bytes(props, [row, row]))
    s = load_scene(path)
    assert s.normals is None
    assert s.semantic.tolist() == [7, 7] and s.instance.tolist() == [3, 3]
    assert s.semantic.dtype == torch.int64
    assert load_scene(path, estimate_normals=True).normals.shape == (2, 3)


@pytest.mark.parametrize("k,extras", [(15, True), (8, False), (3, True), (0, False)])
def test_ply_round_trip(tmp_path, k, extras):
    s = random_scene(500, k=k, extras=extras)
    s.opacities[:3] = torch.tensor([0.0, 1.0, 1e-30])
    s.scales[0] = torch.tensor([1e-30, 1e10, 1.0])
    save_scene(s, tmp_path / "rt.ply")
    r = load_scene(tmp_path / "rt.ply")
    for f in RAW_FIELDS:
        a, b = getattr(s, f), getattr(r, f)
        assert (a is None and b is None) or torch.equal(a, b), f
    assert_activated_close(s, r)
    assert r.opacities[0] == 0 and r.opacities[1] == 1
    # the second trip through the file format changes nothing further than the first
    save_scene(r, tmp_path / "rt2.ply")
    assert_activated_close(r, load_scene(tmp_path / "rt2.ply"))
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_ply_quaternions_normalised_and_nan_rows_dropped(tmp_path):
    props = inria_props()
    good = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 4, 0, 0]
    rows = [good, [*good[:9], float("nan"), *good[10:]], [math.inf, *good[1:]], [*good[:13], -1, 1, 1, 1]]
    path = tmp_path / "nan.ply"
    path.write_bytes(ply_bytes(props, rows))
    with pytest.warns(SceneRepairWarning, match=r"2 of 4 Gaussians") as rec:
        s = load_scene(path)
    assert len(s) == 2
    torch.testing.assert_close(s.quats, torch.tensor([[0.6, 0.8, 0, 0], [0.5, -0.5, -0.5, -0.5]]))
    assert all("nan.ply" in str(w.message) for w in rec)


# ---------------------------------------------------------------- .splat
def test_splat_round_trip_and_order(tmp_path):
    s = random_scene(300, k=3)
    s.colors = s.colors.clamp(0, 1)
    save_scene(s, tmp_path / "s.splat")
    assert (tmp_path / "s.splat").stat().st_size == 300 * 32
    r = load_scene(tmp_path / "s.splat")
    key = (s.opacities.double() * s.scales.double().prod(1)).numpy()
    order = np.argsort(-key, kind="stable")
    assert np.all(np.diff(key[order]) <= 0)
    assert order.tolist() == splat_order(s.opacities.numpy(), s.scales.numpy()).tolist()
    e = s.subset(torch.from_numpy(order))
    assert torch.equal(r.means, e.means) and torch.equal(r.scales, e.scales)
    assert (r.colors - e.colors).abs().max() <= 0.5 / 255 + 1e-6
    assert (r.opacities - e.opacities).abs().max() <= 0.5 / 255 + 1e-6
    cos = (r.quats * e.quats).sum(1).abs()
    assert cos.min() > 0.999
    assert r.sh_rest is None and r.semantic is None


def test_splat_known_record(tmp_path):
    rec = np.zeros(1, dtype=[("p", "<f4", 3), ("s", "<f4", 3), ("c", "u1", 4), ("r", "u1", 4)])
    rec["p"], rec["s"], rec["c"], rec["r"] = [1, 2, 3], [0.1, 0.2, 0.3], [255, 0, 51, 204], [128, 128, 128, 255]
    (tmp_path / "one.splat").write_bytes(rec.tobytes())
    s = load_scene(tmp_path / "one.splat")
    torch.testing.assert_close(s.colors, torch.tensor([[1.0, 0.0, 0.2]]))
    torch.testing.assert_close(s.opacities, torch.tensor([0.8]))
    torch.testing.assert_close(s.quats, torch.tensor([[0.0, 0, 0, 1]]))
    torch.testing.assert_close(s.scales, torch.tensor([[0.1, 0.2, 0.3]]))


# ---------------------------------------------------------------- SceneSplat folders
def test_scenesplat_round_trip_with_features(tmp_path):
    s = random_scene(400, k=8)
    s.class_names = ["wall", "floor", "chair"]
    s.features["lang"] = (torch.randn(100, 16), torch.randperm(400)[:100])
    s.features["dino"] = (torch.randn(400, 4), torch.arange(400))
    save_scene(s, tmp_path / "scene0")
    r = load_scene(tmp_path / "scene0")
    assert r.name == "scene0" and r.class_names == s.class_names
    for f in ("means", "quats", "scales", "opacities", "colors", *RAW_FIELDS):
        assert torch.equal(getattr(s, f), getattr(r, f)), f
    for key, (feat, index) in s.features.items():
        assert r.features[key][0].dtype == torch.float16
        assert torch.equal(r.features[key][0], feat.half()) and torch.equal(r.features[key][1], index)
    assert np.load(tmp_path / "scene0" / "lang_feat_index.npy").dtype == np.int32


def test_scenesplat_uint8_colours_and_overwrite_keeps_other_files(tmp_path):
    s = random_scene(50, k=0, extras=False)
    s.colors = torch.randint(0, 256, (50, 3)).float() / 255
    folder = tmp_path / "room"
    save_scene(s, folder)
    assert np.load(folder / "color.npy").dtype == np.uint8
    (folder / "notes.txt").write_text("keep me")
    np.save(folder / "normal.npy", np.ones((50, 3), np.float32))  # stale scene file: must go
    save_scene(s, folder)
    assert (folder / "notes.txt").read_text() == "keep me" and not (folder / "normal.npy").exists()
    r = load_scene(folder)
    assert torch.equal(r.colors, s.colors) and r.normals is None


def test_scenesplat_release_layout(tmp_path):
    """SceneSplat-7K style: (N,1) opacity, (N,2) segment, lang_feat + valid_feat_mask, unnormalised quats."""
    n, folder = 6, tmp_path / "sc"
    folder.mkdir()
    rng = np.random.default_rng(1)
    np.save(folder / "coord.npy", rng.normal(size=(n, 3)).astype(np.float32))
    np.save(folder / "color.npy", rng.integers(0, 256, (n, 3)).astype(np.uint8))
    np.save(folder / "opacity.npy", np.full((n, 1), 0.5, np.float32))
    np.save(folder / "scale.npy", np.full((n, 3), 0.01, np.float32))
    np.save(folder / "quat.npy", np.tile(np.float32([-2, 0, 0, 0]), (n, 1)))
    np.save(folder / "segment.npy", np.stack([np.arange(n), -np.ones(n)], 1).astype(np.int16))
    mask = np.array([1, 0, 1, 1, 0, 0], bool)
    feat = rng.normal(size=(n, 5)).astype(np.float16)
    np.save(folder / "lang_feat.npy", feat)
    np.save(folder / "valid_feat_mask.npy", mask)
    (folder / "class_names.json").write_text(json.dumps(["a", "b"]))
    with pytest.warns(SceneRepairWarning, match="quats"):
        s = load_scene(folder)
    assert s.semantic.tolist() == list(range(n)) and s.class_names == ["a", "b"]
    torch.testing.assert_close(s.opacities, torch.full((n,), 0.5))
    assert torch.equal(s.quats, torch.tensor([[1.0, 0, 0, 0]] * n))
    assert s.features["lang"][1].tolist() == [0, 2, 3]
    assert torch.equal(s.features["lang"][0], torch.from_numpy(feat[mask]))
    np.save(folder / "lang_feat.npy", feat[mask])  # compact (M, D) variant
    with pytest.warns(SceneRepairWarning):
        assert torch.equal(load_scene(folder).features["lang"][0], torch.from_numpy(feat[mask]))


def test_scenesplat_nan_rows_dropped_and_features_reindexed(tmp_path):
    s = random_scene(10, k=0)
    s.features["pe"] = (torch.arange(8.0)[:, None].repeat(1, 2), torch.tensor([0, 1, 2, 3, 4, 5, 6, 9]))
    save_scene(s, tmp_path / "f")
    means = np.load(tmp_path / "f" / "coord.npy")
    means[[2, 5]] = np.nan
    np.save(tmp_path / "f" / "coord.npy", means)
    with pytest.warns(SceneRepairWarning, match=r"means'.*2 of 10 Gaussians"):
        r = load_scene(tmp_path / "f")
    assert len(r) == 8
    feat, index = r.features["pe"]
    assert index.tolist() == [0, 1, 2, 3, 4, 7]  # rows 2 and 5 gone; 6 -> 4, 9 -> 7
    assert feat[:, 0].tolist() == [0, 1, 3, 4, 6, 7]
    assert torch.equal(r.means, s.means[[0, 1, 3, 4, 6, 7, 8, 9]])


# ---------------------------------------------------------------- point clouds
def brute_nn(points: np.ndarray) -> np.ndarray:
    d = torch.cdist(torch.from_numpy(points).double(), torch.from_numpy(points).double(), compute_mode="donot_use_mm_for_euclid_dist")
    d.fill_diagonal_(float("inf"))
    return d.min(1).values.numpy()


def test_point_cloud_ply_scales_are_nn_distances(tmp_path):
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 1, size=(300, 3))
    colors = rng.integers(0, 256, (300, 3))
    props = [("x", "float"), ("y", "float"), ("z", "float"), ("red", "uchar"), ("green", "uchar"), ("blue", "uchar")]
    for fmt in ("ascii", "binary_little_endian"):
        path = tmp_path / f"pc_{fmt}.ply"
        path.write_bytes(ply_bytes(props, np.concatenate([pts, colors], 1), fmt))
        s = load_scene(path)
        p32 = pts.astype(np.float32).astype(np.float64)
        np.testing.assert_allclose(s.scales[:, 0].numpy(), brute_nn(p32), rtol=1e-6)
        assert torch.equal(s.scales[:, 0], s.scales[:, 2])
        np.testing.assert_allclose(s.colors.numpy(), colors / 255, atol=1e-7)
        assert torch.all(s.opacities == pc.POINT_OPACITY) and torch.all(s.quats == torch.tensor([1.0, 0, 0, 0]))
        assert s.normals is None


def test_point_scales_clamped():
    pts = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 1e-3], [50, 50, 50]], dtype=np.float32)
    d = pc.point_scales(pts)
    hi = pc.POINT_SCALE_MEDIAN_FACTOR * np.median(brute_nn(pts.astype(np.float64)))
    assert d[0] == d[1] == np.float32(pc.POINT_SCALE_MIN)
    np.testing.assert_allclose(d[2:4], 1e-3, rtol=1e-5)
    np.testing.assert_allclose(d[4], hi, rtol=1e-6)


def test_npz_point_cloud(tmp_path):
    rng = np.random.default_rng(3)
    n = 200
    xy = rng.uniform(-1, 1, (n, 2))
    pts = np.c_[xy, 0.5 * xy[:, 0] - 0.25 * xy[:, 1] + 2.0]  # the plane z = 0.5x - 0.25y + 2
    np.savez(tmp_path / "a.npz", coord=pts, color=rng.uniform(0, 1, (n, 3)).astype(np.float32), segment=np.arange(n))
    s = load_scene(tmp_path / "a.npz", estimate_normals=True)
    assert s.semantic.tolist() == list(range(n)) and s.normals is not None
    true_n = np.array([-0.5, 0.25, 1.0]) / np.linalg.norm([-0.5, 0.25, 1.0])
    np.testing.assert_allclose(np.abs(s.normals.numpy() @ true_n), 1.0, atol=1e-5)
    assert load_scene(tmp_path / "a.npz").normals is None
    np.savez(tmp_path / "b.npz", xyz=pts, rgb=np.full((n, 3), 255, np.uint8), normals=np.tile([0, 0, 1.0], (n, 1)))
    s = load_scene(tmp_path / "b.npz")
    assert torch.all(s.colors == 1) and torch.all(s.normals[:, 2] == 1)


# ---------------------------------------------------------------- geometry helpers
def test_knn_matches_brute_force_with_duplicates():
    rng = np.random.default_rng(4)
    pts = rng.normal(size=(120, 3))
    pts[10] = pts[11]
    dist, idx = knn(pts, 4)
    ref = torch.cdist(torch.from_numpy(pts), torch.from_numpy(pts), compute_mode="donot_use_mm_for_euclid_dist")
    ref.fill_diagonal_(float("inf"))
    np.testing.assert_allclose(dist, ref.sort(1).values[:, :4].numpy(), atol=1e-12)
    assert not (idx == np.arange(120)[:, None]).any()
    assert idx[10, 0] == 11 and idx[11, 0] == 10 and dist[10, 0] == 0
    np.testing.assert_allclose(nearest_neighbor_distances(torch.from_numpy(pts)), dist[:, 0])


def test_estimate_normals_plane_and_orientation():
    rng = np.random.default_rng(5)
    u, v = rng.uniform(-1, 1, (2, 500))
    a, b = np.array([1.0, 2.0, 0.0]) / math.sqrt(5), np.array([0.0, 0.0, 1.0])
    pts = np.outer(u, a) + np.outer(v, b) + np.array([3.0, -1.0, 0.5])
    normal = np.cross(a, b)
    nrm = estimate_normals(pts, viewpoint=pts.mean(0) + 10 * normal)
    np.testing.assert_allclose(nrm @ normal, 1.0, atol=1e-5)
    assert nrm.dtype == np.float32 and estimate_normals(pts[:2]).tolist() == [[0, 0, 1]] * 2


# ---------------------------------------------------------------- zip
def test_zip_of_scenesplat_folder_and_single_file(tmp_path):
    s = random_scene(30, k=0)
    save_scene(s, tmp_path / "inner")
    with zipfile.ZipFile(tmp_path / "upload.zip", "w") as zf:
        for p in (tmp_path / "inner").iterdir():
            zf.write(p, f"inner/{p.name}")
    r = load_scene(tmp_path / "upload.zip")
    assert r.name == "upload" and torch.equal(r.means, s.means)
    save_scene(s, tmp_path / "one.ply")
    with zipfile.ZipFile(tmp_path / "one.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(tmp_path / "one.ply", "deep/dir/one.ply")
    assert torch.equal(load_scene(tmp_path / "one.zip").means, s.means)


def test_zip_unsafe_or_oversized(tmp_path, monkeypatch):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as zf:
        zf.writestr("../../escape.ply", b"ply\n")
    expect_error(tmp_path / "evil.zip", "escape.ply")
    assert not (tmp_path.parent / "escape.ply").exists()
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.splat", b"\0" * 4096)
    from data.io import archive

    monkeypatch.setattr(archive, "MAX_ZIP_BYTES", 1000)
    expect_error(tmp_path / "bomb.zip", "zip")
    monkeypatch.undo()
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.writestr("readme.txt", b"hi")
    expect_error(tmp_path / "empty.zip", "zip")


# ---------------------------------------------------------------- malformed input
def test_malformed_ply(tmp_path):
    props = inria_props()
    row = [0.0] * 13 + [1, 0, 0, 0]
    good = ply_bytes(props, [row] * 4)
    cases = {
        "truncated.ply": (good[:-10], "vertex"),
        "no_rot3.ply": (ply_bytes(props[:-1], [row[:-1]]), "rot_3"),
        "bad_rest.ply": (ply_bytes(inria_props(1)[:-9] + props[-8:], [[0.0] * 11 + row[9:]]), "f_rest"),
        "no_end.ply": (b"ply\nformat binary_little_endian 1.0\n" + b"comment x\n" * 8000, "header"),
        "garbage.ply": (b"ply\n" + os.urandom(300) + b"end_header\n", "header"),
        "huge_count.ply": (good.replace(b"element vertex 4", b"element vertex 400000000"), "vertex"),
        "bad_type.ply": (good.replace(b"property float x", b"property float128 x"), "header"),
        "zero_quat.ply": (ply_bytes(props, [[0.0] * 17]), "quats"),
        "empty.ply": (ply_bytes(props, np.zeros((0, 17))), "empty"),
        "no_format.ply": (good.replace(b"format binary_little_endian 1.0\n", b""), "header"),
        "ascii_junk.ply": (ply_bytes(props, [row], "ascii").replace(b"0.0", b"abc", 1), "vertex"),
        "dup.ply": (good.replace(b"property float y", b"property float x"), "'x'"),
    }
    for name, (data, field) in cases.items():
        (tmp_path / name).write_bytes(data)
        expect_error(tmp_path / name, field)


def test_malformed_splat_npz_folder_and_unknown(tmp_path):
    (tmp_path / "odd.splat").write_bytes(b"\0" * 33)
    expect_error(tmp_path / "odd.splat", "records")
    (tmp_path / "empty.splat").write_bytes(b"")
    expect_error(tmp_path / "empty.splat", "records")
    rec = np.zeros(2, dtype=[("p", "<f4", 3), ("s", "<f4", 3), ("c", "u1", 4), ("r", "u1", 4)])
    rec["r"] = 255
    (tmp_path / "zero_scale.splat").write_bytes(rec.tobytes())
    expect_error(tmp_path / "zero_scale.splat", "scales")
    np.savez(tmp_path / "nopts.npz", rgb=np.zeros((3, 3)))
    expect_error(tmp_path / "nopts.npz", "xyz")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    expect_error(tmp_path / "corrupt.npz", "npz")
    (tmp_path / "scene.txt").write_text("hello")
    expect_error(tmp_path / "scene.txt", "format")

    s = random_scene(20, k=0)
    s.features["dino"] = (torch.randn(3, 2), torch.tensor([0, 1, 2]))
    variants = {
        "neg_scale": ("scale.npy", -np.ones((20, 3), np.float32), "scales"),
        "bad_shape": ("scale.npy", np.ones((20, 2), np.float32), "scales"),
        "logit_opacity": ("opacity.npy", np.full(20, 4.0, np.float32), "opacities"),
        "corrupt_npy": ("opacity.npy", b"\x93NUMPY garbage", "opacity"),
        "string_dtype": ("coord.npy", np.array(["a"] * 20), "coord"),
        "bad_index": ("dino_feat_index.npy", np.array([0, 1, 99], np.int32), "dino_feat_index"),
        "zero_quat": ("quat.npy", np.zeros((20, 4), np.float32), "quats"),
        "empty": ("coord.npy", np.zeros((0, 3), np.float32), "empty"),
    }
    for name, (fname, value, field) in variants.items():
        save_scene(s, tmp_path / name)
        if isinstance(value, bytes):
            (tmp_path / name / fname).write_bytes(value)
        else:
            np.save(tmp_path / name / fname, value)
        expect_error(tmp_path / name, field)
    save_scene(s, tmp_path / "no_quat")
    (tmp_path / "no_quat" / "quat.npy").unlink()
    expect_error(tmp_path / "no_quat", "quat")
    (tmp_path / "plain").mkdir()
    expect_error(tmp_path / "plain", "coord")


# ---------------------------------------------------------------- atomic writes
def test_failed_writes_leave_old_files_intact(tmp_path, monkeypatch):
    old, new = random_scene(20, k=0, seed=1), random_scene(30, k=0, seed=2)
    save_scene(old, tmp_path / "a.ply")
    save_scene(old, tmp_path / "a.splat")
    save_scene(old, tmp_path / "dir")
    import data.atomic as atomic
    import data.io.scenesplat as scenesplat

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    for target in ("a.ply", "a.splat", "dir"):
        with pytest.raises(OSError):
            save_scene(new, tmp_path / target)
    monkeypatch.undo()
    calls = []

    def save_then_die(file, arr):
        calls.append(file)
        if len(calls) == 3:
            raise OSError("killed mid-way")
        np.lib.format.write_array(open(file, "wb"), np.asanyarray(arr))

    monkeypatch.setattr(scenesplat.np, "save", save_then_die)
    with pytest.raises(OSError):
        save_scene(new, tmp_path / "dir")
    monkeypatch.undo()
    for target in ("a.ply", "a.splat", "dir"):
        assert torch.equal(load_scene(tmp_path / target).means.sort(0).values, old.means.sort(0).values)
    assert sorted(os.listdir(tmp_path)) == ["a.ply", "a.splat", "dir"]


def test_import_data_stays_cheap():
    code = "import data, data.io, data.geometry, sys; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)), check=True)
    assert out.stdout.strip() == "False"


def test_save_unknown_suffix(tmp_path):
    with pytest.raises(SceneFormatError, match="x.obj"):
        save_scene(random_scene(3, k=0), tmp_path / "x.obj")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_scene(random_scene(3, k=0), tmp_path / "quiet.ply")
        load_scene(tmp_path / "quiet.ply")  # a clean file loads without any warning
