"""train_qa: config handling, optimizer-state round trip, end-to-end run + resume on a tiny synthetic world."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from chorus_qa.train_qa import TrainQAConfig, load_config, lr_factor, main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from data.synth.dataset import generate_dataset

    out = tmp_path_factory.mktemp("world")
    generate_dataset(out, 5, seed=0, density=0.05, progress=False)
    return out


def tiny_config_dict(data_dir, out_dir):
    return {
        "data_dir": str(data_dir), "out_dir": str(out_dir), "encoder": "raw",
        "model": {"llm": "tiny-random-llama", "num_scene_tokens": 8, "token_dim": 32, "num_neighbors": 8,
                  "max_points": 512, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "stage1": {"epochs": 1, "lr": 3e-3}, "stage2": {"epochs": 1, "lr": 3e-3},
        "batch_size": 8, "max_train_examples": 32, "max_val_examples": 8, "threads": 1,
    }


def test_config_overrides_and_validation(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict("D", "O")))
    cfg = load_config(str(path), ["stage2.epochs=3", "model.lora.r=2", "bf16=true"])
    assert cfg.stage2.epochs == 3 and cfg.model["lora"]["r"] == 2 and cfg.bf16 is True
    assert cfg.stage1.lr == 3e-3
    assert TrainQAConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # JSON round trip
    with pytest.raises(ValueError, match="unknown keys"):
        load_config(str(path), ["epochz=1"])
    with pytest.raises(ValueError, match="feature_dim"):
        load_config(str(path), ["model.feature_dim=4"])
    with pytest.raises(ValueError, match="nothing to train"):
        load_config(str(path), ["stage1.epochs=0", "stage2.epochs=0"])
    assert load_config(str(path), ["bf16=auto"]).bf16 == "auto"
    with pytest.raises(ValueError, match="bf16"):
        load_config(str(path), ["bf16=maybe"])


def test_lr_schedule_shape():
    total, warmup = 100, 10
    f = [lr_factor(s, total, warmup) for s in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # monotone decay after warm-up
    assert f[-1] == pytest.approx(0.1, abs=0.01)


def test_qa_synth_config_parses():
    cfg = load_config(str(ROOT / "configs" / "qa_synth.yaml"))
    assert cfg.model.get("llm", "smollm2-135m") == "smollm2-135m"
    assert cfg.stage2.epochs >= 1 and cfg.model["object_names"] and cfg.model["pooling"] == "objects"


def test_qa_synth_situated_config_caps_the_residual():
    """Release L's recipe (the situated tokens with the residual cap, lateral and sector order and size words before
    their objects; README) parses into a model config that accepts them (the cap needs object names, lateral order
    anchor frames)."""
    from chorus_qa.qa_config import QAModelConfig

    cfg = load_config(str(ROOT / "configs" / "qa_synth_situated.yaml"))
    assert cfg.model["residual_cap"] == 0.5 and cfg.model["situated_tokens"] and cfg.model["anchor_frames"] == "spatial"
    model_cfg = QAModelConfig.from_dict({**cfg.model, "feature_dim": 64})  # the trainer reads it off the encoder
    assert model_cfg.residual_cap == 0.5 and model_cfg.object_names
    assert model_cfg.lateral_order and model_cfg.size_words and model_cfg.metric_extents
    assert model_cfg.size_first and model_cfg.sector_order
    # comparison_order is switched on for the second run and color_shading at export (the recipe's knobs)
    assert not model_cfg.comparison_order and model_cfg.color_shading == 1.0


def test_evaluate_em_shuffled_scene_control():
    from chorus_qa.datasets import QAExample
    from chorus_qa.train_qa import evaluate_em

    class Store:  # a scene's "context" is its id
        def context(self, model, scene_id):
            return scene_id

    class Model:  # answers every question with the name of the scene it was shown
        def generate(self, context, questions, situations=None, max_new_tokens=8, blind=False, poses=None):
            return ["none" if blind else context] * len(questions)

    examples = [QAExample(s, f"{s}-{i}", "which room is this?", [s], type=t)
                for s, t in (("a", "x"), ("b", "x"), ("c", "y")) for i in range(2)]
    cfg = TrainQAConfig.from_dict({"data_dir": "D", "out_dir": "O", "eval_batch_size": 1})
    assert evaluate_em(Model(), examples, Store(), cfg, progress=False)["em"] == 1.0
    swap = {"a": "b", "b": "a", "c": "c"}  # only c keeps its own scene
    got = evaluate_em(Model(), examples, Store(), cfg, progress=False, scene_of=swap)
    assert got["em"] == pytest.approx(1 / 3) and got["per_type"] == {"x": 0.0, "y": 1.0}


def test_end_to_end_train_and_resume(tiny_world, tmp_path, capsys):
    cfg_path = tmp_path / "tiny.yaml"
    # eval on train questions: the tiny world has a single val room, and the shuffled-scene control needs two
    cfg_path.write_text(yaml.safe_dump({**tiny_config_dict(tiny_world, tmp_path / "run"), "val_split": "train"}))
    assert main(["--config", str(cfg_path), "--no-progress"]) == 0
    run = tmp_path / "run"
    for name in ("history.json", "curves.png", "best/config.json", "best/projector.safetensors",
                 "best/adapter/adapter_config.json", "last/optimizer.safetensors", "last/trainer_state.json"):
        assert (run / name).is_file(), name
    history = json.loads((run / "history.json").read_text())
    steps_first = len(history["step"])
    assert [e["epoch"] for e in history["eval"]] == [1, 2] and steps_first == 2 * 4
    assert all(0.0 <= e["em"] <= 1.0 and 0.0 <= e["shuffled_em"] <= 1.0 for e in history["eval"])
    # a random tiny LLM cannot read its scene: the trainer says so whenever the control scores as high
    blind_epochs = sum(e["em"] - e["shuffled_em"] < 0.01 for e in history["eval"])
    assert capsys.readouterr().err.count("the model does not read its scene") == blind_epochs

    # resume: one more stage-2 epoch continues the history instead of restarting
    assert main(["--config", str(cfg_path), "--no-progress", "--set", "stage2.epochs=2"]) == 0
    history = json.loads((run / "history.json").read_text())
    assert [e["epoch"] for e in history["eval"]] == [1, 2, 3]
    assert history["step"] == list(range(1, steps_first + 5))

    # the checkpoint reloads and answers
    from chorus_qa.model import ChorusQAModel

    model = ChorusQAModel.from_pretrained(run / "last")
    feats, means = torch.randn(100, 11), torch.rand(100, 3)
    out = model.generate([(feats, means)], ["how many chairs are in the room?"], max_new_tokens=3)
    assert len(out) == 1 and isinstance(out[0], str)


def _trained_state(run):
    from safetensors.torch import load_file

    state = load_file(str(run / "last" / "projector.safetensors"))
    state.update({f"lora.{k}": v for k, v in load_file(str(run / "last" / "adapter" / "adapter_model.safetensors")).items()})
    return state


def test_interrupted_run_resumes_mid_epoch_to_the_same_model(tiny_world, tmp_path, monkeypatch, capsys):
    """A run stopped by a signal, then by a step budget, then resumed ends exactly where an uninterrupted one does."""
    import os
    import signal

    import chorus_qa.train_qa as train_qa

    def run_config(name):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**tiny_config_dict(tiny_world, tmp_path / name), "val_split": "train",
                                        "trim_memory_every": 1}))
        return str(path)

    whole, pieces = run_config("whole"), run_config("pieces")
    assert main(["--config", whole, "--no-progress"]) == 0

    # SIGTERM during step 2 (trim_memory_every: 1 calls release_free_memory after every step): that step finishes,
    # last/ is written mid-epoch and train() returns
    calls = []

    def signal_at_step_2():
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return False

    monkeypatch.setattr(train_qa, "release_free_memory", signal_at_step_2)
    assert main(["--config", pieces, "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["stopped_at_step"] == 2
    state = json.loads((tmp_path / "pieces" / "last" / "trainer_state.json").read_text())
    assert (state["epoch"], state["epoch_batches"], state["global_step"]) == (0, 2, 2)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after training
    monkeypatch.undo()

    # a budget of 3 steps: steps 3-4 finish epoch 1 (eval, stage 2 starts), step 5 is the first of epoch 2
    assert main(["--config", pieces, "--no-progress", "--stop-after-steps", "3"]) == 0
    state = json.loads((tmp_path / "pieces" / "last" / "trainer_state.json").read_text())
    assert (state["epoch"], state["epoch_batches"], state["global_step"]) == (1, 1, 5)
    assert main(["--config", pieces, "--no-progress"]) == 0

    a = json.loads((tmp_path / "whole" / "history.json").read_text())
    b = json.loads((tmp_path / "pieces" / "history.json").read_text())
    assert b["step"] == a["step"] == list(range(1, 9))
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    assert [e["em"] for e in b["eval"]] == [e["em"] for e in a["eval"]]
    sa, sb = _trained_state(tmp_path / "whole"), _trained_state(tmp_path / "pieces")
    assert sa.keys() == sb.keys() and len(sa) > 4
    for key in sa:
        torch.testing.assert_close(sb[key], sa[key], rtol=1e-5, atol=1e-6, msg=key)


def test_warm_start_continues_a_run_over_the_questions_it_did_not_see(tiny_world, tmp_path):
    """init_from starts from another run's trained weights; exclude_seen_by trains on the questions it left out."""
    from chorus_qa.datasets import load_qa_split
    from chorus_qa.train_qa import train_examples

    first = {**tiny_config_dict(tiny_world, tmp_path / "first"), "val_split": "train"}
    rest = {**tiny_config_dict(tiny_world, tmp_path / "rest"), "val_split": "train", "max_train_examples": 16,
            "init_from": str(tmp_path / "first" / "last"), "exclude_seen_by": str(tmp_path / "first"),
            "stage1": {"epochs": 0, "lr": 1e-3}, "stage2": {"epochs": 1, "lr": 1e-12}}
    with pytest.raises(FileNotFoundError, match="exclude_seen_by"):
        train_examples(TrainQAConfig.from_dict(rest))
    for name, d in (("first", first), ("rest", rest)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(d))
    assert main(["--config", str(tmp_path / "first.yaml"), "--no-progress"]) == 0

    seen = {e.question_id for e in train_examples(TrainQAConfig.from_dict(first))}
    left = {e.question_id for e in train_examples(TrainQAConfig.from_dict({**rest, "max_train_examples": None}))}
    every = {e.question_id for e in load_qa_split(tiny_world, "train", "synth") if e.answers}
    assert len(seen) == 32 and seen.isdisjoint(left) and seen | left == every
    assert {e.question_id for e in train_examples(TrainQAConfig.from_dict(rest))} <= left

    # with a learning rate of 1e-12 the continued run ends where it started: at the first run's weights
    assert main(["--config", str(tmp_path / "rest.yaml"), "--no-progress"]) == 0
    history = json.loads((tmp_path / "rest" / "history.json").read_text())
    assert len(history["step"]) == 2  # 16 questions, 8 a step
    a, b = _trained_state(tmp_path / "first"), _trained_state(tmp_path / "rest")
    assert a.keys() == b.keys() and len(a) > 4
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=key)


