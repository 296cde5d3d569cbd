"""ChorusQAModel on a tiny random Llama: prompt assembly, labels, trainable set, checkpoints, KV reuse, training."""

import numpy as np
import pytest
import torch

from chorus_qa.feature_cache import FeatureCache, encoder_checkpoint_hash
from chorus_qa.model import (
    IGNORE_INDEX,
    SCENE_TOKEN,
    ChorusQAModel,
    LoraSettings,
    QABatch,
    QAModelConfig,
    merge_scene_tokens,
)
from chorus_qa.scene_tokens import (
    SceneTokenizer,
    SceneTokenizerConfig,
    farthest_point_sample,
    knn_indices,
    normalize_positions,
    pool_cells,
)

K = 8
FEAT = 16


def tiny_config(**overrides) -> QAModelConfig:
    base = dict(feature_dim=FEAT, llm="tiny-random-llama", num_scene_tokens=K, token_dim=32, num_neighbors=8,
                max_points=256, lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    base.update(overrides)
    return QAModelConfig(**base)


@pytest.fixture
def model():
    return ChorusQAModel.build(tiny_config())


def random_scene(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, FEAT, generator=g), torch.rand(n, 3, generator=g) * 4


def make_batch(scenes, questions, answers):
    feats = torch.cat([f for f, _ in scenes])
    means = torch.cat([m for _, m in scenes])
    offset = torch.cumsum(torch.tensor([len(f) for f, _ in scenes]), 0)
    return QABatch(feats, means, offset, list(questions), list(answers))


# ----------------------------------------------------------------------------- scene tokens
def test_farthest_point_sample_matches_brute_force():
    pts = torch.rand(200, 3, generator=torch.Generator().manual_seed(1))
    got = farthest_point_sample(pts, 12, start=5).tolist()
    p = pts.numpy().astype(np.float64)
    ref = [5]
    for _ in range(11):  # brute force: point maximising its distance to the nearest chosen point
        d = np.min(np.linalg.norm(p[:, None] - p[ref][None], axis=2), axis=1)
        ref.append(int(np.argmax(d)))
    assert got == ref


def test_knn_matches_sorting():
    g = torch.Generator().manual_seed(2)
    q, pts = torch.rand(5, 3, generator=g), torch.rand(50, 3, generator=g)
    got = knn_indices(q, pts, 7)
    ref = torch.cdist(q, pts).argsort(1)[:, :7]
    assert torch.equal(got, ref)


def test_pool_cells_matches_a_per_cell_loop():
    g = torch.Generator().manual_seed(4)
    pos, feats = torch.rand(60, 3, generator=g), torch.randn(60, 5, generator=g) * 3 + 1
    centres = torch.cat([pos[[3, 17, 40]], pos[[17]]])  # the repeated centre's cell is empty
    pooled, geom = pool_cells(feats, pos, centres, offset_scale=2.0)
    normed = (feats - feats.mean(1, keepdim=True)) / feats.var(1, unbiased=False, keepdim=True).add(1e-5).sqrt()
    owner = torch.tensor([int(np.argmin([float((p - c).norm()) for c in centres])) for p in pos])
    for j in range(3):
        m = owner == j
        off = (pos[m] - centres[j]) * 2.0
        assert torch.allclose(pooled[j, :5], normed[m].mean(0), atol=1e-5)
        assert torch.allclose(pooled[j, 5:], normed[m].amax(0), atol=1e-5)
        assert torch.allclose(geom[j, :3], off.mean(0), atol=1e-5)
        assert torch.allclose(geom[j, 3:6], off.std(0, unbiased=False), atol=1e-4)
        assert torch.isclose(geom[j, 6], torch.log1p(m.sum().float()))
    assert int((owner == 3).sum()) == 0 and torch.equal(pooled[3], torch.zeros(10)) and torch.equal(geom[3], torch.zeros(7))


def test_cell_tokens_see_every_gaussian_knn_tokens_do_not():
    """Changing one far-from-centre Gaussian changes a cell token; with kNN pooling most Gaussians are invisible."""
    f, m = random_scene(400, 5)
    seen = {}
    for pooling in ("cell", "knn"):
        tok = SceneTokenizer(SceneTokenizerConfig(in_dim=FEAT, num_tokens=K, token_dim=16, pooling=pooling, num_neighbors=4,
                                                  max_points=512)).eval()
        base, centres = tok(f, m)
        far = int(torch.cdist(m, centres).min(1).values.argmax())  # the Gaussian farthest from every centre
        f2 = f.clone()
        f2[far, 0] += 10.0  # one channel (a shift of all channels is removed by the layer norm)
        seen[pooling] = not torch.allclose(tok(f2, m)[0], base)
    assert seen == {"cell": True, "knn": False}


@pytest.mark.parametrize("pooling", ["cell", "knn"])
def test_scene_tokenizer_deterministic_batched_and_normalised(pooling):
    cfg = SceneTokenizerConfig(in_dim=FEAT, num_tokens=K, token_dim=32, num_neighbors=8, max_points=128, pooling=pooling)
    tok = SceneTokenizer(cfg).eval()
    (f1, m1), (f2, m2) = random_scene(300, 0), random_scene(100, 1)
    t1, c1 = tok(f1, m1)
    t1b, c1b = tok(f1, m1)
    assert t1.shape == (K, 32) and c1.shape == (K, 3)
    assert torch.equal(t1, t1b) and torch.equal(c1, c1b)
    # centres are actual Gaussian positions
    assert (torch.cdist(c1, m1).min(1).values < 1e-6).all()
    tb, cb = tok(torch.cat([f1, f2]), torch.cat([m1, m2]), torch.tensor([300, 400]))
    t2, c2 = tok(f2, m2)
    assert torch.allclose(tb[0], t1, atol=1e-6) and torch.allclose(tb[1], t2, atol=1e-6)
    pos, _, _ = normalize_positions(m1)
    assert pos.abs().max() <= 1 + 1e-6 and torch.isclose(pos.abs().max(), torch.tensor(1.0))


def test_scene_tokenizer_fewer_gaussians_than_tokens():
    tok = SceneTokenizer(SceneTokenizerConfig(in_dim=FEAT, num_tokens=K, token_dim=16, num_neighbors=4, max_points=64)).eval()
    f, m = random_scene(3)
    tokens, centres = tok(f, m)
    assert tokens.shape == (K, 16) and torch.isfinite(tokens).all()


# ----------------------------------------------------------------------------- prompt + labels
def test_placeholder_count_mismatch_raises(model):
    ids, labels = model.build_token_ids(["what is on the table?"], ["a cup"])
    h = model.causal_lm.config.hidden_size
    embeds = model.causal_lm.get_input_embeddings()(ids)
    with pytest.raises(ValueError, match=f"{K} {SCENE_TOKEN} placeholders but {K - 1} scene tokens"):
        merge_scene_tokens(embeds, ids, torch.zeros(1, K - 1, h), model.scene_token_id)
    with pytest.raises(ValueError, match="placeholders"):
        model.loss_from_ids(ids, labels, torch.zeros(2, K, h))  # two scenes for one prompt
    with pytest.raises(ValueError, match="no scene tokens"):
        model.embed(ids, None)


def test_merge_places_tokens_in_order(model):
    ids, _ = model.build_token_ids(["q1?", "a longer question?"], ["x", "y"])
    h = model.causal_lm.config.hidden_size
    scene = torch.randn(2, K, h)
    merged = model.embed(ids, scene)
    for b in range(2):
        pos = (ids[b] == model.scene_token_id).nonzero().squeeze(1)
        assert torch.equal(merged[b, pos], scene[b])
        other = ids[b] != model.scene_token_id
        assert torch.equal(merged[b, other], model.causal_lm.get_input_embeddings()(ids[b, other]))


def test_labels_mask_everything_but_the_answer(model):
    questions, answers = ["what colour is the sofa?", "how many chairs?"], ["dark blue", "4"]
    ids, labels = model.build_token_ids(questions, answers, situations=["I sit on the bed.", None])
    tok = model.tokenizer
    for b, ans in enumerate(answers):
        kept = labels[b] != IGNORE_INDEX
        assert torch.equal(ids[b, kept], labels[b, kept])  # labels are the tokens themselves
        expected = tok(ans, add_special_tokens=False)["input_ids"] + [model.end_of_turn_id]
        assert labels[b, kept].tolist() == expected
        # the kept span is contiguous and sits right after the assistant header
        idx = kept.nonzero().squeeze(1)
        assert (idx.diff() == 1).all()
        prompt = tok.decode(ids[b, : int(idx[0])])
        assert prompt.endswith("<|im_start|>assistant\n") and questions[b] in prompt
    assert "I sit on the bed." in tok.decode(ids[0])
    assert int((ids == model.scene_token_id).sum(1).unique()) == K


def test_packed_turns_render_the_whole_conversation_and_label_every_answer(model):
    questions, answers = ["what colour is the sofa?", "how many chairs?", "is there a lamp?"], ["dark blue", "4", "yes"]
    situations = ["I sit on the bed.", None, None]
    ids, labels = model.build_token_ids(questions, answers, situations, turns=[2, 1])
    tok = model.tokenizer
    # row 0 is exactly the chat template's rendering of the two-turn conversation (placeholders in the system turn)
    messages = [model._system_message(blind=False),
                {"role": "user", "content": "I sit on the bed. what colour is the sofa?"}, {"role": "assistant", "content": "dark blue"},
                {"role": "user", "content": "how many chairs?"}, {"role": "assistant", "content": "4"}]
    row = ids[0][: int((labels[0] != IGNORE_INDEX).nonzero().max()) + 1]
    assert tok.decode(row).rstrip("\n") == model._render(messages).rstrip("\n")
    kept = labels[0] != IGNORE_INDEX
    eot = [model.end_of_turn_id]
    assert labels[0, kept].tolist() == tok("dark blue", add_special_tokens=False)["input_ids"] + eot + tok("4", add_special_tokens=False)["input_ids"] + eot
    # a single-turn row is what the unpacked builder makes
    single_ids, single_labels = model.build_token_ids(questions[2:], answers[2:])
    n = single_ids.shape[1]
    assert torch.equal(ids[1, :n], single_ids[0]) and torch.equal(labels[1, :n], single_labels[0])
    with pytest.raises(ValueError, match="sum to the number of questions"):
        model.build_token_ids(questions, answers, situations, turns=[2, 2])


def test_blind_prompt_has_no_placeholders_and_trains(model):
    ids, labels = model.build_token_ids(["what is this?"], ["a lamp"], blind=True)
    assert not (ids == model.scene_token_id).any()
    loss = model.loss_from_ids(ids, labels, None)
    assert torch.isfinite(loss)


def test_only_lora_projector_and_tokenizer_train(model):
    for stage, want_lora in ((1, False), (2, True)):
        model.set_trainable(stage)
        for name, p in model.named_parameters():
            is_head = name.startswith(("scene_tokenizer.", "projector."))
            is_lora = "lora_" in name
            assert p.requires_grad == (is_head or (want_lora and is_lora)), name
    assert any("lora_" in n for n, _ in model.named_parameters())


def test_loss_equals_reference_cross_entropy(model):
    """The answer-only lm_head shortcut equals the full-logits cross-entropy with ignored labels."""
    f, m = random_scene()
    batch = make_batch([(f, m), (f, m)], ["what?", "where is the lamp?"], ["red", "near the bed"])
    model.eval()
    with torch.no_grad():
        loss = model(batch)
        ids, labels = model.build_token_ids(batch.questions, batch.answers)
        embeds = model.embed(ids, model.scene_embeddings(batch.features, batch.means, batch.offset))
        logits = model.causal_lm(inputs_embeds=embeds).logits
        ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                                ignore_index=IGNORE_INDEX)
    assert torch.allclose(loss, ref, atol=1e-5)


