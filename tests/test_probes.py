"""Decoder probe, data-efficient protocol and kNN voting on toy scenes."""

import numpy as np
import pytest
import torch

from encoder.data_efficient import DataEfficientConfig, limit_annotations, pick_scenes, run_data_efficient
from encoder.decoder_probe import DecoderProbeConfig, evaluate_decoder_probe, knn_indices, train_decoder_probe
from encoder.probe import LinearProbeConfig, evaluate_probe, lovasz_softmax, train_linear_probe
from encoder.zeroshot import knn_vote


def test_knn_indices_match_brute_force():
    xyz = torch.rand(60, 3, generator=torch.Generator().manual_seed(0))
    idx = knn_indices(xyz, 5)
    d = torch.cdist(xyz, xyz)
    d.fill_diagonal_(float("inf"))
    brute = d.topk(5, largest=False).indices
    assert torch.equal(idx.sort(1).values, brute.sort(1).values)


def test_knn_vote_on_toy_scene_matches_brute_force_majority():
    g = torch.Generator().manual_seed(1)
    src = torch.rand(200, 3, generator=g)
    labels = (src[:, 0] > 0.5).long() + 2 * (src[:, 1] > 0.5).long()
    labels[torch.rand(200, generator=g) < 0.1] = -1  # rejected points do not vote
    query = torch.rand(50, 3, generator=g)
    got = knn_vote(src, labels, query, k=7, num_classes=4)
    nearest = torch.cdist(query, src).topk(7, largest=False).indices
    for q in range(50):
        votes = labels[nearest[q]]
        votes = votes[votes >= 0]
        expected = -1 if len(votes) == 0 else int(torch.bincount(votes, minlength=4).argmax())
        assert int(got[q]) == expected
    # far from the quadrant borders the vote recovers the quadrant label
    inner = ((query[:, :2] - 0.5).abs() > 0.15).all(1)
    truth = (query[:, 0] > 0.5).long() + 2 * (query[:, 1] > 0.5).long()
    assert (got[inner] == truth[inner]).float().mean() > 0.9


def test_lovasz_softmax_of_hard_predictions_is_one_minus_iou_by_counting():
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 5, (300,), generator=g)
    pred = torch.randint(0, 6, (300,), generator=g)
    pred[:120] = labels[:120]
    loss = lovasz_softmax(torch.eye(6)[pred], labels)
    ious = [((pred == c) & (labels == c)).sum() / ((pred == c) | (labels == c)).sum() for c in labels.unique()]
    assert loss.item() == pytest.approx(1.0 - float(torch.stack(ious).mean()), abs=1e-6)
    assert lovasz_softmax(torch.eye(6)[labels], labels).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="expected"):
        lovasz_softmax(torch.eye(6)[pred], labels[:10])