def test_warm_start_refuses_a_checkpoint_of_another_model(tmp_path):
    import dataclasses

    from chorus_qa.model import ChorusQAModel, LoraSettings, QAModelConfig
    from chorus_qa.train_state import warm_start

    cfg = QAModelConfig(feature_dim=11, llm="tiny-random-llama", num_scene_tokens=4, token_dim=16, num_neighbors=4,
                        max_points=64, lora=LoraSettings(r=2, alpha=4, dropout=0.0))
    source = ChorusQAModel.build(cfg)
    with torch.no_grad():
        for p in source.projector.parameters():
            p.add_(1.0)
    source.save_pretrained(tmp_path / "src")
    target = ChorusQAModel.build(dataclasses.replace(cfg, llm_dtype="bfloat16"))  # storage dtype may differ
    warm_start(tmp_path / "src", target)
    for a, b in zip(source.projector.parameters(), target.projector.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="num_scene_tokens"):
        warm_start(tmp_path / "src", ChorusQAModel.build(dataclasses.replace(cfg, num_scene_tokens=6)))
    with pytest.raises(FileNotFoundError, match="init_from"):
        warm_start(tmp_path / "nowhere", target)


def test_stop_request_catches_one_signal_and_restores_handlers():
    import os
    import signal

    from chorus_qa.train_qa import StopRequest

    before = signal.getsignal(signal.SIGINT)
    with StopRequest(enabled=True) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):  # a second one stops at once
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
    with StopRequest(enabled=False) as off:
        assert off.signal is None and signal.getsignal(signal.SIGINT) is before
    with StopRequest(enabled=True) as several:  # several processes: the default handlers come back at once
        several.disable()
        assert signal.getsignal(signal.SIGINT) is before and not several.enabled


