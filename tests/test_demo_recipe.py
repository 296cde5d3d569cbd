"""scripts/make_demo_checkpoint.sh: which commands the recipe runs for its knobs (with a stand-in for python)."""

import os
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def recipe_calls(tmp_path, **env):
    log = tmp_path / "calls.txt"
    stub = tmp_path / "py"
    stub.write_text(f'#!/usr/bin/env bash\nprintf "%q " "$@" >> {shlex.quote(str(log))}\necho >> {shlex.quote(str(log))}\n')
    stub.chmod(0o755)
    run_env = {**os.environ, "PY": str(stub), "WORK": str(tmp_path / "work"), "OUT": str(tmp_path / "out"), **env}
    subprocess.run(["bash", "scripts/make_demo_checkpoint.sh"], cwd=ROOT, env=run_env, check=True, capture_output=True)
    return [shlex.split(line) for line in log.read_text().splitlines()]


def settings(call):
    return dict(call[i + 1].split("=", 1) for i, arg in enumerate(call) if arg == "--set")


def test_one_run_recipe_trains_one_qa_run_and_exports_it(tmp_path):
    """Release D's recipe: one Q&A run over all questions (QA_CONTINUE_LR empty skips step 4b)."""
    calls = recipe_calls(tmp_path, ENCODER="release", QA_CONFIG="configs/qa_synth.yaml", QA_EXAMPLES="50000",
                         QA_CONTINUE_LR="")
    pretrain = [c for c in calls if c[0] == "benchmarks/pretrain_probe.py"]
    assert len(pretrain) == 1 and pretrain[0][pretrain[0].index("--work") + 1] == str(tmp_path / "work" / "pretrain")
    trains = [c for c in calls if c[0] == "chorus_qa/train_qa.py"]
    assert len(trains) == 1
    assert trains[0][trains[0].index("--config") + 1] == "configs/qa_synth.yaml"
    assert settings(trains[0])["max_train_examples"] == "50000"
    assert settings(trains[0])["out_dir"] == str(tmp_path / "work" / "qa")
    exports = [c for c in calls if c[:2] == ["scripts/export_demo.py", "qa"]]
    assert exports and exports[0][exports[0].index("--run") + 1] == str(tmp_path / "work" / "qa")


def test_default_recipe_is_release_l_228_room_encoder_and_a_warm_started_run_over_the_unseen_questions(tmp_path):
    calls = recipe_calls(tmp_path)
    work = tmp_path / "work"
    # the 228-room encoder's four pretraining stages, exported from the last
    pretrain = [c for c in calls if c[0] == "benchmarks/pretrain_probe.py"]
    assert len(pretrain) == 4
    export = next(c for c in calls if c[:2] == ["scripts/export_demo.py", "encoder"])
    assert export[export.index("--run") + 1] == str(work / "enc228" / "s4" / "pretrain")
    trains = [c for c in calls if c[0] == "chorus_qa/train_qa.py"]
    assert [c[c.index("--config") + 1] for c in trains] == ["configs/qa_synth_situated.yaml"] * 2
    first, rest = [settings(c) for c in trains]
    assert first["max_train_examples"] == "18000" and first["out_dir"] == str(work / "qa")
    assert rest == {"max_train_examples": "null", "init_from": str(work / "qa" / "last"),
                    "exclude_seen_by": str(work / "qa"), "stage2.lr": "2.5e-4", "data_dir": str(work / "qa_data"),
                    "encoder": str(tmp_path / "out" / "encoder"), "out_dir": str(work / "qa_rest"),
                    "model.comparison_order": "true"}
    assert "model.comparison_order" not in first
    # the release allows for shading in its colour words and gives size questions their size group (settings
    # without weights, set at export)
    export_qa = next(c for c in calls if c[:2] == ["scripts/export_demo.py", "qa"])
    assert settings(export_qa) == {"color_shading": "0.6", "size_group": "true"}
    # the release, its model card and the benchmarks come from the continued run
    for kind in ("qa", "card"):
        call = next(c for c in calls if c[:2] == ["scripts/export_demo.py", kind])
        assert call[call.index("--run") + 1] == str(work / "qa_rest")


def test_extra_settings_reach_both_qa_runs(tmp_path):
    calls = recipe_calls(tmp_path, QA_SET="model.size_words=true seed=3")
    trains = [c for c in calls if c[0] == "chorus_qa/train_qa.py"]
    assert len(trains) == 2
    for call in trains:
        assert settings(call)["model.size_words"] == "true" and settings(call)["seed"] == "3"
    # QA_CONTINUE_SET reaches the continuation only, after QA_SET
    (tmp_path / "cont").mkdir()
    first, rest = [c for c in recipe_calls(tmp_path / "cont", QA_SET="model.size_first=true",
                                           QA_CONTINUE_SET="model.comparison_order=true")
                   if c[0] == "chorus_qa/train_qa.py"]
    assert settings(first)["model.size_first"] == "true" and "model.comparison_order" not in settings(first)
    assert settings(rest)["model.size_first"] == "true" and settings(rest)["model.comparison_order"] == "true"
    assert settings(rest)["init_from"].endswith("qa/last")
    (tmp_path / "plain").mkdir()
    plain = [c for c in recipe_calls(tmp_path / "plain") if c[0] == "chorus_qa/train_qa.py"]
    assert len(plain) == 2 and not any("model.size_words" in settings(c) for c in plain)
    # release I's recipe: empty QA_CONTINUE_SET / QA_EXPORT_SET switch the defaults off
    (tmp_path / "i").mkdir()
    calls = recipe_calls(tmp_path / "i", QA_SET="model.size_first=false model.sector_order=false", QA_CONTINUE_SET="",
                         QA_EXPORT_SET="")
    assert not any("model.comparison_order" in settings(c) for c in calls if c[0] == "chorus_qa/train_qa.py")
    assert settings(next(c for c in calls if c[:2] == ["scripts/export_demo.py", "qa"])) == {}


def test_228_room_encoder_recipe_exports_and_scores_its_own_build(tmp_path):
    calls = recipe_calls(tmp_path)  # ENCODER=228 is the default
    work = tmp_path / "work"
    pretrain = [c for c in calls if c[0] == "benchmarks/pretrain_probe.py"]
    assert len(pretrain) == 4 and all(c[c.index("--data-dir") + 1] == str(work / "enc228" / "synth") for c in pretrain)
    export = next(c for c in calls if c[:2] == ["scripts/export_demo.py", "encoder"])
    assert export[export.index("--run") + 1] == str(work / "enc228" / "s4" / "pretrain")
    card = next(c for c in calls if c[:2] == ["scripts/export_demo.py", "card"])
    assert card[card.index("--pretrain-results") + 1] == str(work / "enc228" / "pretrain_probe_228.json")
    assert pretrain[-1][pretrain[-1].index("--out") + 1] == str(work / "enc228" / "pretrain_probe_228.json")