# ----------------------------------------------------------------------------- training + checkpoints
def train_steps(model, batch, steps, lr=1e-2):
    model.train()
    model.set_trainable(2)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_tiny_llama_loss_falls(model):
    scenes = [random_scene(200, s) for s in range(2)]
    batch = make_batch(scenes, ["what colour is the chair?", "what colour is the chair?"], ["red", "green"])
    losses = train_steps(model, batch, 15, lr=2e-2)
    assert losses[-1] < 0.5 * losses[0], losses


def frozen_llm_dtypes(model) -> set:
    return {p.dtype for n, p in model.language_model.named_parameters() if "lora_" not in n}


@pytest.mark.parametrize("native_bf16, expected", [("0", torch.float32), ("1", torch.bfloat16)])
def test_bf16_checkpoint_loads_in_fp32_where_bf16_is_emulated(tmp_path, monkeypatch, native_bf16, expected):
    ChorusQAModel.build(tiny_config(llm_dtype="bfloat16")).save_pretrained(tmp_path / "ckpt")
    monkeypatch.setenv("CHORUS_CPU_BF16", native_bf16)
    loaded = ChorusQAModel.from_pretrained(tmp_path / "ckpt")
    assert frozen_llm_dtypes(loaded) == {expected}
    assert loaded.config.llm_dtype == str(expected).removeprefix("torch.")
    # an explicit dtype wins, and training resumes in the dtype it was trained in
    forced = ChorusQAModel.from_pretrained(tmp_path / "ckpt", llm_dtype="float32")
    assert frozen_llm_dtypes(forced) == {torch.float32}
    resumed = ChorusQAModel.from_pretrained(tmp_path / "ckpt", trainable=True)
    assert frozen_llm_dtypes(resumed) == {torch.bfloat16}