def test_probe_class_weights_and_lovasz_move_the_boundary_towards_the_rare_class():
    """1-D: 2000 points of class 0 around 0, 100 of class 1 around 1.5 (unit noise). Plain cross-entropy puts
    the boundary near 0.75 + ln(20) / 1.5 = 2.75, so it recalls few of the rare class; weights count^-1
    move it to the midpoint 0.75 (expected rare recall ~0.77). The IoU surrogate raises the mean IoU over the
    two classes, which it stands in for, by recalling more of the rare class."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(2000, 1, generator=g), 1.5 + torch.randn(100, 1, generator=g)])
    y = torch.cat([torch.zeros(2000, dtype=torch.long), torch.ones(100, dtype=torch.long)])
    base = dict(epochs=30, batch_size=512, lr=0.05)
    recall, miou = {}, {}
    for name, over in {"ce": {}, "balanced": {"class_weight_power": 1.0}, "lovasz": {"lovasz_weight": 1.0}}.items():
        pred = train_linear_probe(x, y, 2, LinearProbeConfig(**base, **over)).predict(x)
        recall[name] = float((pred[y == 1] == 1).float().mean())
        miou[name] = float(sum(((pred == c) & (y == c)).sum() / ((pred == c) | (y == c)).sum() for c in (0, 1))) / 2
    assert recall["ce"] < 0.35
    assert 0.6 < recall["balanced"] < 0.95
    assert recall["lovasz"] > recall["ce"] + 0.05 and miou["lovasz"] > miou["ce"] + 0.03
    with pytest.raises(ValueError, match="must be >= 0"):
        LinearProbeConfig(class_weight_power=-1.0)


def noisy_neighbourhood_scene(seed: int, n: int = 1000):
    """Labels are spatial stripes; each point's feature is a weak class signal under strong noise,
    so a single point is ambiguous but its neighbourhood average is not."""
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=g) * torch.tensor([3.0, 1.0, 1.0])
    labels = (xyz[:, 0] // 1.0).long().clamp(max=2)
    feats = 0.6 * torch.eye(3)[labels] @ torch.randn(3, 12, generator=torch.Generator().manual_seed(7)) + torch.randn(n, 12, generator=g)
    return xyz, feats, labels


def test_decoder_probe_uses_neighbourhood_context():
    train = [noisy_neighbourhood_scene(s) for s in range(2)]
    val = [noisy_neighbourhood_scene(s) for s in (10,)]
    knn_train = [knn_indices(x, 16) for x, _, _ in train]
    knn_val = [knn_indices(x, 16) for x, _, _ in val]
    cfg = DecoderProbeConfig(hidden=32, epochs=6, batch_size=512, lr=1e-2)
    dec = train_decoder_probe([f for _, f, _ in train], knn_train, [y for _, _, y in train], 3, cfg)
    dec_m = evaluate_decoder_probe(dec, [f for _, f, _ in val], knn_val, [y for _, _, y in val], 3)
    lin = train_linear_probe(torch.cat([f for _, f, _ in train]), torch.cat([y for _, _, y in train]), 3, LinearProbeConfig(epochs=10))
    lin_m = evaluate_probe(lin, [f for _, f, _ in val], [y for _, _, y in val], 3)
    assert dec_m["miou"] > lin_m["miou"] + 0.1
    assert dec_m["miou"] > 0.7


def test_subsets_for_the_data_efficient_protocol():
    assert pick_scenes(10, 0.01, 0) == pick_scenes(10, 0.01, 0) and len(pick_scenes(10, 0.01, 0)) == 1
    assert len(pick_scenes(10, 0.2, 3)) == 2 and len(set(pick_scenes(100, 0.2, 3))) == 20
    y = torch.tensor([0, 1, -1, 2, 2, 1, -1, 0])
    lim = limit_annotations(y, 3, seed=0)
    kept = lim >= 0
    assert int(kept.sum()) == 3 and torch.equal(lim[kept], y[kept]) and bool((y[kept] >= 0).all())
    assert int((limit_annotations(y, 100, 0) >= 0).sum()) == 6


def test_run_data_efficient_on_separable_toy_features():
    g = torch.Generator().manual_seed(0)

    def scene():
        y = torch.randint(0, 3, (120,), generator=g)
        return torch.eye(3)[y] * 3 + 0.3 * torch.randn(120, 3, generator=g), y

    train = [scene() for _ in range(10)]
    val = [scene()]
    cfg = DataEfficientConfig(scene_fractions=(0.1, 0.2), points_per_scene=(20,), seeds=(0,),
                              probe=LinearProbeConfig(epochs=5, batch_size=256, lr=0.05), min_steps=100)
    res = run_data_efficient([f for f, _ in train], [y for _, y in train], [f for f, _ in val], [y for _, y in val], 3, cfg)
    assert [r["scenes"] for r in res["limited_scenes"]] == [1, 2]
    assert len(res["limited_annotations"]) == 1 and len(res["limited_annotations"][0]["runs"]) == 1
    assert res["full"] > 0.95, res
    assert all(r["miou"] > 0.85 for r in res["limited_scenes"] + res["limited_annotations"])


def test_full_finetune_learns_a_toy_room_and_trains_the_encoder():
    from data import GaussianScene
    from encoder.config import EncoderConfig
    from encoder.finetune import FinetuneConfig, finetune, predict
    from encoder.ptv3 import ChorusEncoder

    g = torch.Generator().manual_seed(0)
    n = 600
    labels = torch.arange(n) % 3
    means = torch.rand(n, 3, generator=g) + labels[:, None] * torch.tensor([1.5, 0.0, 0.0])
    colors = torch.eye(3)[labels] * 0.8 + 0.1
    q = torch.zeros(n, 4)
    q[:, 0] = 1
    scene = GaussianScene(means=means, quats=q, scales=torch.full((n, 3), 0.03), opacities=torch.ones(n), colors=colors)
    enc = ChorusEncoder(EncoderConfig.small(channels=(16, 32), depths=(1, 1), heads=(2, 4), patch_size=64, grid_size=0.1, drop_path=0.0))
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    model, log = finetune(enc, [scene], [labels], 3, FinetuneConfig(steps=30, lr=1e-2, max_points=500), progress=False)
    assert np.mean([r["loss"] for r in log[-5:]]) < 0.5 * np.mean([r["loss"] for r in log[:5]])
    assert (predict(model, scene) == labels).float().mean() > 0.9
    assert any(not torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())


def test_teacher_ceiling_rows_align_each_teacher_on_the_gaussians_all_of_them_reached():
    import benchmarks.pretrain_probe as mod  # a namespace package: the repository root is on sys.path

    # teacher a reached Gaussians 0, 1, 3 (in that row order), teacher b reached 4, 3, 1: both reached 1 and 3
    a = (torch.tensor([[10.0], [11.0], [13.0]]), torch.tensor([0, 1, 3]))
    b = (torch.tensor([[24.0, 0], [23.0, 0], [21.0, 0]]), torch.tensor([4, 3, 1]))
    scene = type("S", (), {"features": {"a": a, "b": b}, "semantic": torch.tensor([5, 6, 7, 8, 9]), "__len__": lambda self: 5})()
    rows, labels = mod.lifted_rows(scene, ["a", "b"])
    assert labels.tolist() == [6, 8]
    assert rows[0][:, 0].tolist() == [11.0, 13.0] and rows[1][:, 0].tolist() == [21.0, 23.0]


def test_voxel_mean_averages_exactly_the_rows_of_each_voxel():
    import benchmarks.pretrain_probe as mod

    means = torch.tensor([[0.01, 0.01, 0.01], [0.04, 0.02, 0.0], [0.06, 0.0, 0.0], [0.01, 0.09, 0.0], [0.07, 0.03, 0.01]])
    feats = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 0.0], [7.0, 1.0], [9.0, 4.0]])
    out = mod.voxel_mean(means, feats, 0.05)  # voxels: {0, 1}, {2, 4}, {3}
    assert torch.allclose(out, torch.tensor([[2.0, 1.0], [2.0, 1.0], [7.0, 2.0], [7.0, 1.0], [7.0, 2.0]]))
    assert torch.equal(mod.voxel_mean(means, feats, 0.001), feats)  # every point alone in its voxel


def test_pretrain_probe_vocab_flags_set_only_the_language_teacher(tmp_path):
    import argparse

    import benchmarks.pretrain_probe as mod
    from encoder.pretrain import PretrainConfig

    args = argparse.Namespace(config=str(mod.ROOT / "configs" / "pretrain_synth.yaml"), work=tmp_path, steps=10, max_points=100,
                              init_from=None, vocab="scannet200", vocab_weight=0.4)
    cfg = mod.pretrain_config(args, tmp_path / "data")
    assert [(t.name, t.vocab, t.vocab_weight) for t in cfg.teachers if t.vocab != "none"] == [(mod.LANGUAGE_TEACHER, "scannet200", 0.4)]
    off = mod.pretrain_config(argparse.Namespace(**{**vars(args), "vocab": "none", "vocab_weight": None}), tmp_path)
    assert all(t.vocab == "none" for t in off.teachers)
    as_configured = mod.pretrain_config(argparse.Namespace(**{**vars(args), "vocab": None, "vocab_weight": None}), tmp_path)
    assert as_configured.teachers == PretrainConfig.from_yaml(args.config).teachers
    d = PretrainConfig.from_yaml(args.config).to_dict()
    d["teachers"] = [t for t in d["teachers"] if t["name"] != mod.LANGUAGE_TEACHER]
    PretrainConfig.from_dict(d).to_yaml(tmp_path / "no_language.yaml")
    with pytest.raises(ValueError, match="no caption_minilm teacher"):
        mod.pretrain_config(argparse.Namespace(**{**vars(args), "config": str(tmp_path / "no_language.yaml")}), tmp_path)


def test_probe_protocol_benchmark_end_to_end_on_tiny_rooms(tmp_path):
    import json

    import benchmarks.probe_protocol as mod
    from data import save_scene
    from data.synth import generate_room
    from encoder.config import EncoderConfig
    from encoder.heads import HeadsConfig, MultiTeacherHeads
    from encoder.ptv3 import ChorusEncoder

    data = tmp_path / "data"
    for i, sid in enumerate(["room0", "room1"]):
        scene, _ = generate_room(20 + i, density=0.03, scene_id=sid)
        save_scene(scene, data / "scenes" / sid)
    (data / "classes.json").write_text(json.dumps({"class_names": list(scene.class_names)}))
    (data / "splits").mkdir()
    for split, ids in (("train", "room0"), ("val", "room1"), ("test", "")):
        (data / "splits" / f"{split}.txt").write_text(ids + "\n")
    torch.manual_seed(0)
    enc = ChorusEncoder(EncoderConfig.small(channels=(16, 32), depths=(1, 1), heads=(2, 4), patch_size=64, grid_size=0.1))
    enc.save_pretrained(tmp_path / "run" / "encoder")
    with pytest.raises(SystemExit, match="no heads/"):
        mod.main(["--run", str(tmp_path / "run"), "--data-dir", str(data)])
    MultiTeacherHeads(HeadsConfig(in_dim=enc.out_dim, teacher_dims={"caption_minilm": 384})).save_pretrained(tmp_path / "run" / "heads")
    out = tmp_path / "pp.json"
    assert mod.main(["--run", str(tmp_path / "run"), "--data-dir", str(data), "--probe-points", "500", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["train_rooms"] == 1 and res["held_out_rooms"] == 1
    assert set(res["results"]) == {f"{f}/{p}" for f in ("backbone", "language_projector") for p in mod.PROTOCOLS}
    assert all(0.0 <= r["miou"] <= 1.0 and 0.0 <= r["allacc"] <= 1.0 for r in res["results"].values())
    assert res["protocols"]["ce"]["epochs"] == 20 and res["protocols"]["ce"]["lovasz_weight"] == 0.0
    assert res["protocols"]["ce_lovasz"]["lovasz_weight"] == 1.0 and res["protocols"]["ce_40_epochs"]["epochs"] == 40
    assert out.with_suffix(".md").read_text().count("| backbone |") == len(mod.PROTOCOLS)
    from data import load_scene

    labelled = int((load_scene(data / "scenes" / "room0").semantic >= 0).sum())
    assert labelled > 500  # so the sampled and the all-points protocols see different points
    assert res["train_points"] == {"sampled": 500, "all": labelled}
    assert res["protocols"]["ce"]["points"] == "sampled" and res["protocols"]["ce_all_points"]["points"] == "all"
    assert res["protocols"]["ce_lovasz_all_points"]["lovasz_weight"] == 1.0


def test_pretrain_probe_extra_train_rooms_are_linked_and_appended_once(tmp_path, monkeypatch):
    import argparse
    import json
    import shutil
    from pathlib import Path

    import benchmarks.pretrain_probe as mod
    from data.synth.dataset import QA_WORLD_SEED

    def fake_synth(cmd, log):  # stands in for `python -m data.synth --scenes N --out DIR --seed S`
        n, out, seed = int(cmd[cmd.index("--scenes") + 1]), Path(cmd[cmd.index("--out") + 1]), int(cmd[cmd.index("--seed") + 1])
        for i in range(n):
            (out / "scenes" / f"synth{seed:02d}_{i:04d}").mkdir(parents=True)
        (out / "splits").mkdir()
        ids = [f"synth{seed:02d}_{i:04d}" for i in range(n)]
        for split, part in (("train", ids[:-2]), ("val", ids[-2:-1]), ("test", ids[-1:])):
            (out / "splits" / f"{split}.txt").write_text("\n".join(part) + "\n")
        (out / "classes.json").write_text(json.dumps({"class_names": ["wall", "chair"]}))

    monkeypatch.setattr(mod, "run", fake_synth)
    data = tmp_path / "synth"
    args = argparse.Namespace(scenes=5, seed=0, density=0.3, extra_train_rooms=3, work=tmp_path)
    mod.stage_data(args, data)
    mod.stage_data(args, data)  # a second pass changes nothing
    assert mod.read_split(data, "train") == ["synth00_0000", "synth00_0001", "synth00_0002", "synth01_0000", "synth01_0001", "synth01_0002"]
    assert mod.read_split(data, "val") == ["synth00_0003"] and mod.read_split(data, "test") == ["synth00_0004"]
    assert (data / "scenes" / "synth01_0002").resolve() == (data / "extra" / "scenes" / "synth01_0002").resolve()
    # 8 rooms with a 5-room world: the whole next world (seed 1, 5 rooms) and 3 of the one after the Q&A world (seed 3)
    more = argparse.Namespace(**{**vars(args), "extra_train_rooms": 8})
    assert QA_WORLD_SEED == 2 and mod.extra_worlds(more) == [(1, 5, "extra"), (3, 3, "extra_seed3")]
    shutil.rmtree(data / "extra")
    mod.stage_data(more, data)
    mod.stage_data(more, data)
    assert mod.read_split(data, "train") == ([f"synth00_{i:04d}" for i in range(3)] + [f"synth01_{i:04d}" for i in range(3)]
                                             + [f"synth01_{i:04d}" for i in (3, 4)] + [f"synth03_{i:04d}" for i in range(3)])
    assert (data / "scenes" / "synth03_0002").resolve() == (data / "extra_seed3" / "scenes" / "synth03_0002").resolve()
    assert len(set(mod.read_split(data, "train")) & {*mod.read_split(data, "val"), *mod.read_split(data, "test")}) == 0
    # the probe, the teacher ceiling and the fit stage read only the base world's train rooms
    assert mod.probe_train_ids(more, data) == [f"synth00_{i:04d}" for i in range(3)]
    assert mod.train_rooms({"pretrain_train_rooms": 11, "eval": {"num_train_scenes": 3}}) == "11 pretraining / 3 probe-training"
    assert mod.train_rooms({"pretrain_train_rooms": 3, "eval": {"num_train_scenes": 3}}) == "3 train"
    out = tmp_path / "res.json"  # the recorded room counts are read after the data stage made and extended the world
    assert mod.main(["--work", str(tmp_path), "--data-dir", str(tmp_path / "fresh"), "--scenes", "5", "--extra-train-rooms", "8",
                     "--stages", "data", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["pretrain_train_rooms"] == 11 and json.loads(out.read_text())["num_scenes"] == 13
    # a data-only run's report states what it made, not zeros of stages that did not run
    report = out.with_suffix(".md").read_text()
    assert "13 rooms (density 0.3), 11 train on 2 shared CPU cores." in report
    assert "params" not in report and "| encoder |" not in report and "held-out" not in report
    (data / "extra" / "classes.json").write_text(json.dumps({"class_names": ["wall"]}))
    with pytest.raises(ValueError, match="differs"):
        mod.stage_data(args, data)


def test_pretrain_probe_keeps_finished_stages_when_a_later_stage_dies(tmp_path, monkeypatch):
    import json

    import benchmarks.pretrain_probe as mod

    def out_of_memory(args, data_dir):
        raise MemoryError("fit")

    monkeypatch.setattr(mod, "stage_eval", lambda args, data_dir: {"num_train_scenes": 3, "marker": 0.5})
    monkeypatch.setattr(mod, "stage_fit", out_of_memory)
    out = tmp_path / "res.json"
    with pytest.raises(MemoryError):
        mod.main(["--work", str(tmp_path / "work"), "--data-dir", str(tmp_path / "none"), "--stages", "eval,fit", "--out", str(out)])
    res = json.loads(out.read_text())  # the eval stage's result survived the fit stage's death
    assert res["eval"] == {"num_train_scenes": 3, "marker": 0.5} and "fit" not in res
    assert out.with_suffix(".md").is_file() and not list(tmp_path.glob(".res.json.tmp-*"))
