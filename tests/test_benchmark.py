"""The benchmark CLI end to end with a fake model: three files with consistent numbers, blind baseline."""

import json
from pathlib import Path

import pytest

from chorus_qa import benchmark
from chorus_qa.datasets import scene_dir
from chorus_qa.metrics import exact_match, refined_exact_match

# (scene, question, answers, type, what the fake scene model says)
ROWS = [
    ("room_0", "How many chairs are there?", ["two"], "counting", "two"),
    ("room_1", "What color is the sofa?", ["red"], "color", "red"),
    ("room_0", "What is left of the bed?", ["lamp"], "spatial", "the lamp"),  # refined only
    ("room_2", "How many lamps are there?", ["three", "3"], "counting", "3"),  # exact: "3" is listed
    ("room_1", "What is on the table?", ["cup"], "spatial", "a plate"),  # wrong
    ("room_0", "What color is the bed?", ["white"], "color", "white"),
    ("room_2", "How many tables are there?", ["two"], "counting", "2"),  # refined only (digits)
]
BLIND_ANSWER = "two"


class FakeQAModel:
    """Stands in for ChorusQAModel: prepare_scene + generate, recording how it is called."""

    class config:
        encoder_ref = "raw"
        encoder_hash = "raw"

    def __init__(self):
        self.prepared: list[str] = []
        self.batch_sizes: list[int] = []
        self.answers = {(s, q): a for s, q, _, _, a in ROWS}

    def prepare_scene(self, features, means):
        self.prepared.append(features)
        return {"scene": features}

    def generate(self, scenes, questions, situations=None, max_new_tokens=16, blind=False, poses=None):
        self.batch_sizes.append(len(questions))
        if blind:
            assert scenes is None
            return [BLIND_ANSWER] * len(questions)
        return [self.answers.get((scenes["scene"], q), "no idea") for q in questions]


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "data"
    entries = []
    for i, (scene, question, answers, qtype, _) in enumerate(ROWS):
        entries.append({"scene_id": scene, "question_id": f"val-{i}", "question": question, "answers": answers,
                        "object_ids": [], "object_names": [], "type": qtype})
        (root / "scenes" / scene).mkdir(parents=True, exist_ok=True)
    (root / "qa").mkdir(parents=True)
    (root / "qa" / "ScanQA_v1.0_val.json").write_text(json.dumps(entries))
    return root


class FakeFeatureLoader:
    """Scene "features" are the scene id; the scene folder must still exist."""

    def __init__(self, data_dir, *args, **kwargs):
        self.data_dir = data_dir
        self.source = type("Source", (), {"encoder_hash": "fake"})

    def __call__(self, scene_id):
        return scene_dir(self.data_dir, scene_id).name, None


@pytest.fixture
def fake_model(monkeypatch):
    model = FakeQAModel()
    monkeypatch.setattr(benchmark, "load_model", lambda checkpoint, device="cpu", llm_dtype=None: model)
    monkeypatch.setattr(benchmark, "SceneFeatureLoader", FakeFeatureLoader)
    return model


def run(data_dir, out, *extra):
    argv = ["--checkpoint", str(data_dir.parent / "ckpt"), "--data", str(data_dir), "--split", "val",
            "--out", str(out), "--batch-size", "2", "--no-java", *extra]
    assert benchmark.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    return metrics, benchmark.read_predictions(out / "predictions.jsonl"), (out / "metrics.md").read_text()


def test_cli_writes_consistent_files(tmp_path, data_dir, fake_model):
    metrics, preds, md = run(data_dir, tmp_path / "runs" / "scene")
    # predictions.jsonl: file order, all fields
    assert [p["question_id"] for p in preds] == [f"val-{i}" for i in range(len(ROWS))]
    assert [p["prediction"] for p in preds] == [r[4] for r in ROWS]
    assert set(preds[0]) >= {"question_id", "scene_id", "question", "prediction", "answers", "type"}
    # each scene prepared once, in first-appearance order, questions batched per scene
    assert fake_model.prepared == ["room_0", "room_1", "room_2"]
    assert fake_model.batch_sizes == [2, 1, 2, 2]
    # metrics.json agrees with the predictions file
    overall = metrics["scores"]["overall"]
    em = 100 * sum(exact_match(p["prediction"], p["answers"]) for p in preds) / len(preds)
    rem = 100 * sum(refined_exact_match(p["prediction"], p["answers"]) for p in preds) / len(preds)
    assert overall["EM@1"] == pytest.approx(em) == pytest.approx(100 * 4 / 7)
    assert overall["refined_EM"] == pytest.approx(rem) == pytest.approx(100 * 6 / 7)
    assert overall["METEOR"] is None and metrics["scores"]["meteor"].startswith("unavailable")
    per_type = metrics["scores"]["per_type"]
    assert {t: b["n"] for t, b in per_type.items()} == {"color": 2, "counting": 3, "spatial": 2}
    assert per_type["counting"]["refined_EM"] == pytest.approx(100.0)
    assert metrics["run"]["n_scenes"] == 3 and metrics["run"]["blind"] is False
    # metrics.md shows the same numbers
    assert f"| EM@1 | {overall['EM@1']:.2f} |" in md
    assert f"| counting | 3 | {per_type['counting']['EM@1']:.2f}" in md
    assert "METEOR | n/a" in md
    assert "baseline" not in metrics