def test_save_load_round_trip_identical_logits(model, tmp_path):
    f, m = random_scene()
    batch = make_batch([(f, m)], ["where is the lamp?"], ["on the desk"])
    train_steps(model, batch, 3)  # LoRA B and projector move away from their init
    model.eval()
    model.save_pretrained(tmp_path / "ckpt")
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {"config.json", "projector.safetensors", "adapter"}
    loaded = ChorusQAModel.from_pretrained(tmp_path / "ckpt")
    ids, _ = model.build_token_ids(batch.questions, batch.answers)
    with torch.no_grad():
        a = model.causal_lm(inputs_embeds=model.embed(ids, model.scene_embeddings(f, m))).logits
        b = loaded.causal_lm(inputs_embeds=loaded.embed(ids, loaded.scene_embeddings(f, m))).logits
    assert torch.equal(a, b)
    # the adapter folder is a plain peft adapter
    from peft import PeftModel

    from adapters.llm import load_llm
    from chorus_qa.model import add_scene_token

    base, tok = load_llm("tiny-random-llama")
    add_scene_token(base, tok)
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "ckpt" / "adapter"))
    lora_a = dict(model.language_model.named_parameters())
    for name, p in peft_model.named_parameters():
        if "lora_" in name:
            assert torch.equal(p, lora_a[name])