def test_optimizer_state_round_trip(tmp_path):
    from chorus_qa.model import ChorusQAModel, LoraSettings, QAModelConfig
    from chorus_qa.train_state import restore_training_state, save_training_state

    cfg = QAModelConfig(feature_dim=11, llm="tiny-random-llama", num_scene_tokens=4, token_dim=16, num_neighbors=4,
                        max_points=64, lora=LoraSettings(r=2, alpha=4, dropout=0.0))
    model = ChorusQAModel.build(cfg)
    model.set_trainable(2)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    save_training_state(tmp_path, model, opt, {"epoch": 1})
    other = ChorusQAModel.build(cfg)
    other.set_trainable(2)
    opt2 = torch.optim.AdamW([p for p in other.parameters() if p.requires_grad], lr=1e-2)
    restore_training_state(tmp_path / "last", other, opt2)
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for idx in s1["state"]:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(s1["state"][idx][key], s2["state"][idx][key])


@pytest.mark.slow
def test_runs_as_a_script(tiny_world, tmp_path):
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config_dict(tiny_world, tmp_path / "run")))
    result = subprocess.run([sys.executable, str(ROOT / "chorus_qa" / "train_qa.py"), "--config", str(cfg_path),
                             "--no-progress", "--set", "stage2.epochs=0"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["steps"] == 4


def test_pack_by_scene_groups_one_scene_and_covers_every_question():
    import random
    from types import SimpleNamespace

    from chorus_qa.train_qa import pack_by_scene

    examples = [SimpleNamespace(scene_id=f"s{i % 3}") for i in range(20)]  # 7, 7, 6 questions
    groups = pack_by_scene(examples, 3, random.Random(1))
    assert sorted(i for g in groups for i in g) == list(range(20))
    assert all(len({examples[i].scene_id for i in g}) == 1 and 1 <= len(g) <= 3 for g in groups)
    assert len(groups) == 3 + 3 + 2 == len(pack_by_scene(examples, 3, random.Random(2)))
    assert groups != pack_by_scene(examples, 3, random.Random(2))  # the order is shuffled per seed


def test_packed_training_runs_fewer_steps_per_epoch(tiny_world, tmp_path, monkeypatch):
    monkeypatch.setenv("CHORUS_CPU_BF16", "0")  # bf16: auto trains in fp32 where bf16 is emulated
    d = tiny_config_dict(tiny_world, tmp_path / "packed")
    d.update(questions_per_sequence=4, batch_size=2, stage2={"epochs": 0, "lr": 3e-3}, bf16="auto")
    cfg_path = tmp_path / "packed.yaml"
    cfg_path.write_text(yaml.safe_dump(d))
    assert main(["--config", str(cfg_path), "--no-progress"]) == 0
    from chorus_qa.datasets import load_qa_split
    import random

    train = [e for e in load_qa_split(str(tiny_world), "train", "synth") if e.answers]
    train = random.Random(0).sample(train, 32)
    per_scene = {}
    for e in train:
        per_scene[e.scene_id] = per_scene.get(e.scene_id, 0) + 1
    sequences = sum(-(-n // 4) for n in per_scene.values())
    history = json.loads((tmp_path / "packed" / "history.json").read_text())
    assert len(history["step"]) == -(-sequences // 2) < 32 // 2
    assert all(torch.isfinite(torch.tensor(history["loss"])))
    assert json.loads((tmp_path / "packed" / "last" / "config.json").read_text())["llm_dtype"] == "float32"


def test_pooled_store_variants_are_exact_cached_and_reproducible(tiny_world, tmp_path):
    import random

    from chorus_qa.feature_cache import SceneFeatureSource
    from chorus_qa.model import QAModelConfig
    from chorus_qa.scene_tokens import pool_scene
    from chorus_qa.train_qa import PooledSceneStore, SceneStore, make_scene_store
    from data import load_scene

    d = tiny_config_dict(tiny_world, tmp_path / "run")
    d["model"]["max_points"] = 64  # below the rooms' Gaussian count: training draws use different subsets
    cfg = TrainQAConfig.from_dict({**d, "feature_cache": str(tmp_path / "cache")})
    source = SceneFeatureSource("raw")
    mcfg = QAModelConfig.from_dict({**cfg.model, "feature_dim": source.out_dim})
    store = make_scene_store(cfg, source, mcfg)
    assert isinstance(store, PooledSceneStore)
    sid = sorted(p.name for p in (tiny_world / "scenes").iterdir())[0]
    store.precompute([sid], progress=False)
    scene = load_scene(tiny_world / "scenes" / sid)
    ref = pool_scene(*source(scene), mcfg.scene_tokenizer_config())  # the inference pooling, computed directly
    v0 = store.get(sid, 0)
    assert torch.allclose(v0.cells, ref.cells, atol=1e-2) and torch.equal(v0.positions, ref.positions)
    draws = [store.get(sid, i).positions for i in range(1, cfg.pooled_variants)]
    assert all(not torch.equal(p, ref.positions) for p in draws)
    # a fresh store reads the same file; recomputing in another cache folder gives the same draws
    again = PooledSceneStore(cfg, source, mcfg.scene_tokenizer_config())
    assert torch.equal(again.get(sid, 2).cells, store.get(sid, 2).cells)
    other = TrainQAConfig.from_dict({**d, "feature_cache": str(tmp_path / "cache2")})
    fresh = PooledSceneStore(other, source, mcfg.scene_tokenizer_config())
    assert torch.equal(fresh.get(sid, 3).cells, store.get(sid, 3).cells)
    inputs = store.batch_inputs([sid, sid], random.Random(0))
    assert inputs["features"] is None and len(inputs["pooled"]) == 2
    # pooled_variants 0 = per-Gaussian features; kNN pooling cannot be pooled ahead
    assert isinstance(make_scene_store(TrainQAConfig.from_dict({**d, "pooled_variants": 0}), source, mcfg), SceneStore)
    with pytest.raises(ValueError, match="pooled_variants"):
        TrainQAConfig.from_dict({**d, "model": {**d["model"], "pooling": "knn"}})


def test_object_tokens_train_cache_and_benchmark_loader(tiny_world, tmp_path):
    """"objects" pooling (ground-truth segments, raw features): trains from pooled scenes, and the benchmark's
    loader feeds the saved model the same tokens the store cached for inference."""
    from chorus_qa.benchmark import SceneFeatureLoader
    from chorus_qa.model import ChorusQAModel
    from chorus_qa.train_qa import PooledSceneStore

    d = tiny_config_dict(tiny_world, tmp_path / "run")
    d["model"].update(pooling="objects", segments={"source": "gt"})
    d.update(feature_cache=str(tmp_path / "cache"), max_train_examples=16, max_val_examples=4)
    d["stage2"]["epochs"] = 0
    cfg_path = tmp_path / "objects.yaml"
    cfg_path.write_text(yaml.safe_dump(d))
    assert main(["--config", str(cfg_path), "--no-progress"]) == 0
    model = ChorusQAModel.from_pretrained(tmp_path / "run" / "last")
    assert model.config.pooling == "objects" and model.config.segments == {"source": "gt"}
    (folder,) = [p for p in (tmp_path / "cache").iterdir() if "_objects-" in p.name]
    sid = sorted(p.stem for p in folder.iterdir())[0]
    store = PooledSceneStore(TrainQAConfig.from_dict(d), *_raw_source_and_segmenter(model))
    loader = SceneFeatureLoader.for_model(model, tiny_world)
    inputs = loader(sid)
    assert len(inputs) == 5  # features, means, segments, colours, class labels
    tokens, _ = model.scene_tokenizer(*inputs[:2], None, *inputs[2:4])
    cached, _ = model.scene_tokenizer.embed_pooled(store.get(sid, 0))
    assert torch.allclose(tokens, cached, atol=1e-2)
    with pytest.raises(ValueError, match="pooled_variants"):
        TrainQAConfig.from_dict({**d, "pooled_variants": 0})


def test_situated_tokens_train_from_posed_questions_and_evaluate(tiny_world, tmp_path):
    """Posed (situated) questions of the synthetic world reach the situated projector in training (it starts at
    zero and moves) and evaluation answers them with their poses (situated_words: name + quarter-word tokens)."""
    from chorus_qa.model import ChorusQAModel

    d = tiny_config_dict(tiny_world, tmp_path / "run")
    d["model"].update(pooling="objects", segments={"source": "gt"}, object_names=True, situated_tokens=True,
                      situated_words=True)
    d.update(feature_cache=str(tmp_path / "cache"), max_train_examples=16, max_val_examples=8, questions_per_sequence=4,
             batch_size=2, stage1={"epochs": 0, "lr": 3e-3}, length_grouping=4)
    cfg_path = tmp_path / "situated.yaml"
    cfg_path.write_text(yaml.safe_dump(d))
    assert main(["--config", str(cfg_path), "--no-progress"]) == 0  # 4 of the 16 sampled questions have a pose
    model = ChorusQAModel.from_pretrained(tmp_path / "run" / "last")
    assert model.config.situated_words and torch.count_nonzero(model.situated.mlp[-1].weight) > 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["eval"][-1]["n"] == 8


def _raw_source_and_segmenter(model):
    from chorus_qa.feature_cache import SceneFeatureSource
    from chorus_qa.segments import make_segmenter

    return SceneFeatureSource("raw"), model.scene_tokenizer.config, make_segmenter(model.config)


def test_pooled_store_redoes_files_without_labels_when_names_are_needed(tiny_world, tmp_path):
    from chorus_qa.feature_cache import SceneFeatureSource
    from chorus_qa.model import QAModelConfig
    from chorus_qa.segments import make_segmenter
    from chorus_qa.train_qa import PooledSceneStore, make_scene_store

    d = tiny_config_dict(tiny_world, tmp_path / "run")
    d["model"].update(pooling="objects", segments={"source": "gt"})
    cfg = TrainQAConfig.from_dict({**d, "feature_cache": str(tmp_path / "cache")})
    source = SceneFeatureSource("raw")
    mcfg = QAModelConfig.from_dict({**cfg.model, "feature_dim": source.out_dim})
    sid = sorted(p.name for p in (tiny_world / "scenes").iterdir())[0]
    store = make_scene_store(cfg, source, mcfg)
    tensors = store._compute(sid)
    assert tensors["labels"].shape == (cfg.pooled_variants, mcfg.num_scene_tokens)
    store.cache.save_tensors(sid, {k: v for k, v in tensors.items() if k != "labels"})  # an older cache file
    assert store.get(sid).labels is None
    named = PooledSceneStore(cfg, source, mcfg.scene_tokenizer_config(), make_segmenter(mcfg), need=("labels",))
    assert torch.equal(named.get(sid).labels, tensors["labels"][0])
    assert "labels" in store.cache.load_tensors(sid)  # rewritten
    # SQA3D-style (box-centred) poses need the scene's box centre with situated tokens; scene-coordinate ones do not
    from chorus_qa.datasets import QAExample

    posed = [QAExample("s", "1", "q?", ["a"], position=[0.0, 0.0, 0.0], rotation=[0.0, 0.0, 0.0, 1.0],
                       position_origin=o) for o in ("scene", "box_centre")]
    situated = QAModelConfig.from_dict({**cfg.model, "feature_dim": source.out_dim, "situated_tokens": True})
    assert "box_centre" in make_scene_store(cfg, source, situated, posed).need
    assert "box_centre" not in make_scene_store(cfg, source, situated, posed[:1]).need
    assert "box_centre" not in make_scene_store(cfg, source, mcfg, posed).need
    assert torch.allclose(named.get(sid).box_centre, tensors["box_centre"][0])


def test_bench_qa_train_settings_parse_as_batch_by_questions():
    import argparse

    from benchmarks.bench_qa_train import parse_setting

    assert parse_setting("8x6") == (8, 6) and parse_setting("4X12") == (4, 12)
    for bad in ("8", "8x0", "ax6", "8x6x2"):
        with pytest.raises(argparse.ArgumentTypeError, match="setting"):
            parse_setting(bad)


def test_release_free_memory_returns_freed_heap_pages():
    """Freed heap blocks between live ones stay in the process until trimmed (what a training step leaves behind)."""
    import ctypes
    import ctypes.util
    import sys

    from chorus_qa.train_qa import release_free_memory

    if not sys.platform.startswith("linux"):
        pytest.skip("malloc_trim is glibc's")

    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

    # blocks under 32 MB come from the heap, as in training once glibc has raised its dynamic mmap threshold
    ctypes.CDLL(ctypes.util.find_library("c")).mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD
    blocks = [torch.ones(int(100_000 + 3_000 * i)) for i in range(300)]  # 0.4-4 MB each, ~1.5 GB in all
    del blocks[::2]  # ~750 MB of holes between the live blocks
    before = rss_mb()
    assert release_free_memory() is True
    after = rss_mb()
    assert after < before - 300, (before, after)
    blocks.clear()
    with pytest.raises(ValueError, match="trim_memory_every"):
        TrainQAConfig(data_dir="d", out_dir="o", trim_memory_every=-1)
