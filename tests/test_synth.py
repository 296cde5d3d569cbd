"""Synthetic world: geometry invariants, labels, determinism, splat orientation, dataset layout."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from matplotlib.path import Path as MplPath

from data.synth import CLASS_NAMES, generate_room
from data.synth.classes import OBJECT_CLASSES, ROOM_TYPES, STRUCTURE_CLASSES
from data.synth.splats import frame_to_quat

DENSITY = 0.05


@pytest.fixture(scope="module")
def rooms():
    out = []
    for k, rt in enumerate(ROOM_TYPES):
        for shape in ("rect", "L") if rt != "bathroom" else ("rect",):
            out.append(generate_room(100 + k * 7 + len(shape), density=DENSITY, room_type=rt, shape=shape))
    out += [generate_room(s, density=DENSITY) for s in range(6)]
    return out


def _box_points(box, n, rng, shrink=0.003):
    """Uniform points inside a yaw-rotated box shrunk by ``shrink`` on every side, plus its corners."""
    size = np.asarray(box["size"]) / 2 - shrink
    local = rng.uniform(-1, 1, (n, 3)) * size
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * size
    local = np.concatenate([local, corners])
    c, s = math.cos(box["yaw"]), math.sin(box["yaw"])
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return local @ R.T + np.asarray(box["center"])


def _inside(box, pts, shrink=0.003):
    c, s = math.cos(box["yaw"]), math.sin(box["yaw"])
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    local = (pts - np.asarray(box["center"])) @ R
    return (np.abs(local) < np.asarray(box["size"]) / 2 - shrink).all(1)


def _edge_points(box, n=40):
    """Points along the 12 edges of a box (thin overlaps of corners/edges are caught by these)."""
    size = np.asarray(box["size"]) / 2 - 0.003
    t = np.linspace(-1, 1, n)
    pts = []
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        for s1 in (-1, 1):
            for s2 in (-1, 1):
                p = np.zeros((n, 3))
                p[:, axis] = t
                p[:, others[0]] = s1
                p[:, others[1]] = s2
                pts.append(p)
    local = np.concatenate(pts) * size
    c, s = math.cos(box["yaw"]), math.sin(box["yaw"])
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return local @ R.T + np.asarray(box["center"])


def test_class_library_has_30_scannet_classes():
    assert len(OBJECT_CLASSES) >= 30
    assert set(STRUCTURE_CLASSES) <= set(CLASS_NAMES)
    assert len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    for name in ("chair", "table", "desk", "couch", "bed", "cabinet", "bookshelf", "lamp", "monitor", "tv", "plant",
                 "toilet", "sink", "refrigerator", "pillow", "box", "backpack", "bottle", "cup", "keyboard", "trash can",
                 "picture", "curtain", "door", "window"):
        assert name in CLASS_NAMES


def test_objects_do_not_interpenetrate(rooms):
    rng = np.random.default_rng(0)
    for scene, meta in rooms:
        objs = [o for o in meta["objects"] if o["class"] not in ("wall", "floor", "ceiling")]
        for i, a in enumerate(objs):
            pa = np.concatenate([_box_points(a["box"], 300, rng), _edge_points(a["box"])])
            for b in objs[i + 1:]:
                if a.get("support") == b["id"] or b.get("support") == a["id"]:
                    continue
                pb = np.concatenate([_box_points(b["box"], 300, rng), _edge_points(b["box"])])
                hit = _inside(b["box"], pa).any() or _inside(a["box"], pb).any()
                assert not hit, f"{meta['scene_id']}: {a['class']} #{a['id']} overlaps {b['class']} #{b['id']}"


def test_objects_inside_room(rooms):
    for scene, meta in rooms:
        poly = MplPath(np.asarray(meta["room"]["polygon"]))
        for o in meta["objects"]:
            if o.get("structural"):
                continue
            pts = _box_points(o["box"], 50, np.random.default_rng(1))
            inside = poly.contains_points(pts[:, :2])
            assert inside.all(), f"{meta['scene_id']}: {o['class']} #{o['id']} leaves the room polygon"
            assert o["box"]["center"][2] + o["box"]["size"][2] / 2 <= meta["room"]["height"]


def test_supported_objects_rest_on_their_support(rooms):
    n_supported = 0
    for scene, meta in rooms:
        byid = {o["id"]: o for o in meta["objects"]}
        for o in meta["objects"]:
            if o.get("support") is None:
                continue
            n_supported += 1
            sup = byid[o["support"]]
            ts = sup["top_surface"]
            bottom = o["box"]["center"][2] - o["box"]["size"][2] / 2
            assert bottom == pytest.approx(ts["z"], abs=1e-5), (meta["scene_id"], o["class"], sup["class"])
            # footprint corners inside the support's top rectangle
            b = o["box"]
            c, s = math.cos(b["yaw"]), math.sin(b["yaw"])
            w, d = b["size"][0] / 2, b["size"][1] / 2
            corners = np.array([[x * c - y * s, x * s + y * c] for x in (-w, w) for y in (-d, d)]) + b["center"][:2]
            cs, ss = math.cos(ts["yaw"]), math.sin(ts["yaw"])
            local = (corners - ts["center"]) @ np.array([[cs, -ss], [ss, cs]])
            assert (np.abs(local) <= np.asarray(ts["size"]) / 2 + 1e-6).all(), (meta["scene_id"], o["class"], sup["class"])
    assert n_supported > 10


def test_every_gaussian_labelled_and_consistent(rooms):
    for scene, meta in rooms:
        assert scene.class_names == CLASS_NAMES
        sem, inst = scene.semantic.numpy(), scene.instance.numpy()
        assert (sem >= 0).all() and (inst >= 0).all()
        cls_of = {o["id"]: o["class_id"] for o in meta["objects"]}
        assert set(np.unique(inst)) <= set(cls_of)
        expected = np.array([cls_of[i] for i in inst])
        assert (expected == sem).all()
        for o in meta["objects"]:
            assert CLASS_NAMES[o["class_id"]] == o["class"]
            assert o["class"] in o["caption"] and (o.get("structural") or o["color"] in o["caption"])
            assert (inst == o["id"]).sum() > 0, f"{o['class']} #{o['id']} has no Gaussians"


def test_room_types_have_their_furniture(rooms):
    signature = {"bedroom": "bed", "bathroom": "toilet", "kitchen": "refrigerator", "office": "desk",
                 "living room": "couch", "dining room": "table"}
    shapes = set()
    for scene, meta in rooms:
        rt = meta["room"]["type"]
        shapes.add(meta["room"]["shape"])
        classes = {o["class"] for o in meta["objects"]}
        assert signature[rt] in classes, (meta["scene_id"], rt)
        assert sum(o["class"] == "door" for o in meta["objects"]) == 1
    assert shapes == {"rect", "L"}


def test_deterministic_from_seed():
    a, ma = generate_room(11, density=DENSITY)
    b, mb = generate_room(11, density=DENSITY)
    c, mc = generate_room(12, density=DENSITY)
    assert json.dumps(ma) == json.dumps(mb)
    for f in ("means", "quats", "scales", "opacities", "colors", "semantic", "instance"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert json.dumps(ma) != json.dumps(mc)


def test_splats_are_flat_and_aligned_with_normals(rooms):
    scene, _ = rooms[0]
    q = scene.quats.numpy().astype(np.float64)
    assert np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5) and (q[:, 0] >= 0).all()
    w, x, y, z = q.T
    # third column of R(q), written out independently
    col3 = np.stack([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)], 1)
    n = scene.normals.numpy()
    s = scene.scales.numpy()
    flat = s[:, 2] < 0.5 * s[:, :2].min(1)
    assert flat.mean() > 0.95  # floaters are the rest
    cos = np.abs((col3 * n).sum(1))
    assert (cos[flat] > 0.999).mean() > 0.999
    assert 0.0 < scene.opacities.min() and scene.opacities.max() <= 1.0
    assert (scene.opacities < 0.5).float().mean() > 0.05  # faint splats exist


def test_frame_to_quat_round_trip():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(500, 3, 3))
    Q, _ = np.linalg.qr(A)
    Q[np.linalg.det(Q) < 0, :, 2] *= -1
    q = frame_to_quat(Q[:, :, 0], Q[:, :, 1], Q[:, :, 2])
    w, x, y, z = q.T
    R = np.stack([np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], 1),
                  np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], 1),
                  np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1)], 1)
    assert np.allclose(R, Q, atol=1e-9)


def test_density_controls_gaussian_count():
    lo, _ = generate_room(3, density=0.3, room_type="bedroom", shape="rect")
    hi, _ = generate_room(3, density=1.2, room_type="bedroom", shape="rect")
    assert 15_000 <= len(lo) < len(hi) <= 200_000
    assert len(hi) / len(lo) > 3


def test_dataset_layout_and_round_trip(tmp_path):
    import data
    from data.synth import generate_dataset

    out = tmp_path / "w"
    summary = generate_dataset(out, 5, seed=3, density=0.03, ply=True, progress=False)
    ids = [f"synth03_{i:04d}" for i in range(5)]
    assert summary["scene_ids"] == ids
    splits = {s: (out / "splits" / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert sorted(sum(splits.values(), [])) == ids
    assert not (set(splits["train"]) & set(splits["val"])) and not (set(splits["train"]) & set(splits["test"]))
    assert not (set(splits["val"]) & set(splits["test"]))
    classes = json.loads((out / "classes.json").read_text())
    assert classes["class_names"] == CLASS_NAMES and set(classes["colors"]) == set(CLASS_NAMES)
    sid = ids[0]
    scene = data.load_scene(out / "scenes" / sid)
    meta = json.loads((out / "scenes" / sid / "scene.json").read_text())
    assert meta["scene_id"] == sid and len(scene) == summary["gaussians"][sid]
    assert scene.class_names == CLASS_NAMES
    ref, _ = generate_room(3 * 1_000_003, density=0.03, scene_id=sid)
    assert torch.equal(scene.instance, ref.instance) and torch.equal(scene.semantic, ref.semantic)
    assert torch.allclose(scene.means, ref.means)
    assert (out / "scenes" / f"{sid}.ply").exists()
    for split in ("train", "val", "test"):
        scanqa = json.loads((out / "qa" / f"ScanQA_v1.0_{split}.json").read_text())
        for q in scanqa:
            assert set(q) >= {"scene_id", "question_id", "question", "answers", "object_ids", "object_names", "type"}
            assert q["scene_id"] in splits[split]
        qf = json.loads((out / "qa" / "SQA3D" / f"v1_balanced_questions_{split}_scannetv2.json").read_text())
        af = json.loads((out / "qa" / "SQA3D" / f"v1_balanced_sqa_annotations_{split}_scannetv2.json").read_text())
        assert [q["question_id"] for q in qf["questions"]] == [a["question_id"] for a in af["annotations"]]
        for q, a in zip(qf["questions"], af["annotations"]):
            assert q["situation"] and q["scene_id"] in splits[split] and a["answers"][0]["answer"]
            assert set(a["position"]) == {"x", "y", "z"} and set(a["rotation"]) == {"_x", "_y", "_z", "_w"}
    assert len(json.loads((out / "qa" / "ScanQA_v1.0_train.json").read_text())) > 20


def test_cli_help_runs():
    from data.synth.cli import build_parser

    args = build_parser().parse_args(["--out", "x", "--scenes", "3", "--workers", "2", "--ply"])
    assert args.scenes == 3 and args.workers == 2 and args.ply and args.density == 1.0
