"""benchmarks/material_texture.py: texture statistics of ground-truth objects read from a room folder, and the probe run."""

import json

import pytest
import torch

from benchmarks.material_texture import main, object_textures
from data.io import save_scene
from data.synth import generate_room
from tests.test_object_tokens import texture_reference


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    root = tmp_path_factory.mktemp("material")
    ids = {"train": [], "val": []}
    for seed in range(9):
        sid = f"room{seed:02d}"
        gaussians, scene = generate_room(seed, density=0.05)
        save_scene(gaussians, root / "scenes" / sid)
        (root / "scenes" / sid / "scene.json").write_text(json.dumps(scene))
        ids["val" if seed >= 6 else "train"].append(sid)
    (root / "splits").mkdir()
    for split, names in ids.items():
        (root / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def test_each_object_gets_the_statistics_of_its_own_gaussians(rooms):
    from data import load_scene

    sid = rooms / "scenes" / "room00"
    scene, meta = load_scene(sid), json.loads((sid / "scene.json").read_text())
    rows = object_textures(sid, min_gaussians=30)
    objects = [o for o in meta["objects"] if not o.get("structural") and int((scene.instance == o["id"]).sum()) >= 30]
    assert len(rows) == len(objects) >= 3
    for (cls, material, stats), o in zip(rows, objects):
        assert (cls, material) == (o["class"], o["material"])
        reference = texture_reference(torch.as_tensor(scene.colors)[torch.as_tensor(scene.instance) == o["id"]])
        assert torch.allclose(stats.double(), torch.tensor(reference), atol=1e-3)
    # objects under the size floor are left out
    assert object_textures(sid, min_gaussians=10**6) == []


def test_main_writes_the_prior_and_both_probes(rooms, tmp_path):
    out = tmp_path / "material.json"
    assert main(["--data", str(rooms), "--train-scenes", "6", "--val-scenes", "3", "--out", str(out)]) == 0
    acc = json.loads(out.read_text())["accuracy_percent"]
    assert acc["train_objects"] > 0 and acc["val_objects"] > 0 and acc["materials"] == 8
    assert all(0 <= acc[k] <= 100 for k in ("class_majority", "linear", "mlp"))
    with pytest.raises(SystemExit, match="splits"):
        main(["--data", str(tmp_path), "--train-scenes", "1"])