def test_shuffle_scenes_answers_with_another_scene(tmp_path, data_dir, fake_model):
    metrics, preds, _ = run(data_dir, tmp_path / "runs" / "shuffled", "--shuffle-scenes")
    # a derangement in sorted order: every question sees the next room's scene
    assert metrics["run"]["shuffled_scenes"] == {"room_0": "room_1", "room_1": "room_2", "room_2": "room_0"}
    assert fake_model.prepared == ["room_1", "room_2", "room_0"]
    # the fake model only knows answers for the right scene, so the control scores zero
    assert {p["prediction"] for p in preds} == {"no idea"} and metrics["scores"]["overall"]["EM@1"] == 0
    assert (tmp_path / "runs" / "shuffled" / "metrics.md").read_text().startswith(
        "# Q&A benchmark: val split, another room's scene tokens (shuffled-scene control)")
    with pytest.raises(SystemExit, match="exclude"):
        benchmark.main(["--checkpoint", "c", "--data", str(data_dir), "--out", str(tmp_path / "x"), "--blind", "--shuffle-scenes"])
    with pytest.raises(ValueError, match="two scenes"):
        benchmark.shuffled_scenes(["room_0", "room_0"])


def test_blind_baseline_beside_the_run(tmp_path, data_dir, fake_model):
    scene_metrics, _, _ = run(data_dir, tmp_path / "runs" / "scene")
    blind_metrics, blind_preds, blind_md = run(data_dir, tmp_path / "runs" / "scene_blind", "--blind")
    assert all(p["prediction"] == BLIND_ANSWER for p in blind_preds)
    assert blind_metrics["run"]["blind"] is True and "blind (no scene tokens)" in blind_md
    blind_em = blind_metrics["scores"]["overall"]["EM@1"]
    assert blind_em == pytest.approx(100 * 2 / 7)  # "two" is right for two counting questions
    # the blind run refreshed the scene run's tables with the baseline and the gain
    refreshed = json.loads((tmp_path / "runs" / "scene" / "metrics.json").read_text())
    assert refreshed["baseline"]["overall"]["EM@1"] == pytest.approx(blind_em)
    em = scene_metrics["scores"]["overall"]["EM@1"]
    md = (tmp_path / "runs" / "scene" / "metrics.md").read_text()
    assert f"| EM@1 | {em:.2f} | {blind_em:.2f} | {em - blind_em:+.2f} |" in md
    # a later scene run finds the blind run by itself
    later, _, later_md = run(data_dir, tmp_path / "runs" / "scene_again")
    assert later["baseline"]["out"].endswith("scene_blind")
    assert f"| EM@1 | {em:.2f} | {blind_em:.2f} | {em - blind_em:+.2f} |" in later_md
    # a run with another setting (--limit) does not pick it up
    limited, preds, _ = run(data_dir, tmp_path / "runs" / "scene_limited", "--limit", "3")
    assert len(preds) == 3 and "baseline" not in limited



def test_types_keep_only_those_question_types(tmp_path, data_dir, fake_model):
    metrics, preds, _ = run(data_dir, tmp_path / "runs" / "counting", "--types", "counting, color")
    assert sorted(p["type"] for p in preds) == ["color"] * 2 + ["counting"] * 3
    assert set(metrics["scores"]["per_type"]) == {"color", "counting"} and metrics["run"]["types"] == "counting, color"
    # --limit counts after the type filter
    _, preds, _ = run(data_dir, tmp_path / "runs" / "counting2", "--types", "counting", "--limit", "2")
    assert [p["type"] for p in preds] == ["counting"] * 2
    with pytest.raises(SystemExit, match="unknown size.*this split has color, counting, spatial"):
        run(data_dir, tmp_path / "runs" / "bad", "--types", "size,counting")
    with pytest.raises(SystemExit, match="no type given"):
        run(data_dir, tmp_path / "runs" / "bad", "--types", " , ")