# ----------------------------------------------------------------------------- generation
def brute_force_greedy(model, scene_embeds, question, steps):
    """Twin of decode_steps: recompute the whole sequence each step, no cache, no padding."""
    ids = model.prefix_ids() + model.question_ids(question)
    out = []
    with torch.no_grad():
        for _ in range(steps):
            t = torch.tensor([ids])
            logits = model.causal_lm(inputs_embeds=model.embed(t, scene_embeds)).logits[0, -1].clone()
            logits[model.scene_token_id] = float("-inf")
            nxt = int(logits.argmax())
            out.append(nxt)
            ids.append(nxt)
    return out


def test_kv_prefix_reuse_matches_no_reuse(model):
    model.eval()
    f, m = random_scene()
    questions = ["what colour is the chair?", "how many lamps are there in the room?", "why?"]
    steps = 6
    with torch.no_grad():
        scene = model.scene_embeddings(f, m)
    context = model.prepare_scene(f, m)
    with torch.inference_mode():
        batched = torch.stack(list(model.decode_steps(context, torch.zeros(3, dtype=torch.long), questions,
                                                      max_new_tokens=steps)), 1)
    for i, q in enumerate(questions):
        ref = brute_force_greedy(model, scene, q, steps)
        got = batched[i].tolist()
        stop = next((j for j, t in enumerate(ref) if t in model.stop_token_ids), steps - 1)
        assert got[: stop + 1] == ref[: stop + 1], (q, got, ref)
    # the shared context is untouched: asking again gives the same answers
    first = model.generate(context, questions, max_new_tokens=steps)
    assert model.generate(context, questions, max_new_tokens=steps) == first
    # per-question feature pairs (dedup'd scenes) give the same answers as the prepared context
    assert model.generate([(f, m)] * 3, questions, max_new_tokens=steps) == first
    # streaming yields the same text
    assert "".join(model.stream(context, questions[1], max_new_tokens=steps)).strip() == first[1]


