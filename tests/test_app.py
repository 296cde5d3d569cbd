"""The Gradio app end to end: a real server process driven by gradio_client, plus the service it wires.

A tiny random-weight checkpoint (2-layer Llama, 3-stage encoder, random language head) stands in for the
demo checkpoint: these tests check the plumbing, not answer quality. Answers are checked against the same
checkpoint run directly (ChorusQAModel on the same encoder features), so the app must return exactly what
the model says.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DEMO_ROOMS = 2
DEMO_DENSITY = 0.05


def build_tiny_checkpoint(root: Path) -> Path:
    """Q&A model (tiny random Llama + LoRA) in ``root``, encoder in ``root/encoder``, teacher heads in ``root/heads``."""
    from chorus_qa.feature_cache import encoder_checkpoint_hash
    from chorus_qa.model import ChorusQAModel, LoraSettings, QAModelConfig
    from encoder import ChorusEncoder, EncoderConfig
    from encoder.heads import HeadsConfig, MultiTeacherHeads

    root = Path(root)
    scratch = root.parent / (root.name + "_parts")
    torch.manual_seed(0)
    enc = ChorusEncoder(EncoderConfig(grid_size=0.1, channels=(8, 16, 16), depths=(1, 1, 1), heads=(2, 2, 4),
                                      patch_size=64, drop_path=0.0, shuffle_orders=False, embed_kernel=3))
    enc.save_pretrained(scratch / "encoder")
    config = QAModelConfig(feature_dim=enc.out_dim, llm="tiny-random-llama", num_scene_tokens=8, token_dim=32,
                           num_neighbors=8, max_points=2048, encoder_ref=str(root / "encoder"),
                           encoder_hash=encoder_checkpoint_hash(scratch / "encoder"),
                           lora=LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj"]))
    ChorusQAModel.build(config).save_pretrained(root)   # replaces the folder: encoder and heads go in afterwards
    os.replace(scratch / "encoder", root / "encoder")
    MultiTeacherHeads(HeadsConfig(in_dim=enc.out_dim, teacher_dims={"caption_minilm": 384, "efficientnet_lite0": 16})).save_pretrained(root / "heads")
    scratch.rmdir()
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(proc: subprocess.Popen, url: str, log: Path, timeout: float = 120.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"app did not answer at {url} within {timeout} s:\n{log.read_text()[-3000:]}")


def start_app(checkpoint: Path, cache: Path, log: Path, *extra: str, fast: bool = True):
    """(process, url) of ``python app.py`` on a free local port; the caller stops it.

    fast: two sparse demo rooms, short answers, no heat-map render (test speed); False: the app's defaults.
    """
    port = free_port()
    env = dict(os.environ, CHORUS_CACHE=str(cache), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--checkpoint", str(checkpoint), *extra]
    if fast:
        cmd += ["--demo-rooms", str(DEMO_ROOMS), "--demo-density", str(DEMO_DENSITY), "--max-new-tokens", "12",
                "--max-upload-mb", "5", "--no-heatmap"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_server(proc, url, log)
    except BaseException:
        stop_app(proc)
        raise
    return proc, url


def stop_app(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "demo")


def text_of(message: dict) -> str:
    """The text of a chat message as gradio_client returns it (a string or a list of typed parts)."""
    content = message["content"]
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


def reference_answer(checkpoint: Path, scene, question: str, max_new_tokens: int) -> str:
    """What the checkpoint answers, computed without the app (same encoder, same model, greedy)."""
    from chorus_qa.model import ChorusQAModel
    from encoder import ChorusEncoder, EncoderPredictor

    model = ChorusQAModel.from_pretrained(checkpoint)
    features = EncoderPredictor(ChorusEncoder.from_pretrained(checkpoint / "encoder")).encode(scene).to(torch.float16)
    context = model.prepare_scene(features.float(), scene.means.float())
    return "".join(model.stream(context, question, max_new_tokens=max_new_tokens)).strip()


# ---------------------------------------------------------------------------------------------- the real server
def test_app_serves_demo_rooms_answers_and_rejects_broken_files(tiny_checkpoint, tmp_path):
    from gradio_client import Client, handle_file

    from chorus_qa.demo import prepare_demo_rooms

    cache = tmp_path / "cache"
    proc, url = start_app(tiny_checkpoint, cache, tmp_path / "app.log")
    try:
        client = Client(url, verbose=False)
        rooms = prepare_demo_rooms(seeds=(3, 2), density=DEMO_DENSITY, cache_dir=cache / "demo")
        room = rooms[1]
        viewer, status, *_ = client.predict(room.key, api_name="/select_demo")
        assert room.title in status and "encoded" in status, status
        assert Path(viewer).suffix == ".splat" and Path(viewer).stat().st_size == 32 * room.num_gaussians

        question = room.example_questions[0]
        chat, box, *_ = client.predict(question, [], api_name="/ask")
        answer = text_of(chat[-1])
        assert text_of(chat[-2]) == question and box == ""
        expected = reference_answer(tiny_checkpoint, room.load(), question, max_new_tokens=12)
        assert answer.split("\n\n*Objects:")[0] == (expected or "(the model gave an empty answer)")

        chat, *_ = client.predict("   ", [], api_name="/ask")
        assert "question is empty" in text_of(chat[-1])

        broken = tmp_path / "broken.ply"
        broken.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\nend_header\n\x00\x01")
        _, status, *_ = client.predict(handle_file(str(broken)), api_name="/upload_scene")
        assert status.startswith("❌") and "broken.ply" in status and "not a scene I can read" in status, status

        _, _, message = client.predict("lamp", api_name="/search")
        assert "Gaussians" in message, message             # random head: any count, but a real answer

        assert proc.poll() is None                          # errors did not take the server down
        chat, *_ = client.predict(question, [], api_name="/ask")
        assert text_of(chat[-1]) == answer                 # the broken upload left the scene as it was
    finally:
        stop_app(proc)


def test_app_without_checkpoint_says_how_to_make_it(tmp_path):
    from gradio_client import Client

    proc, url = start_app(tmp_path / "no_such_checkpoint", tmp_path / "cache", tmp_path / "app.log")
    try:
        client = Client(url, verbose=False)
        viewer, status, *_ = client.predict("synth_2", api_name="/select_demo")
        assert "not encoded (no model loaded)" in status and Path(viewer).is_file()
        chat, *_ = client.predict("how many chairs are there?", [], api_name="/ask")
        reply = text_of(chat[-1])
        assert "no_such_checkpoint" in reply and "make demo-checkpoint" in reply
    finally:
        stop_app(proc)
    assert "make demo-checkpoint" in (tmp_path / "app.log").read_text()


# ---------------------------------------------------------------------------------------------- the service
def test_search_relevancy_matches_brute_force():
    from chorus_qa.highlight import relevancy

    g = torch.Generator().manual_seed(0)
    lang = torch.nn.functional.normalize(torch.randn(50, 6, generator=g), dim=1)
    q = torch.nn.functional.normalize(torch.randn(6, generator=g), dim=0)
    canon = torch.nn.functional.normalize(torch.randn(3, 6, generator=g), dim=1)
    got = relevancy(lang, q, canon, temperature=0.1)
    for i in range(50):
        sq = float(lang[i] @ q)
        ref = min(float(torch.softmax(torch.tensor([sq, float(lang[i] @ c)]) / 0.1, 0)[0]) for c in canon)
        assert abs(float(got[i]) - ref) < 1e-5
    # above 0.5 exactly when the query beats every canonical phrase
    beats = (lang @ q)[:, None] > lang @ canon.T
    assert torch.equal(got > 0.5, beats.all(1))


class _WordVectors:
    """Stand-in text encoder: a fixed random unit vector per string (64-D)."""

    dim = 64

    def encode(self, texts):
        out = []
        for t in texts:
            g = torch.Generator().manual_seed(sum(ord(c) * 31 ** i for i, c in enumerate(t)) % (2 ** 31))
            out.append(torch.nn.functional.normalize(torch.randn(self.dim, generator=g), dim=0))
        return torch.stack(out)


def test_search_competes_with_structure_and_vocabulary_but_not_with_the_query():
    from chorus_qa.highlight import OpenVocabSearch, SearchConfig, competing_phrases

    cfg = SearchConfig()
    assert "lamp" not in competing_phrases("red lamp", cfg) and {"chair", "wall", "object"} <= set(competing_phrases("red lamp", cfg))
    assert "wall" not in competing_phrases("the wall", cfg) and "coffee table" in competing_phrases("table", cfg)
    assert "chair" not in competing_phrases("lamp", SearchConfig(vocabulary_competitors=False))
    enc = _WordVectors()
    lamp, wall, chair = enc.encode(["lamp", "wall", "chair"])
    lang = torch.stack([lamp] * 4 + [wall] * 4 + [chair] * 4)  # Gaussians whose language feature names their object
    search = OpenVocabSearch(torch.nn.Linear(64, 64), enc, cfg)
    for query, first in (("lamp", 0), ("wall", 4), ("chair", 8)):
        expected = torch.zeros(12, dtype=torch.bool)
        expected[first:first + 4] = True
        assert torch.equal(search.search(lang, query).mask, expected), query


def test_object_mentions_prefers_longest_names_and_plurals():
    from chorus_qa.highlight import object_mentions, object_vocabulary

    vocab = object_vocabulary()
    assert object_mentions("Two coffee tables, a table and the couches.", vocab) == ["coffee table", "table", "couch"]
    assert object_mentions("the bookshelves and a tv stand near the tv", vocab) == ["bookshelf", "tv stand", "tv"]
    assert object_mentions("red", vocab) == []
    assert object_mentions("a tablet", vocab) == []      # whole words only


def test_missing_checkpoint_is_reported_not_replaced(tmp_path):
    from chorus_qa.app_service import CheckpointMissing, find_checkpoint

    with pytest.raises(CheckpointMissing, match="make demo-checkpoint"):
        find_checkpoint(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(CheckpointMissing, match="projector.safetensors"):
        find_checkpoint(tmp_path / "half")


def test_service_encodes_once_and_highlights(tiny_checkpoint, tmp_path):
    from chorus_qa.app_service import AppConfig, ChorusAppService, UserError

    service = ChorusAppService(AppConfig(checkpoint=str(tiny_checkpoint), llm="tiny-random-llama", demo_seeds=(2,), demo_density=DEMO_DENSITY,
                                         max_new_tokens=6, render_heatmap=True, cache_dir=str(tmp_path)))
    assert service.ready, service.status_markdown()
    calls = []
    real_encode = service.models.session.encoder_predictor.encode
    service.models.session.encoder_predictor.encode = lambda scene: calls.append(len(scene)) or real_encode(scene)
    view = service.open_demo("synth_2")
    again = service.open_demo("synth_2")
    assert calls == [service.demo_rooms[0].num_gaussians] and again.key == view.key
    answers = [service.answer(view.key, "what kind of room is this?") for _ in range(2)]
    assert answers[0] == answers[1] and calls == [service.demo_rooms[0].num_gaussians]

    hit = service.search(view.key, "bed")
    scene = service._opened(view.key).scene
    from data import load_scene

    shown = load_scene(hit.viewer_path)
    assert len(shown) == len(scene) and hit.image.shape == (240, 320, 3)
    # highlighted Gaussians get the warm highlight ramp (red channel 1), the others a grey
    colours = shown.colors
    grey = (colours.max(1).values - colours.min(1).values) < 0.02
    assert int((~grey).sum()) >= hit.num_matches * 0.95 and int(grey.sum()) >= (len(scene) - hit.num_matches) * 0.95

    with pytest.raises(UserError, match="empty"):
        next(service.ask(view.key, " "))
    with pytest.raises(UserError, match="Choose a demo room"):
        next(service.ask(None, "hi"))
    bad = tmp_path / "scene.txt"
    bad.write_text("hello")
    with pytest.raises(UserError, match="unsupported file type"):
        service.open_file(bad)


def test_viewer_frame_is_one_rigid_motion_for_means_and_quaternions():
    from chorus_qa.app_service import to_viewer_frame
    from data import GaussianScene

    g = torch.Generator().manual_seed(1)
    n = 200
    q = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1)
    scene = GaussianScene(means=torch.rand(n, 3, generator=g) * 4, quats=torch.where(q[:, :1] < 0, -q, q),
                          scales=torch.rand(n, 3, generator=g) * 0.1 + 0.01, opacities=torch.rand(n, generator=g),
                          colors=torch.rand(n, 3, generator=g))
    out = to_viewer_frame(scene)
    rot = torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])            # z up -> y up

    def matrix(quat):  # wxyz -> [n, 3, 3]
        w, x, y, z = quat.unbind(1)
        return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1).view(-1, 3, 3)

    assert torch.allclose(matrix(out.quats), rot @ matrix(scene.quats), atol=1e-5)
    # pairwise offsets rotate the same way (a rigid motion), and "up" becomes +y
    assert torch.allclose(out.means[1:] - out.means[:1], (scene.means[1:] - scene.means[:1]) @ rot.T, atol=1e-5)
    assert torch.allclose(out.means[:, 1] - out.means[0, 1], scene.means[:, 2] - scene.means[0, 2], atol=1e-5)