def test_explicit_compare(tmp_path, data_dir, fake_model):
    run(data_dir, tmp_path / "a" / "scene")
    metrics, _, md = run(data_dir, tmp_path / "b" / "scene", "--compare", str(tmp_path / "a" / "scene"))
    assert metrics["baseline"]["overall"]["EM@1"] == pytest.approx(metrics["scores"]["overall"]["EM@1"])
    assert "compare (scene)" in md and "+0.00" in md
    with pytest.raises(FileNotFoundError, match="no metrics.json"):
        run(data_dir, tmp_path / "c", "--compare", str(tmp_path / "nowhere"))


def test_run_benchmark_with_a_fake_predictor(tmp_path, data_dir):
    """The model call sits behind one function: anything with predict_split's signature works."""
    from chorus_qa.datasets import load_qa_split

    examples = load_qa_split(data_dir, "val")

    def echo_first_answer(model, exs, data, blind, batch_size, max_new_tokens=32):
        return {ex.question_id: ex.answers[0] for ex in exs}

    metrics = benchmark.run_benchmark(None, examples, data_dir, tmp_path / "oracle", predictor=echo_first_answer, use_java=False)
    overall = metrics["scores"]["overall"]
    assert overall["EM@1"] == overall["refined_EM"] == 100.0
    assert overall["BLEU-1"] == pytest.approx(100.0, rel=1e-6) and overall["ROUGE-L"] == pytest.approx(100.0)


def test_generate_count_mismatch_is_an_error(tmp_path, data_dir, fake_model):
    fake_model.generate = lambda *a, **k: ["only one"]
    with pytest.raises(RuntimeError, match="1 answers for 2 questions"):
        run(data_dir, tmp_path / "bad")


def test_help_and_argument_checks(capsys):
    with pytest.raises(SystemExit) as info:
        benchmark.main(["--help"])
    assert info.value.code == 0 and "--blind" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="batch-size"):
        benchmark.main(["--checkpoint", "c", "--data", "d", "--out", "o", "--batch-size", "0"])


# ----------------------------------------------------------------------------- with the real model


def test_cli_with_a_tiny_random_model(tmp_path, monkeypatch):
    """ChorusQAModel on a tiny random Llama with raw Gaussian features, scenes read from SceneSplat folders."""
    import torch

    from chorus_qa.model import ChorusQAModel, LoraSettings, QAModelConfig
    from data import GaussianScene
    from data.io import save_scene

    config = QAModelConfig(feature_dim=11, llm="tiny-random-llama", num_scene_tokens=8, token_dim=32,
                           num_neighbors=8, max_points=256, lora=LoraSettings(r=4, alpha=8, dropout=0.0),
                           encoder_ref="raw", encoder_hash="raw")
    ChorusQAModel.build(config).save_pretrained(tmp_path / "ckpt")
    g = torch.Generator().manual_seed(0)
    entries = []
    for s in range(2):
        n = 150
        quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1)
        quats = quats * torch.where(quats[:, :1] < 0, -1.0, 1.0)
        scene = GaussianScene(means=torch.rand(n, 3, generator=g) * 3, quats=quats,
                              scales=torch.rand(n, 3, generator=g) * 0.05 + 0.01,
                              opacities=torch.rand(n, generator=g), colors=torch.rand(n, 3, generator=g))
        save_scene(scene, tmp_path / "data" / "scenes" / f"room_{s}")
        entries += [{"scene_id": f"room_{s}", "question_id": f"val-{s}-{i}", "question": f"How many chairs {i}?",
                     "answers": ["two"], "type": "counting"} for i in range(3)]
    (tmp_path / "data" / "qa").mkdir()
    (tmp_path / "data" / "qa" / "ScanQA_v1.0_val.json").write_text(json.dumps(entries))

    prepared = []
    original = ChorusQAModel.prepare_scene
    monkeypatch.setattr(ChorusQAModel, "prepare_scene",
                        lambda self, f, m: prepared.append(f.shape) or original(self, f, m))
    loaded = []  # load the checkpoint once (the first run); later runs reuse it to keep the test short
    real_load = benchmark.load_model
    monkeypatch.setattr(benchmark, "load_model",
                        lambda ckpt, device="cpu", llm_dtype=None: loaded[0] if loaded else loaded.append(real_load(ckpt, device)) or loaded[0])
    data = tmp_path / "data"
    base = ["--checkpoint", str(tmp_path / "ckpt"), "--data", str(data), "--batch-size", "2",
            "--max-new-tokens", "3", "--no-java"]
    assert benchmark.main([*base, "--out", str(tmp_path / "runs" / "scene")]) == 0
    assert prepared == [(150, 11), (150, 11)]  # one prefix per scene
    assert sorted(p.name for p in (data / "feature_cache" / "raw").iterdir()) == ["room_0.safetensors", "room_1.safetensors"]
    first = benchmark.read_predictions(tmp_path / "runs" / "scene" / "predictions.jsonl")
    # again, now from the feature cache: deterministic, identical answers
    assert benchmark.main([*base, "--out", str(tmp_path / "runs" / "scene_again")]) == 0
    assert benchmark.read_predictions(tmp_path / "runs" / "scene_again" / "predictions.jsonl") == first
    assert benchmark.main([*base, "--out", str(tmp_path / "runs" / "scene_blind"), "--blind"]) == 0
    assert len(prepared) == 4  # the blind run encoded nothing
    md = (tmp_path / "runs" / "scene" / "metrics.md").read_text()
    assert "| metric | this run | blind | gain |" in md
    metrics = json.loads((tmp_path / "runs" / "scene" / "metrics.json").read_text())
    assert metrics["scores"]["n_scored"] == 6 and metrics["run"]["encoder_hash"] == "raw"


