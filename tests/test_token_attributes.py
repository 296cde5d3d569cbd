"""benchmarks/token_attributes.py: token-to-object matching, the class prior, and probes that read an attribute
planted in the token inputs but not one that is absent."""

import json

import pytest
import torch

from benchmarks.token_attributes import class_majority, main, match_tokens
from chorus_qa.feature_cache import FeatureCache
from chorus_qa.scene_tokens import basic_color_names
from data.synth import generate_room
from data.synth.classes import MATERIALS
from encoder.label_sets import get_label_set


def _obj(cls, centre):
    return {"class": cls, "box": {"center": list(centre)}}


def test_match_tokens_takes_the_nearest_object_of_the_tokens_class_within_reach():
    objects = [_obj("chair", (0, 0, 0)), _obj("chair", (1, 0, 0)), _obj("table", (0.1, 0, 0))]
    centres = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    # the second token sits on the table but is a chair: it takes chair 0, not the nearer table
    assert match_tokens(["chair", "chair", "chair", None], centres, objects, 0.5) == [1, 0, None, None]
    assert match_tokens(["table"], torch.tensor([[0.0, 0.0, 0.6]]), objects, 0.5) == [None]  # 0.61 m away


def test_class_majority_is_the_most_common_value_per_class_ties_to_the_smaller():
    classes, values = torch.tensor([0, 0, 0, 1, 1, 2, 2]), torch.tensor([3, 3, 1, 2, 0, 5, 4])
    assert class_majority(classes, values, torch.tensor([0, 1, 2, 7])).tolist() == [3, 0, 4, -1]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Synthetic rooms whose cached token "features" hold the object's material (one-hot) and nothing of its size."""
    root = tmp_path_factory.mktemp("attrs")
    names, colours = get_label_set("synth"), basic_color_names()
    store = FeatureCache(root / "feature_cache", "enc_objects")
    gen = torch.Generator().manual_seed(0)
    qa = {"train": [], "val": []}
    for seed in range(16):
        split = "val" if seed >= 12 else "train"
        sid = f"room{seed:02d}"
        _, scene = generate_room(seed, density=0.05)
        (root / "scenes" / sid).mkdir(parents=True)
        (root / "scenes" / sid / "scene.json").write_text(json.dumps(scene))
        qa[split].append({"scene_id": sid, "question_id": f"{split}-{sid}", "question": "what kind of room is this?",
                          "answers": [scene["room"]["type"]], "object_ids": [], "object_names": [], "type": "room_type"})
        objs = [o for o in scene["objects"] if not o.get("structural")][:32]
        k, n = 32, len(objs)
        cells = torch.randn(1, k, 16, generator=gen) * 0.3
        cells[0, n:] = 0
        for i, o in enumerate(objs):
            cells[0, i, list(MATERIALS).index(o["material"])] += 2.0
        geometry = torch.zeros(1, k, 10)
        geometry[0, :n] = torch.randn(n, 10, generator=gen) + 0.1
        centres = torch.zeros(1, k, 3)
        centres[0, :n] = torch.tensor([o["box"]["center"] for o in objs]) + 0.05
        labels = torch.full((1, k), -1)
        labels[0, :n] = torch.tensor([names.index(o["class"]) for o in objs])
        color_ids = torch.full((1, k), -1)
        color_ids[0, :n] = torch.tensor([colours.index(o["color"]) for o in objs])
        store.save_tensors(sid, {"cells": cells, "geometry": geometry, "positions": centres.clone(), "centres": centres,
                                 "labels": labels, "color_ids": color_ids})
    (root / "qa").mkdir()
    for split, rows in qa.items():
        (root / "qa" / f"ScanQA_v1.0_{split}.json").write_text(json.dumps(rows))
    out = root / "result.json"
    assert main(["--data", str(root), "--pooled", str(root / "feature_cache" / "enc_objects"), "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_a_planted_attribute_is_read_and_an_absent_one_is_not(planted):
    acc = planted["accuracy_percent"]
    assert planted["train_scenes"] == 12 and planted["val_scenes"] == 4
    assert acc["material"]["val_tokens"] >= 10
    assert acc["material"]["features"] >= 95 > acc["material"]["class_majority"]
    assert acc["material"]["geometry"] < 70  # the geometry columns are noise
    # size is in none of the inputs: the probes stay below a perfect read, near the class prior
    assert acc["size_word"]["features"] < 75 and acc["size_word"]["geometry"] < 75
    assert acc["color"]["color_word"] == 100.0  # the cached colour words are the objects' own colours
