"""benchmarks/color_names.py: the naming rules on known colours, and a one-room run."""

import json

import pytest
import torch

from benchmarks.color_names import main, name_objects
from chorus_qa.scene_tokens import basic_color_names
from tests.test_object_tokens import srgb_dimmed as dimmed


def test_shading_rule_names_a_shaded_white_object_white_where_the_plain_vote_says_gray():
    names = basic_color_names()
    white = torch.tensor([236, 236, 232]) / 255
    red = torch.tensor([196, 40, 36]) / 255
    colours = torch.cat([white.repeat(40, 1), dimmed(white.repeat(60, 1), 0.4), red.repeat(50, 1)])
    instance = torch.cat([torch.full((100,), 7), torch.full((50,), 3)])
    got = name_objects(colours, instance, shadings=(0.4,))
    assert set(got) == {"vote_lab", "mean_lab", "mean_rgb", "vote_lab_shading0.4"}
    assert names[got["vote_lab"][7]] == "gray" and names[got["vote_lab_shading0.4"][7]] == "white"
    assert names[got["vote_lab"][3]] == "red" and names[got["vote_lab_shading0.4"][3]] == "red"


def test_one_room_run_scores_every_rule_on_the_same_objects(tmp_path):
    out = tmp_path / "cn.json"
    assert main(["--rooms", "1", "--shading", "0.5", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["shading"] == [0.5] and set(result["rules"]) == {"vote_lab", "mean_lab", "mean_rgb", "vote_lab_shading0.5"}
    counts = {(r["n_all"], r["n_objects"]) for r in result["rules"].values()}
    assert len(counts) == 1 and next(iter(counts))[1] > 0
    assert all(0 <= r["accuracy_objects"] <= 1 for r in result["rules"].values())
    with pytest.raises(SystemExit):
        main(["--rooms", "1", "--shading", "0", "--out", str(out)])