def test_generate_mixed_scenes_matches_single(model):
    model.eval()
    s1, s2 = random_scene(300, 0), random_scene(250, 5)
    qs = ["what is it?", "where is the big table?"]
    both = model.generate([s1, s2], qs, max_new_tokens=5)
    assert both[0] == model.generate([s1], qs[:1], max_new_tokens=5)[0]
    assert both[1] == model.generate([s2], qs[1:], max_new_tokens=5)[0]
    assert model.generate(None, qs, blind=True, max_new_tokens=3) == model.generate(None, qs, blind=True, max_new_tokens=3)


# ----------------------------------------------------------------------------- feature cache
def test_feature_cache_round_trip(tmp_path):
    ckpt = tmp_path / "enc"
    ckpt.mkdir()
    (ckpt / "weights.bin").write_bytes(b"abc")
    h1 = encoder_checkpoint_hash(ckpt)
    (ckpt / "weights.bin").write_bytes(b"abd")
    assert encoder_checkpoint_hash(ckpt) != h1
    cache = FeatureCache(tmp_path / "cache", h1)
    f, m = random_scene(50)
    calls = []
    got = cache.get_or_compute("scene0001_00", lambda: calls.append(1) or (f, m))
    again = cache.get_or_compute("scene0001_00", lambda: calls.append(1) or (f, m))
    assert calls == [1]
    assert got[0].dtype == torch.float16 and torch.equal(got[0], f.half()) and torch.equal(got[1], m)
    assert torch.equal(again[0], got[0])
    assert FeatureCache(tmp_path / "cache", "other").load("scene0001_00") is None
    with pytest.raises(ValueError, match="safe file name"):
        cache.path("../evil")


# ----------------------------------------------------------------------------- chat session
def gaussian_scene(n=300, seed=0, name="room"):
    from data import GaussianScene

    g = torch.Generator().manual_seed(seed)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=g), dim=1)
    quats = quats * torch.where(quats[:, :1] < 0, -1.0, 1.0)
    return GaussianScene(means=torch.rand(n, 3, generator=g) * 4, quats=quats, scales=torch.rand(n, 3, generator=g) * 0.05 + 0.01,
                         opacities=torch.rand(n, generator=g), colors=torch.rand(n, 3, generator=g), name=name)


def test_chat_session_encodes_once_and_streams(tmp_path):
    from chorus_qa.session import ChatSession

    model = ChorusQAModel.build(tiny_config(feature_dim=FEAT, encoder_ref="some/encoder"))
    calls = []
    proj = torch.randn(11, FEAT, generator=torch.Generator().manual_seed(3))

    def encode(scene):  # a stand-in encoder: fixed random projection of the raw attributes
        from chorus_qa.feature_cache import raw_gaussian_features

        calls.append(scene.name)
        return raw_gaussian_features(scene) @ proj

    with pytest.raises(ValueError, match="EncoderPredictor"):
        ChatSession(model)
    session = ChatSession(model, encode, feature_cache=FeatureCache(tmp_path, "enc"))
    with pytest.raises(RuntimeError, match="set_scene"):
        session.ask("what?")
    scene_a, scene_b = gaussian_scene(300, 0, "a"), gaussian_scene(200, 1, "b")
    steps = []
    session.set_scene(scene_a, progress=lambda f, d: steps.append(f))
    assert steps[0] == 0.0 and steps[-1] == 1.0
    streamed = "".join(session.ask("what colour is the chair?", max_new_tokens=5)).strip()
    whole = session.answer("what colour is the chair?", max_new_tokens=5)
    feats = encode(scene_a).half().float()
    calls.pop()
    assert streamed == whole == model.generate([(feats, scene_a.means)], ["what colour is the chair?"], max_new_tokens=5)[0]
    assert [t.question for t in session.history] == ["what colour is the chair?"] * 2
    session.set_scene(scene_b)
    session.set_scene(scene_a)  # cached in the session: no second encoder call
    assert calls == ["a", "b"] and session.history == []
    fresh = ChatSession(model, encode, feature_cache=FeatureCache(tmp_path, "enc"))
    fresh.set_scene(scene_a)  # cached on disk
    assert calls == ["a", "b"]
    assert fresh.answer("what colour is the chair?", max_new_tokens=5) == whole


