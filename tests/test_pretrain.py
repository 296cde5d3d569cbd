"""Pretraining loop: config validation, losses go down, exact resume after a planned stop."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from data import GaussianScene, save_scene
from encoder.pretrain import (
    PretrainConfig,
    SceneStreamSampler,
    TeacherSpec,
    active_teachers,
    main,
    read_log,
    resolve_scene_dirs,
)

TINY_ENCODER = {"channels": [16, 32], "depths": [1, 1], "heads": [2, 4], "patch_size": 64, "grid_size": 0.1, "drop_path": 0.1}


def fake_room(seed: int, n: int = 900) -> GaussianScene:
    """Blobs of 3 classes / 6 instances with class-coded 'lang' and instance-coded 'obj' features."""
    g = torch.Generator().manual_seed(seed)
    inst = torch.arange(n) % 6
    sem = inst % 3
    centers = torch.rand(6, 3, generator=g) * 2
    means = centers[inst] + 0.15 * torch.randn(n, 3, generator=g)
    colors = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9]])[sem] + 0.05 * torch.rand(n, 3, generator=g)
    q = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1)
    q = torch.where(q[:, :1] < 0, -q, q)
    lang = torch.eye(8)[sem] + 0.1 * torch.randn(n, 8, generator=g)
    obj = torch.randn(6, 6, generator=torch.Generator().manual_seed(99))[inst]
    keep = torch.arange(0, n, 2)
    return GaussianScene(
        means=means, quats=q, scales=0.02 + 0.02 * torch.rand(n, 3, generator=g), opacities=torch.rand(n, generator=g),
        colors=colors.clamp(0, 1), normals=torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1),
        semantic=sem, instance=inst, class_names=["wall", "chair", "table"],
        features={"lang": (lang[keep], keep), "obj": (obj, torch.arange(n))}, name=f"room{seed}",
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    (root / "scenes").mkdir()
    (root / "splits").mkdir()
    for i in range(4):
        save_scene(fake_room(i), root / "scenes" / f"room{i}")
    (root / "splits" / "train.txt").write_text("room0\nroom1\nroom2\n")
    return root


def write_config(path: Path, data_root: Path, out: Path, **over) -> Path:
    kwargs = dict(
        output_dir=str(out), encoder=dict(TINY_ENCODER),
        teachers=[TeacherSpec("lang", 8, contrast="semantic"), TeacherSpec("obj", 6, contrast="instance", start_fraction=0.5)],
        data={"root": str(data_root), "split": "train"}, augment={"max_points": 700}, steps=6, batch_size=2,
        checkpoint_every=2, min_group_size=10, max_loss_points=400, head_hidden_mult=1, optim={"lr": 5e-3, "block_lr_scale": 1.0},
    )
    cfg = PretrainConfig(**{**kwargs, **over})
    cfg.to_yaml(path)
    return path


def test_config_roundtrip_and_validation(tmp_path, dataset):
    path = write_config(tmp_path / "c.yaml", dataset, tmp_path / "out")
    cfg = PretrainConfig.from_yaml(path)
    assert cfg.teachers[1].start_fraction == 0.5 and cfg.augment.max_points == 700
    assert PretrainConfig.from_dict(cfg.to_dict()) == cfg
    assert [t.name for t in active_teachers(cfg, 2)] == ["lang"]
    assert [t.name for t in active_teachers(cfg, 3)] == ["lang", "obj"]
    assert [p.name for p in resolve_scene_dirs(cfg.data)] == ["room0", "room1", "room2"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("batch_size: 2", "batch_sise: 2"))
    with pytest.raises(ValueError, match="batch_sise"):
        PretrainConfig.from_yaml(bad)
    with pytest.raises(ValueError, match="contrast"):
        TeacherSpec("x", 3, contrast="pixel")
    with pytest.raises(ValueError, match="head_hidden_mult"):
        PretrainConfig.from_dict({**cfg.to_dict(), "head_hidden_mult": 0})
    with pytest.raises(ValueError, match="loss_balance"):
        PretrainConfig.from_dict({**cfg.to_dict(), "loss_balance": 1.5})
    with pytest.raises(ValueError, match="vocab"):
        TeacherSpec("x", 3, vocab="imagenet")
    with pytest.raises(ValueError, match="vocab_temperature"):
        TeacherSpec("x", 3, vocab="scannet20", vocab_temperature=0.0)


def test_sampler_stream_resumes_mid_epoch():
    full = SceneStreamSampler(5, seed=3)
    it = iter(full)
    keys = [next(it) for _ in range(12)]
    assert sorted(i for e, i in keys[:5]) == list(range(5)) and {e for e, _ in keys[5:10]} == {1}
    it2 = iter(SceneStreamSampler(5, seed=3, skip=7))
    assert [next(it2) for _ in range(5)] == keys[7:12]
    shards = [iter(SceneStreamSampler(5, seed=3, skip=1, rank=r, world=2)) for r in (0, 1)]
    assert [next(shards[0]), next(shards[1]), next(shards[0])] == keys[2:5]


def test_train_then_resume_matches_uninterrupted(tmp_path, dataset):
    # one thread: this test is about what a checkpoint restores. With two threads, one fresh-clone suite run beside a
    # CPU-bound job resumed 2.6e-4 off at its first step (0.62840 against 0.62857; steps 0-1 bit-equal), and 9 reruns
    # (alone, in its file, in the suite, under the same load) were exact: a rare race in a multi-threaded CPU kernel,
    # not a lost state (that would be off every time)
    cfg_a = write_config(tmp_path / "a.yaml", dataset, tmp_path / "a", threads=1)
    cfg_b = write_config(tmp_path / "b.yaml", dataset, tmp_path / "b", threads=1)
    assert main(["--config", str(cfg_a), "--no-progress"]) == 0
    assert main(["--config", str(cfg_b), "--no-progress", "--max-steps", "2"]) == 0
    assert not (tmp_path / "b" / "encoder").exists()  # stopped early: no final encoder
    assert main(["--config", str(cfg_b), "--no-progress"]) == 0
    a, b = read_log(tmp_path / "a" / "train_log.jsonl"), read_log(tmp_path / "b" / "train_log.jsonl")
    assert [r["step"] for r in a] == list(range(6)) == [r["step"] for r in b]
    assert np.allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=1e-5, atol=1e-6)
    assert a[2]["teachers"] == ["lang"] and a[3]["teachers"] == ["lang", "obj"]
    assert all(math.isfinite(r["loss"]) for r in a)
    assert (tmp_path / "a" / "loss_curve.png").stat().st_size > 1000
    assert (tmp_path / "a" / "checkpoints" / "latest").read_text() == "step_0000006"
    assert len(list((tmp_path / "a" / "checkpoints").glob("step_*"))) == 2
    from encoder.heads import MultiTeacherHeads
    from encoder.ptv3 import ChorusEncoder

    ea, eb = ChorusEncoder.from_pretrained(tmp_path / "a" / "encoder"), ChorusEncoder.from_pretrained(tmp_path / "b" / "encoder")
    for (k, va), vb in zip(ea.state_dict().items(), eb.state_dict().values()):
        assert torch.allclose(va, vb, atol=1e-5), k
    heads = MultiTeacherHeads.from_pretrained(tmp_path / "a" / "heads")
    assert heads.cfg.teacher_dims == {"lang": 8, "obj": 6}
    assert heads.cfg.hidden_mult == 1 and heads.projectors["lang"].fc1.out_features == ea.out_dim  # config's head width


def test_loss_decreases_and_point_variant_trains(tmp_path, dataset):
    path = write_config(tmp_path / "c.yaml", dataset, tmp_path / "g", augment={"max_points": 700, "rotate_z_p": 0.0, "flip_p": 0.0})
    d = PretrainConfig.from_yaml(path).to_dict()
    d.update(steps=25, checkpoint_every=100, teachers=[{"name": "lang", "dim": 8, "contrast": "semantic"}])
    PretrainConfig.from_dict(d).to_yaml(path)
    main(["--config", str(path), "--no-progress"])
    log = read_log(tmp_path / "g" / "train_log.jsonl")
    first, last = np.mean([r["loss"] for r in log[:4]]), np.mean([r["loss"] for r in log[-4:]])
    assert last < 0.7 * first, (first, last)
    main(["--config", str(path), "--no-progress", "--variant", "point", "--output-dir", str(tmp_path / "p"), "--steps", "2"])
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["variant"] == "point"
    assert json.loads((tmp_path / "p" / "encoder" / "config.json").read_text())["variant"] == "point"


def test_host_rng_state_round_trips_through_json():
    import json
    import random

    import numpy as np

    from encoder.pretrain_state import _host_rng_state, _set_host_rng_state

    random.seed(3)
    np.random.seed(4)
    saved = json.loads(json.dumps(_host_rng_state()))
    first = (random.random(), np.random.rand(3).tolist(), np.random.randn())
    _set_host_rng_state(saved)
    assert (random.random(), np.random.rand(3).tolist(), np.random.randn()) == first


def test_init_from_warm_starts_weights_with_a_fresh_schedule(tmp_path, dataset):
    first = write_config(tmp_path / "a.yaml", dataset, tmp_path / "a", steps=4)
    assert main(["--config", str(first), "--no-progress"]) == 0
    ckpt = tmp_path / "a" / "checkpoints" / "step_0000004"
    runs = {name: write_config(tmp_path / f"{name}.yaml", dataset, tmp_path / name, steps=4,
                               **({} if name == "cold" else {"init_from": str(ckpt)}))
            for name in ("warm", "split", "cold")}
    assert main(["--config", str(runs["warm"]), "--no-progress"]) == 0
    assert main(["--config", str(runs["cold"]), "--no-progress"]) == 0
    # a warm-started run that is stopped resumes from its own checkpoint (not from init_from again): same losses
    assert main(["--config", str(runs["split"]), "--no-progress", "--max-steps", "2"]) == 0
    assert main(["--config", str(runs["split"]), "--no-progress"]) == 0
    warm, split, cold = (read_log(tmp_path / n / "train_log.jsonl") for n in ("warm", "split", "cold"))
    assert [r["step"] for r in warm] == [0, 1, 2, 3] == [r["step"] for r in split]  # its own schedule, from step 0
    assert np.allclose([r["loss"] for r in warm], [r["loss"] for r in split], rtol=1e-5, atol=1e-6)
    # same first batch, but from run a's trained weights instead of a fresh model
    assert warm[0]["loss"] < 0.8 * cold[0]["loss"]
    # the exported encoder/ + heads/ of run a (what a release ships) warm-start the same weights
    exported = write_config(tmp_path / "exported.yaml", dataset, tmp_path / "exported", steps=4, init_from=str(tmp_path / "a"))
    assert main(["--config", str(exported), "--no-progress", "--max-steps", "1"]) == 0
    assert read_log(tmp_path / "exported" / "train_log.jsonl")[0]["loss"] == pytest.approx(warm[0]["loss"], rel=1e-5)
    bad = write_config(tmp_path / "bad.yaml", dataset, tmp_path / "bad", init_from=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="init_from"):
        main(["--config", str(bad), "--no-progress"])


def test_class_balanced_loss_points_flatten_the_class_mix(tmp_path, dataset, monkeypatch):
    import encoder.pretrain as pretrain

    calls = []
    real = pretrain.loss_subset
    monkeypatch.setattr(pretrain, "loss_subset", lambda classes, k, power, gen: _record(calls, real, classes, k, power, gen))
    path = write_config(tmp_path / "c.yaml", dataset, tmp_path / "bal", loss_balance=1.0, max_loss_points=200)
    assert main(["--config", str(path), "--no-progress", "--max-steps", "2"]) == 0
    assert calls and all(power == 1.0 for *_, power in calls)

    def top_share(labels):
        return torch.unique(labels, return_counts=True)[1].max().item() / labels.numel()

    # the biggest class fills less of the loss subset than of the candidates it was drawn from
    assert all(top_share(picked) < top_share(classes) for classes, picked, _ in calls)
    log = read_log(tmp_path / "bal" / "train_log.jsonl")
    assert len(log) == 2 and all(math.isfinite(r["loss"]) for r in log)


def _record(calls, real, classes, k, power, gen):
    pick = real(classes, k, power, gen)
    calls.append((classes, classes[pick], power))
    return pick


def test_vocab_term_adds_the_teachers_word_ranking_to_the_language_loss(tmp_path, dataset):
    """multi_teacher_loss with a vocabulary = without it + vocab_weight * vocab_kl on the same rows; the
    vocabulary is embedded by the teacher's text encoder, and a dimension mismatch is a clear error."""
    from encoder.heads import HeadsConfig, MultiTeacherHeads
    from encoder.losses import vocab_kl
    from encoder.pretrain import collate_batch, multi_teacher_loss, teacher_vocabularies

    with pytest.raises(ValueError, match="384-D"):
        teacher_vocabularies([TeacherSpec("lang", 8, vocab="scannet20")])
    vocab = teacher_vocabularies([TeacherSpec("lang", 384, vocab="scannet20"), TeacherSpec("obj", 6)])
    assert list(vocab) == ["lang"] and vocab["lang"].shape == (20, 384)
    assert torch.allclose(vocab["lang"].norm(dim=1), torch.ones(20), atol=1e-5)

    room = fake_room(0, n=300)
    room.features["lang"] = (torch.randn(150, 384, generator=torch.Generator().manual_seed(2)), room.features["lang"][1])
    cfg = PretrainConfig(**{**PretrainConfig.from_yaml(write_config(tmp_path / "c.yaml", dataset, tmp_path / "o")).to_dict(),
                            "teachers": [{"name": "lang", "dim": 384, "vocab": "scannet20", "vocab_weight": 0.7}]})
    heads = MultiTeacherHeads(HeadsConfig(in_dim=5, teacher_dims={"lang": 384}, hidden_mult=1))
    batch = collate_batch([(room, torch.zeros(300, 1))])
    feats = torch.randn(300, 5, generator=torch.Generator().manual_seed(3))
    with_kl, logs = multi_teacher_loss(feats, heads, batch, cfg.teachers, cfg, torch.Generator().manual_seed(4), vocab)
    without, _ = multi_teacher_loss(feats, heads, batch, cfg.teachers, cfg, torch.Generator().manual_seed(4), None)
    target, index = room.features["lang"]
    kl = vocab_kl(heads.project("lang", feats[index]), target, vocab["lang"], 0.03).detach()
    assert logs["lang/vocab_kl"] == pytest.approx(float(kl), rel=1e-5)
    assert with_kl.item() == pytest.approx(without.item() + 0.7 * kl.item(), rel=1e-5)
