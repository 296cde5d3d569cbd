"""`chorus eval`: protocol runners against oracles, label mapping, and the CLI end to end on tiny rooms."""

import json

import numpy as np
import pytest
import torch

from data import GaussianScene, save_scene
from encoder.evaluate import main, map_labels, markdown_table, run_instance, run_zeroshot


class FakeText:
    """One basis vector per class name (prompts end with the name)."""

    def __init__(self, names):
        self.names = names

    def encode(self, texts):
        return torch.stack([torch.eye(len(self.names))[[i for i, n in enumerate(self.names) if t.endswith(n)][-1]] for t in texts])


def toy_scene(seed: int) -> GaussianScene:
    g = torch.Generator().manual_seed(seed)
    inst = torch.arange(400) // 100
    sem = torch.tensor([0, 1, 2, 1])[inst]
    means = torch.tensor([[0, 0, 0], [3, 0, 0], [0, 3, 0], [3, 3, 0.0]])[inst] + 0.2 * torch.rand(400, 3, generator=g)
    q = torch.zeros(400, 4)
    q[:, 0] = 1
    return GaussianScene(means=means, quats=q, scales=torch.full((400, 3), 0.02), opacities=torch.ones(400),
                         colors=torch.rand(400, 3, generator=g), semantic=sem, instance=inst,
                         class_names=["floor", "chair", "table"], name=f"toy{seed}")


def test_map_labels_by_name():
    sem = torch.tensor([0, 1, 2, -1, 3])
    assert map_labels(sem, ["wall", "Chair", "sofa_bed", "lamp"], ["chair", "wall", "sofa bed"]).tolist() == [1, 0, 2, -1, -1]
    assert map_labels(sem, ["a", "b"], ["a", "b"]).tolist() == sem.tolist()


def test_zeroshot_runner_oracle_features_score_perfectly_with_and_without_voting():
    names = ["floor", "chair", "table"]
    scenes = [toy_scene(0), toy_scene(1)]
    oracle = lambda s: torch.eye(3)[s.semantic] + 0.01  # noqa: E731
    m = run_zeroshot(scenes, oracle, names, FakeText(names))
    assert m["miou"] == pytest.approx(1.0) and m["f_miou"] == pytest.approx(1.0) and m["scenes"] == 2
    voted = toy_scene(2)
    voted.eval_points = (voted.means[::7] + 0.01, voted.semantic[::7])
    assert run_zeroshot([voted], oracle, names, FakeText(names))["miou"] == pytest.approx(1.0)
    wrong = lambda s: torch.eye(3)[(s.semantic + 1) % 3]  # noqa: E731
    assert run_zeroshot([toy_scene(0)], wrong, names, FakeText(names))["miou"] == 0.0


def test_instance_runner_oracle_features_find_every_object():
    names = ["floor", "chair", "table"]
    m = run_instance([toy_scene(0)], lambda s: torch.eye(4)[s.instance], lambda s: torch.eye(3)[s.semantic], names, FakeText(names))
    assert m["map50"] == pytest.approx(1.0) and m["classes_evaluated"] == ["chair", "table"]


def test_markdown_table_formats_percentages():
    md = markdown_table([{"model": "m", "miou": 0.1234, "f_miou": float("nan")}], ["model", "miou", "f_miou"])
    assert "| m | 12.3 | - |" in md


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from data.synth import generate_room
    from encoder.config import EncoderConfig
    from encoder.heads import HeadsConfig, MultiTeacherHeads
    from encoder.ptv3 import ChorusEncoder

    root = tmp_path_factory.mktemp("evalds")
    ids = [f"room{i}" for i in range(3)]
    for i, sid in enumerate(ids):
        scene, _ = generate_room(10 + i, density=0.03, scene_id=sid)
        save_scene(scene, root / "scenes" / sid)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("room0\nroom1\n")
    (root / "splits" / "val.txt").write_text("room2\n")
    torch.manual_seed(0)
    enc = ChorusEncoder(EncoderConfig.small(channels=(16, 32), depths=(1, 1), heads=(2, 4), patch_size=64, grid_size=0.1))
    enc.save_pretrained(root / "ckpt" / "encoder")
    MultiTeacherHeads(HeadsConfig(in_dim=enc.out_dim, teacher_dims={"caption_minilm": 384, "instance_mask": 16})).save_pretrained(root / "ckpt" / "heads")
    return root


def test_eval_cli_end_to_end_on_tiny_rooms(tiny_dataset, tmp_path):
    root = tiny_dataset
    common = ["--checkpoint", str(root / "ckpt"), "--data", str(root), "--threads", "1"]
    assert main(["zeroshot", *common, "--out", str(tmp_path / "zs")]) == 0
    rec = json.loads((tmp_path / "zs" / "metrics.json").read_text())
    assert rec["eval_scenes"] == ["room2"] and rec["language_head"] == "caption_minilm"
    assert 0.0 <= rec["metrics"]["allacc"] <= 1.0 and "f_miou" in rec["metrics"]
    assert (tmp_path / "zs" / "room2_labels.png").stat().st_size > 10_000
    assert "f_miou" in (tmp_path / "zs" / "metrics.md").read_text()

    assert main(["instance", *common, "--out", str(tmp_path / "inst")]) == 0
    m = json.loads((tmp_path / "inst" / "metrics.json").read_text())["metrics"]
    assert 0.0 <= m["map50"] <= m["map25"] <= 1.0 and m["proposals_per_scene"] > 0

    assert main(["probe", *common, "--out", str(tmp_path / "probe"), "--epochs", "3", "--decoder-epochs", "1"]) == 0
    m = json.loads((tmp_path / "probe" / "metrics.json").read_text())["metrics"]
    assert set(m) == {"linear", "decoder"} and all(0.0 <= v["miou"] <= 1.0 for v in m.values())

    assert main(["data-efficient", *common, "--out", str(tmp_path / "de"), "--epochs", "2", "--seeds", "0",
                 "--fractions", "0.5", "--points", "20"]) == 0
    m = json.loads((tmp_path / "de" / "metrics.json").read_text())["metrics"]
    assert m["limited_scenes"][0]["scenes"] == 1 and (tmp_path / "de" / "data_efficient.png").is_file()


def test_eval_cli_random_baseline_and_bad_source(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="exactly one model source"):
        main(["probe", "--data", str(tiny_dataset), "--out", str(tmp_path)])