def test_relative_encoder_ref_resolves_beside_the_checkpoint_not_the_cwd(tmp_path, monkeypatch):
    """A released checkpoint stores encoder_ref="encoder"; run from the repository root, where ./encoder is the
    package folder, it must still mean <checkpoint>/encoder."""
    from encoder import ChorusEncoder, EncoderConfig

    ckpt = tmp_path / "ckpt"
    cfg = EncoderConfig(grid_size=0.1, channels=(8, 16), depths=(1, 1), heads=(2, 2), patch_size=32)
    ChorusEncoder(cfg).save_pretrained(ckpt / "encoder")
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert Path("encoder").is_dir()  # the package folder, the trap this guards against
    loader = benchmark.SceneFeatureLoader(tmp_path / "data", "encoder", checkpoint=ckpt)
    assert Path(loader.source.encoder_ref) == ckpt / "encoder"
    assert loader.source.out_dim == 24


def test_paired_comparison_of_runs_matches_hand_computed_values(tmp_path):
    import importlib.util
    import json
    import math

    spec = importlib.util.spec_from_file_location("qa_paired", Path(__file__).resolve().parents[1] / "benchmarks" / "qa_paired.py")
    qa_paired = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(qa_paired)

    def write(name, preds):
        folder = tmp_path / name
        folder.mkdir()
        rows = [{"question_id": f"q{i}", "prediction": p, "answers": ["yes"], "type": "existence" if i < 2 else "color"}
                for i, p in enumerate(preds)]
        (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return folder

    a = write("a", ["yes", "no", "yes", "no"])    # EM 1 0 1 0
    b = write("b", ["yes", "yes", "no", "yes"])   # EM 1 1 0 1
    res = qa_paired.compare({"a": a, "b": b}, "a")
    overall = res["groups"]["overall"]
    assert res["questions"] == 4 and overall["a"] == 50.0 and overall["b"] == 75.0
    # differences b - a: 0, 1, -1, 1 -> mean 0.25, sd sqrt(((-.25)^2 + .75^2 + 1.25^2 + .75^2) / 3)
    sd = math.sqrt((0.0625 + 0.5625 + 1.5625 + 0.5625) / 3)
    assert math.isclose(overall["b_minus_a"]["diff"], 25.0) and math.isclose(overall["b_minus_a"]["se"], 100 * sd / 2)
    assert res["groups"]["existence"]["b"] == 100.0 and res["groups"]["color"]["a"] == 50.0
    assert "b - a" in qa_paired.markdown(res)
    with pytest.raises(ValueError, match="reference"):
        qa_paired.compare({"a": a}, "c")