@pytest.mark.parametrize("n", [300, 1000])  # 1000 > max_points: the seeded inference subset is used
def test_pooled_scene_then_embed_equals_direct_tokenization(n):
    from chorus_qa.scene_tokens import pool_scene

    cfg = SceneTokenizerConfig(in_dim=FEAT, num_tokens=K, token_dim=32, max_points=512)
    tok = SceneTokenizer(cfg).eval()
    f, m = random_scene(n, 3)
    direct, centres = tok(f, m)
    pooled = pool_scene(f, m, cfg)
    tokens, centres2 = tok.embed_pooled(pooled)
    assert torch.equal(tokens, direct) and torch.equal(centres2, centres)
    # a training draw is a different pooling of the same scene (random FPS start), reproducible from its generator
    draw = pool_scene(f, m, cfg, training=True, generator=torch.Generator().manual_seed(4))
    again = pool_scene(f, m, cfg, training=True, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(draw.positions, pooled.positions) and torch.equal(draw.cells, again.cells)
    with pytest.raises(ValueError, match="expected"):
        tok.embed_pooled(pool_scene(f[:, :8], m, SceneTokenizerConfig(in_dim=8, num_tokens=K)))


def test_prepare_pooled_answers_like_prepare_scene(model):
    from chorus_qa.scene_tokens import pool_scene

    f, m = random_scene(300, 2)
    pooled = pool_scene(f, m, model.scene_tokenizer.config)
    a = model.prepare_scene(f, m)
    b = model.prepare_pooled(pooled)
    qs = ["how many chairs are there?", "what colour is the sofa?"]
    assert model.generate(a, qs, max_new_tokens=5) == model.generate(b, qs, max_new_tokens=5)
    batch = QABatch(None, None, None, ["what is on the desk?"], ["a lamp"], pooled=[pooled])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(batch), model(make_batch([(f, m)], batch.questions, batch.answers)), atol=1e-5)


def test_oracle_label_features_are_one_hot_classes_and_colour():
    from chorus_qa.feature_cache import ORACLE_CLASS_SLOTS, SceneFeatureSource
    from data.scene import GaussianScene

    n = 5
    scene = GaussianScene(means=torch.rand(n, 3), quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                          scales=torch.full((n, 3), 0.01), opacities=torch.ones(n), colors=torch.rand(n, 3),
                          semantic=torch.tensor([0, 3, -1, 3, 7]))
    source = SceneFeatureSource("oracle-labels")
    feats, means = source(scene)
    assert source.out_dim == feats.shape[1] == ORACLE_CLASS_SLOTS + 3 and torch.equal(means, scene.means)
    assert feats[:, :ORACLE_CLASS_SLOTS].argmax(1)[[0, 1, 3, 4]].tolist() == [0, 3, 3, 7]
    assert feats[:, :ORACLE_CLASS_SLOTS].sum(1).tolist() == [1, 1, 0, 1, 1]  # unlabelled: no class
    assert torch.equal(feats[:, ORACLE_CLASS_SLOTS:], scene.colors)
    with pytest.raises(ValueError, match="semantic"):
        source(GaussianScene(means=scene.means, quats=scene.quats, scales=scene.scales, opacities=scene.opacities,
                             colors=scene.colors))
