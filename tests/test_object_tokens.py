"""Object-centric scene tokens: segments (chorus_qa.segments) and "objects" pooling (scene_tokens.pool_objects)."""

import dataclasses

import pytest
import torch

from chorus_qa.model import ChorusQAModel, QAModelConfig
from chorus_qa.scene_tokens import OBJECT_GEOMETRY_DIM, SceneTokenizer, SceneTokenizerConfig, pool_scene
from chorus_qa.segments import SegmentConfig, Segmenter, gt_segments, label_segments, make_segmenter

FEAT = 6


def box(n, lo, hi, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.tensor(lo) + torch.rand(n, 3, generator=g) * (torch.tensor(hi) - torch.tensor(lo))


def three_objects():
    """Three boxes of 300 / 200 / 100 points at known places (segments 5, 2, 9), 20 unsegmented points."""
    means = torch.cat([box(300, [0, 0, 0], [1, 1, 1], 0), box(200, [3, 0, 0], [3.5, 2, 1], 1),
                       box(100, [0, 3, 0], [0.2, 3.2, 0.2], 2), box(20, [2, 2, 2], [2.1, 2.1, 2.1], 3)])
    segments = torch.cat([torch.full((300,), 5), torch.full((200,), 2), torch.full((100,), 9), torch.full((20,), -1)])
    colors = torch.cat([torch.tensor([[1.0, 0, 0]]).repeat(300, 1), torch.tensor([[0, 1.0, 0]]).repeat(200, 1),
                        torch.tensor([[0, 0, 1.0]]).repeat(100, 1), torch.rand(20, 3)])
    features = torch.randn(len(means), FEAT, generator=torch.Generator().manual_seed(7))
    return features, means, segments, colors


def objects_cfg(k=4, **kw):
    return SceneTokenizerConfig(in_dim=FEAT, num_tokens=k, token_dim=16, pooling="objects", **kw)


def test_label_segments_split_labels_and_distance_and_drop_small_parts():
    xyz = torch.cat([box(50, [0, 0, 0], [0.3, 0.3, 0.3], 0), box(50, [2, 0, 0], [2.3, 0.3, 0.3], 1),
                     box(50, [0.3, 0, 0], [0.6, 0.3, 0.3], 2), box(5, [5, 5, 5], [5.05, 5.05, 5.05], 3)])
    labels = torch.tensor([1] * 50 + [1] * 50 + [2] * 50 + [1] * 5)
    seg = label_segments(xyz, labels, knn_k=10, radius=0.2, min_points=10)
    # same label but 1.7 m apart: two segments; touching but another label: a third; 5 points: none
    assert seg[:50].unique().numel() == 1 and seg[50:100].unique().numel() == 1 and seg[100:150].unique().numel() == 1
    assert len({int(seg[0]), int(seg[50]), int(seg[100])}) == 3
    assert sorted(seg.unique().tolist()) == [-1, 0, 1, 2] and (seg[150:] == -1).all()
    assert int(seg[0]) == 0  # numbered by first appearance
    unlabelled = label_segments(xyz, torch.full((len(xyz),), -1), 10, 0.2, 1)
    assert (unlabelled == -1).all()


def test_pool_objects_geometry_colour_and_order():
    f, m, s, c = three_objects()
    cfg = objects_cfg(k=4)
    p = pool_scene(f, m, cfg, segments=s, colors=c)
    assert p.cells.shape == (4, 2 * FEAT) and p.geometry.shape == (4, OBJECT_GEOMETRY_DIM)
    # largest first: segment 5 (300), 2 (200), 9 (100); the fourth slot is empty
    counts = p.geometry[:, 6].expm1().round()
    assert counts.tolist() == [300, 200, 100, 0]
    assert torch.allclose(p.geometry[:3, 7:], torch.eye(3)[[0, 1, 2]], atol=1e-6)  # mean colours red, green, blue
    for slot, seg in enumerate([5, 2, 9]):
        pts = m[s == seg]
        lo, hi = pts.min(0).values, pts.max(0).values
        assert torch.allclose(p.centres[slot], (lo + hi) / 2, atol=1e-5)
    # half extents are in normalised units (half the largest scene extent = 1) times offset_scale
    lo, hi = m.min(0).values, m.max(0).values
    half_scene = (hi - lo).max() / 2
    pts = m[s == 2]
    expect = (pts.max(0).values - pts.min(0).values) / 2 / half_scene * cfg.offset_scale
    assert torch.allclose(p.geometry[1, :3], expect, atol=1e-5)
    assert torch.equal(p.cells[3], torch.zeros(2 * FEAT)) and torch.equal(p.geometry[3], torch.zeros(OBJECT_GEOMETRY_DIM))
    # the cell of a segment is the mean | max of its layer-normed features
    normed = torch.nn.functional.layer_norm(f[s == 9], (FEAT,))
    assert torch.allclose(p.cells[2], torch.cat([normed.mean(0), normed.amax(0)]), atol=1e-5)


def test_pool_objects_keeps_the_largest_and_training_only_reorders():
    f, m, s, c = three_objects()
    two = pool_scene(f, m, objects_cfg(k=2), segments=s, colors=c)
    assert two.geometry[:, 6].expm1().round().tolist() == [300, 200]
    ref = pool_scene(f, m, objects_cfg(k=4), segments=s, colors=c)
    orders = set()
    for seed in range(6):
        draw = pool_scene(f, m, objects_cfg(k=4), training=True, generator=torch.Generator().manual_seed(seed), segments=s, colors=c)
        perm = [int(torch.nonzero((ref.cells[:3] == row).all(1))[0]) for row in draw.cells[:3]]
        assert sorted(perm) == [0, 1, 2] and torch.equal(draw.cells[3], torch.zeros(2 * FEAT))
        orders.add(tuple(perm))
    assert len(orders) > 1


def test_objects_tokenizer_pooled_path_equals_direct_and_validates_inputs():
    f, m, s, c = three_objects()
    cfg = objects_cfg(k=4, max_points=256)  # below N: the seeded inference subset
    tok = SceneTokenizer(cfg).eval()
    direct, centres = tok(f, m, segments=s, colors=c)
    tokens, centres2 = tok.embed_pooled(pool_scene(f, m, cfg, segments=s, colors=c))
    assert torch.equal(tokens, direct) and torch.equal(centres, centres2)
    with pytest.raises(ValueError, match="segment ids and colours"):
        tok(f, m)
    with pytest.raises(ValueError, match="segments have shape"):
        tok(f, m, segments=s[:-1], colors=c)
    with pytest.raises(ValueError, match="expected"):
        SceneTokenizer(SceneTokenizerConfig(in_dim=FEAT, num_tokens=4, token_dim=16)).embed_pooled(
            pool_scene(f, m, cfg, segments=s, colors=c))  # object geometry into a cell tokenizer


def test_model_config_and_generation_with_object_tokens():
    with pytest.raises(ValueError, match="segments"):
        QAModelConfig(feature_dim=FEAT, segments={"source": "gt"})  # segments without "objects" pooling
    with pytest.raises(ValueError, match="source"):
        QAModelConfig(feature_dim=FEAT, pooling="objects", segments={"source": "magic"})
    cfg = QAModelConfig(feature_dim=FEAT, llm="tiny-random-llama", num_scene_tokens=4, token_dim=16,
                        pooling="objects", segments={"source": "gt"}, lora={"r": 4, "alpha": 8})
    model = ChorusQAModel.build(cfg)
    f, m, s, c = three_objects()
    ctx = model.prepare_scene(f, m, s, c)
    qs = ["how many chairs are there?"]
    assert model.generate(ctx, qs, max_new_tokens=4) == model.generate([(f, m, s, c)], qs, max_new_tokens=4)
    assert make_segmenter(cfg).cfg.source == "gt"
    assert make_segmenter(QAModelConfig(feature_dim=FEAT)) is None


def test_gt_segmenter_and_zero_shot_segmenter_from_heads(tmp_path):
    from data.scene import GaussianScene
    from encoder.heads import HeadsConfig, MultiTeacherHeads

    f, m, s, c = three_objects()
    n = len(m)
    scene = GaussianScene(means=m, quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), scales=torch.full((n, 3), 0.01),
                          opacities=torch.ones(n), colors=c, instance=s)
    assert torch.equal(Segmenter(SegmentConfig(source="gt"))(scene, f), s)
    with pytest.raises(ValueError, match="instance"):
        gt_segments(GaussianScene(means=m, quats=scene.quats, scales=scene.scales, opacities=scene.opacities, colors=c))
    with pytest.raises(ValueError, match="heads"):
        Segmenter(SegmentConfig(), encoder_ref="raw")
    # zero-shot: a random language projector; whatever its labels, segments are same-label connected parts
    heads = MultiTeacherHeads(HeadsConfig(in_dim=FEAT, teacher_dims={"caption-minilm": 384}))
    heads.save_pretrained(tmp_path / "heads")
    seg = Segmenter(SegmentConfig(heads=str(tmp_path / "heads"), radius=0.3, min_points=1))
    ids = seg(scene, f)
    labels = seg.labels(f)
    assert ids.shape == (n,) and (ids >= 0).all()
    for sid in ids.unique():
        assert labels[ids == sid].unique().numel() == 1
    inputs = seg.object_inputs(scene, f)
    assert torch.equal(inputs["segments"], ids) and torch.equal(inputs["colors"], c)
    # the folded head gives the labels of the plain definition: argmax of cosine(language feature, class text)
    lang = torch.nn.functional.normalize(heads.project("caption-minilm", f), dim=1)
    assert torch.equal(labels, (lang @ seg.text.T).argmax(1))
    text = torch.randn(5, 384)
    assert torch.allclose(heads.scores("caption-minilm", f, text), heads.project("caption-minilm", f) @ text.T, atol=1e-4)
    with pytest.raises(KeyError, match="no projector"):
        heads.scores("siglip", f, text)


def test_chat_session_segments_scenes_for_an_objects_model():
    from chorus_qa.session import ChatSession
    from data.scene import GaussianScene

    cfg = QAModelConfig(feature_dim=FEAT, llm="tiny-random-llama", num_scene_tokens=4, token_dim=16,
                        pooling="objects", segments={"source": "gt"}, lora={"r": 4, "alpha": 8})
    model = ChorusQAModel.build(cfg)
    f, m, s, c = three_objects()
    n = len(m)
    scene = GaussianScene(means=m, quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), scales=torch.full((n, 3), 0.01),
                          opacities=torch.ones(n), colors=c, instance=s)
    with pytest.raises(ValueError, match="Segmenter"):
        ChatSession(model, lambda sc: f)
    session = ChatSession(model, lambda sc: f, segmenter=make_segmenter(cfg))
    session.set_scene(scene)
    q = "what colour is the box?"
    # the session stores features as float16, as the feature cache does
    expected = model.generate(model.prepare_scene(f.half().float(), m, s, c), [q], max_new_tokens=4)[0]
    assert session.answer(q, max_new_tokens=4) == expected
    # the session lists the object tokens the LLM sees: the three segments, largest first, no classes or colours here
    objects = session.scene.objects
    assert [o.gaussians for o in objects] == sorted([int((s == i).sum()) for i in (5, 2, 9)], reverse=True)
    assert all(o.name is None and o.color is None for o in objects)
    assert torch.allclose(torch.tensor([o.centre for o in objects]), pool_scene(f, m, objects_cfg(k=4), segments=s, colors=c).centres[:3], atol=1e-3)


def test_scene_inventory_names_each_object_token_by_class_and_colour():
    from chorus_qa.scene_tokens import basic_color_names
    from chorus_qa.session import inventory, scene_objects

    f, m, s, c = three_objects()  # segments 5 / 2 / 9 are red / green / blue
    labels = torch.where(s == 5, 1, torch.where(s == 2, 1, torch.where(s == 9, 0, -1)))
    pooled = pool_scene(f, m, objects_cfg(k=5), segments=s, colors=c, labels=labels)
    objects = scene_objects(pooled, ["lamp", "chair"], with_colors=True)
    assert len(objects) == 3 and [o.name for o in objects] == ["chair", "chair", "lamp"]
    assert [o.color for o in objects] == [basic_color_names()[int(i)] for i in pooled.color_ids[:3]]
    assert [o.color for o in scene_objects(pooled, ["lamp", "chair"], with_colors=False)] == [None] * 3
    objects[1].color = objects[0].color
    text = inventory(objects)
    assert text.startswith("3 objects: ") and f"{objects[0].color} chair x2" in text and text.endswith(f"{objects[2].color} lamp")
    assert inventory([]) == "no objects"


def test_object_labels_are_segment_majorities():
    from chorus_qa.scene_tokens import group_majority

    assign = torch.tensor([0, 0, 0, 1, 1, 2])
    labels = torch.tensor([4, 4, 1, -1, 2, -1])
    assert group_majority(labels, assign, 4).tolist() == [4, 2, -1, -1]
    assert group_majority(torch.tensor([3, 1]), torch.tensor([0, 0]), 1).tolist() == [1]  # tie: the lower id
    f, m, s, c = three_objects()
    labels = torch.where(s == 5, 7, torch.where(s == 2, 3, torch.where(s == 9, 0, -1)))
    labels[:10] = 1  # a few wrong labels inside segment 5 do not change its majority
    p = pool_scene(f, m, objects_cfg(k=4), segments=s, colors=c, labels=labels)
    assert p.labels.tolist() == [7, 3, 0, -1]


def test_object_names_add_the_llms_own_class_name_embedding():
    from encoder.label_sets import get_label_set

    cfg = QAModelConfig(feature_dim=FEAT, llm="tiny-random-llama", num_scene_tokens=4, token_dim=16, pooling="objects",
                        segments={"source": "gt"}, object_names=True, lora={"r": 4, "alpha": 8})
    with pytest.raises(ValueError, match="object_names"):
        QAModelConfig(feature_dim=FEAT, object_names=True)
    model = ChorusQAModel.build(cfg).eval()
    names = get_label_set("synth")
    emb = model.causal_lm.get_input_embeddings().weight
    ids = model.tokenizer(" " + names[5], add_special_tokens=False)["input_ids"]
    assert torch.allclose(model.name_embeds[5].float(), emb[ids].float().mean(0), atol=1e-6)
    assert model.name_embeds.shape == (len(names) + 1, emb.shape[1]) and not model.name_embeds[-1].any()
    assert "name_embeds" not in model.trainable_state_dict()
    f, m, s, c = three_objects()
    labels = torch.where(s == 5, 5, torch.where(s == 2, 9, -1))
    pooled = pool_scene(f, m, model.scene_tokenizer.config, segments=s, colors=c, labels=labels)
    with torch.no_grad():
        got = model.pooled_embeddings([pooled])[0]
        plain = model.projector(model.scene_tokenizer.embed_pooled(pooled)[0])
        direct = model.scene_embeddings(f, m, segments=s, colors=c, labels=labels)[0]
    # label -1 (segment 9) and the empty slot both take the zero row
    words = model.name_embeds[torch.tensor([5, 9, len(names), len(names)])]
    assert torch.allclose(got, plain + words, atol=1e-5) and torch.allclose(direct, got, atol=1e-5)
    # a fresh model's object tokens are exactly the class-name words; the projector's residual still trains
    assert not plain.any() and torch.equal(got, words.to(got.dtype))
    model.pooled_embeddings([pooled]).pow(2).sum().backward()
    assert model.projector[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="labels"):
        model.pooled_embeddings([pool_scene(f, m, model.scene_tokenizer.config, segments=s, colors=c)])


def test_residual_cap_bounds_the_projector_residual_next_to_the_class_name():
    from chorus_qa.projector import cap_norm

    x = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    assert torch.allclose(cap_norm(x, 1.0), torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]]))
    base = dict(feature_dim=FEAT, llm="tiny-random-llama", num_scene_tokens=4, token_dim=16, pooling="objects",
                segments={"source": "gt"}, object_names=True, lora={"r": 4, "alpha": 8})
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="residual_cap"):
            QAModelConfig(**base, residual_cap=bad)
    with pytest.raises(ValueError, match="residual_cap"):
        QAModelConfig(**{**base, "object_names": False}, residual_cap=0.5)
    torch.manual_seed(0)
    model = ChorusQAModel.build(QAModelConfig(**base, residual_cap=0.5)).eval()
    word_norms = model.name_embeds[:-1].float().norm(dim=-1)
    assert model.name_norm == pytest.approx(float(word_norms.mean()), rel=1e-6) and model.name_norm > 0
    f, m, s, c = three_objects()
    labels = torch.where(s == 5, 5, torch.where(s == 2, 9, -1))
    pooled = pool_scene(f, m, model.scene_tokenizer.config, segments=s, colors=c, labels=labels)
    none = len(model.name_embeds) - 1  # label -1 and the empty slot take the zero row
    words = model.name_embeds[torch.tensor([5, 9, none, none])]
    with torch.no_grad():  # a loud projector, as the situated 228-room run learned (there 4.8x the name word)
        model.projector[-1].weight.normal_(0, 1.0)
        plain = model.projector(model.scene_tokenizer.embed_pooled(pooled)[0])
        got = model.pooled_embeddings([pooled])[0]
    residual = got - words.to(got.dtype)
    limit = 0.5 * model.name_norm
    assert (plain.norm(dim=-1) > 2 * limit).all()  # uncapped it would drown the words
    assert torch.allclose(residual.norm(dim=-1), torch.full((4,), limit), rtol=1e-4)  # capped to the limit ...
    cos = torch.nn.functional.cosine_similarity(residual, plain, dim=-1)
    assert torch.allclose(cos, torch.ones(4), atol=1e-5)  # ... in the same direction
    model.pooled_embeddings([pooled]).pow(2).sum().backward()
    assert model.projector[-1].weight.grad.abs().sum() > 0  # the capped residual still trains


def test_basic_color_ids_name_prototypes_and_known_colours():
    from data.synth.classes import COLORS
    from chorus_qa.scene_tokens import basic_color_ids, basic_color_names, srgb_to_lab

    names = basic_color_names()
    # CIELAB of sRGB white is (100, 0, 0) and of mid gray 0.5 about L = 53.4 (standard published values)
    lab = srgb_to_lab(torch.tensor([[1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0]]))
    assert torch.allclose(lab[0], torch.tensor([100.0, 0, 0]), atol=0.3)
    assert abs(float(lab[1, 0]) - 53.4) < 0.3 and abs(float(lab[2, 0])) < 1e-3
    protos = torch.tensor(list(COLORS.values()), dtype=torch.float32) / 255
    assert basic_color_ids(protos).tolist() == list(range(len(names)))
    # slightly shaded prototypes still get their own names; a sky blue is "blue", a dark navy not "black"
    assert basic_color_ids((protos * 0.93).clamp(0, 1)).tolist() == list(range(len(names)))
    got = [names[i] for i in basic_color_ids(torch.tensor([[0.3, 0.5, 0.95], [0.95, 0.95, 0.93], [0.1, 0.6, 0.15]]))]
    assert got == ["blue", "white", "green"]


def srgb_dimmed(srgb: torch.Tensor, factor: float) -> torch.Tensor:
    """sRGB colours whose light is scaled by ``factor`` (on linear RGB), with the sRGB transfer function written out."""
    lin = torch.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4) * factor
    return torch.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def test_color_shading_names_a_shaded_surface_by_its_own_colour_and_defaults_to_the_plain_rule():
    from data.synth.classes import COLORS
    from chorus_qa.scene_tokens import basic_color_ids, basic_color_names, srgb_to_lab

    names = basic_color_names()
    protos = torch.tensor(list(COLORS.values()), dtype=torch.float32) / 255
    colours = torch.rand(500, 3, generator=torch.Generator().manual_seed(0))
    # shading 1 is the plain nearest prototype in CIELAB (written out here)
    plain = torch.cdist(srgb_to_lab(colours), srgb_to_lab(protos)).argmin(1)
    assert torch.equal(basic_color_ids(colours, 1.0), plain) and torch.equal(basic_color_ids(colours), plain)
    # every prototype dimmed to 60 % of its light keeps its name under shading 0.6, and undimmed ones too (gray is
    # not a shaded white)
    assert basic_color_ids(srgb_dimmed(protos, 0.6), 0.6).tolist() == list(range(len(names)))
    assert basic_color_ids(protos, 0.6).tolist() == list(range(len(names)))
    # white with 40 % of the light: "gray" to the plain rule (benchmarks/color_names.py's white -> gray), white when
    # shading down to 0.4 is allowed
    white = protos[names.index("white")][None]
    assert names[int(basic_color_ids(srgb_dimmed(white, 0.4)))] == "gray"
    assert names[int(basic_color_ids(srgb_dimmed(white, 0.4), 0.4))] == "white"
    with pytest.raises(ValueError, match="shading"):
        basic_color_ids(colours, 0.0)
    with pytest.raises(ValueError, match="shading"):
        basic_color_ids(colours, 1.5)


def test_color_shading_reaches_the_object_vote_and_the_pooled_cache_key(tmp_path):
    from chorus_qa.scene_tokens import basic_color_names

    names = basic_color_names()
    f, m, s, c = three_objects()
    c[:300] = torch.tensor([236, 236, 232]) / 255  # segment 5 is white, its lower 60 % turned from the light
    c[120:300] = srgb_dimmed(c[120:300], 0.5)
    assert [names[i] for i in pool_scene(f, m, objects_cfg(), segments=s, colors=c).color_ids[:3]] == ["gray", "green", "blue"]
    p = pool_scene(f, m, objects_cfg(color_shading=0.5), segments=s, colors=c)
    assert [names[i] for i in p.color_ids[:3]] == ["white", "green", "blue"]
    with pytest.raises(ValueError, match="color_shading"):
        objects_cfg(color_shading=0.0)
    with pytest.raises(ValueError, match="color_shading"):
        QAModelConfig(feature_dim=FEAT, pooling="objects", segments={"source": "gt"}, color_shading=2.0)
    cfg = QAModelConfig(feature_dim=FEAT, pooling="objects", segments={"source": "gt"}, color_shading=0.6)
    assert cfg.scene_tokenizer_config().color_shading == 0.6


def test_color_names_vote_per_segment_and_add_the_colour_word():
    from chorus_qa.scene_tokens import basic_color_ids, basic_color_names

    names = basic_color_names()
    f, m, s, c = three_objects()  # segments 5 / 2 / 9 are red / green / blue
    c[:300] = torch.tensor([196, 40, 36]) / 255
    c[:100] = torch.tensor([0.93, 0.93, 0.93])  # a third of segment 5 is white trim: its mean colour reads pink
    assert names[int(basic_color_ids(c[:300].mean(0, keepdim=True)))] == "pink"
    p = pool_scene(f, m, objects_cfg(k=4), segments=s, colors=c)  # the vote stays red
    assert [names[i] for i in p.color_ids[:3]] == ["red", "green", "blue"] and p.color_ids[3] == -1
    cfg = QAModelConfig(feature_dim=FEAT, llm="tiny-random-llama", num_scene_tokens=4, token_dim=16, pooling="objects",
                        segments={"source": "gt"}, object_names=True, color_names=True, lora={"r": 4, "alpha": 8})
    with pytest.raises(ValueError, match="color_names"):
        QAModelConfig(feature_dim=FEAT, color_names=True)
    model = ChorusQAModel.build(cfg).eval()
    emb = model.causal_lm.get_input_embeddings().weight
    ids = model.tokenizer(" red", add_special_tokens=False)["input_ids"]
    assert torch.allclose(model.color_embeds[names.index("red")].float(), emb[ids].float().mean(0), atol=1e-6)
    assert "color_embeds" not in model.trainable_state_dict()
    labels = torch.where(s == 5, 5, torch.where(s == 2, 9, -1))
    pooled = pool_scene(f, m, model.scene_tokenizer.config, segments=s, colors=c, labels=labels)
    with torch.no_grad():
        got = model.pooled_embeddings([pooled])[0]
    colours = model.color_embeds[torch.tensor([names.index(n) for n in ("red", "green", "blue")] + [len(names)])]
    words = model.name_embeds[torch.tensor([5, 9, model.name_embeds.shape[0] - 1, model.name_embeds.shape[0] - 1])]
    # a fresh model's token is exactly class word + colour word (zero projector); the empty slot stays zero
    assert torch.allclose(got, (words + colours).to(got.dtype), atol=1e-6) and not got[3].any()
    with pytest.raises(ValueError, match="colour"):
        model.pooled_embeddings([dataclasses.replace(pooled, color_ids=None)])


def test_color_tokens_follow_each_object_token_as_a_plain_colour_word():
    from chorus_qa.scene_tokens import basic_color_names

    names = basic_color_names()
    f, m, s, c = three_objects()  # segments 5 / 2 / 9 are red / green / blue
    with pytest.raises(ValueError, match="alternatives"):
        QAModelConfig(feature_dim=FEAT, num_scene_tokens=4, pooling="objects", segments={"source": "gt"},
                      color_names=True, color_tokens=True)
    with pytest.raises(ValueError, match="color_tokens"):
        QAModelConfig(feature_dim=FEAT, color_tokens=True)
    cfg = QAModelConfig(feature_dim=FEAT, llm="tiny-random-llama", num_scene_tokens=4, token_dim=16, pooling="objects",
                        segments={"source": "gt"}, object_names=True, color_tokens=True, lora={"r": 4, "alpha": 8})
    assert cfg.num_placeholders == 8
    model = ChorusQAModel.build(cfg).eval()
    assert model.prefix_ids().count(model.scene_token_id) == 8 and model.prefix_ids(blind=True).count(model.scene_token_id) == 0
    labels = torch.where(s == 5, 5, torch.where(s == 2, 9, -1))
    pooled = pool_scene(f, m, model.scene_tokenizer.config, segments=s, colors=c, labels=labels)
    with torch.no_grad():
        got = model.pooled_embeddings([pooled])[0]
        objects = model.projector(model.scene_tokenizer.embed_pooled(pooled)[0])
    assert got.shape == (8, model.causal_lm.config.hidden_size)
    none = model.name_embeds.shape[0] - 1
    assert torch.allclose(got[0::2], objects + model.name_embeds[torch.tensor([5, 9, none, none])], atol=1e-6)
    # odd positions are exactly the colour words (the LLM's own embeddings); the empty slot's colour is zero
    emb = model.causal_lm.get_input_embeddings().weight
    red = emb[model.tokenizer(" red", add_special_tokens=False)["input_ids"]].float().mean(0)
    assert torch.allclose(got[1].float(), red, atol=1e-6)
    want = model.color_embeds[torch.tensor([names.index(n) for n in ("red", "green", "blue")] + [len(names)])]
    assert torch.equal(got[1::2], want.to(got.dtype)) and not got[7].any()
    # the full prompt takes all 2K tokens: a forward pass over one pooled scene runs and trains the projector
    from chorus_qa.model import QABatch

    batch = QABatch(None, None, None, questions=["what color is the chair?"], answers=["red"], pooled=[pooled])
    model.train()
    model(batch).backward()
    assert model.projector[-1].weight.grad is not None


def test_segment_quality_keeps_the_k_largest_segments_and_names_objects_by_majority_class():
    import benchmarks.segment_quality as mod  # a namespace package: the repository root is on sys.path

    seg = torch.tensor([4, 4, 4, 7, 7, -1, 9, 9, 9, 9])  # sizes: 9 -> 4, 4 -> 3, 7 -> 2
    assert mod.largest_segments(seg, 2).tolist() == [4, 4, 4, -1, -1, -1, 9, 9, 9, 9]
    assert torch.equal(mod.largest_segments(seg, 5), seg)
    instance = torch.tensor([3, 3, 3, 1, 1, -1, 2, 2, 2, 2])
    semantic = torch.tensor([5, 5, 6, 8, 8, 0, 1, 1, 1, 2])
    assert mod.object_classes(instance, semantic) == [8, 1, 5]  # instances 1, 2, 3 in sorted order


def test_segment_quality_token_colors_are_the_class_and_colour_votes_of_the_largest_segments():
    import benchmarks.segment_quality as mod
    from chorus_qa.scene_tokens import basic_color_names

    names = basic_color_names()
    seg = torch.tensor([4, 4, 4, 7, 7, -1, 9, 9, 9, 9])      # sizes: 9 -> 4, 4 -> 3, 7 -> 2
    labels = torch.tensor([2, 2, 5, 3, 3, 0, 6, 6, 6, 1])
    red, blue = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    colors = torch.stack([red, red, blue, blue, blue, red, blue, blue, red, blue])
    assert mod.token_colors(labels, colors, seg, 2) == [(6, names.index("blue")), (2, names.index("red"))]
    assert [c for c, _ in mod.token_colors(labels, colors, seg, 5)] == [6, 2, 3]


def test_neighbour_average_is_the_mean_over_self_and_neighbours():
    import numpy as np

    from encoder.instance import neighbour_average, smooth_features

    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    src, dst = np.array([0, 1, 1]), np.array([1, 0, 2])  # 0 sees 1; 1 sees 0 and 2; 2 sees nobody
    once = neighbour_average(x, src, dst, 1)
    assert torch.allclose(once, torch.tensor([[0.5, 1.0], [5 / 3, 2.0], [4.0, 4.0]]))
    assert torch.allclose(neighbour_average(x, src, dst, 2)[0], (once[0] + once[1]) / 2)
    assert torch.equal(neighbour_average(x, src, dst, 0), x)
    unit = smooth_features(x, src, dst, 1)
    assert torch.allclose(unit.norm(dim=1), torch.ones(3))


class _IdentityHeads:
    """Language head stub: the features are the language features."""

    def project(self, name, x):
        return x

    def scores(self, name, x, text):
        return x @ text.T


def test_smoothed_labels_absorb_isolated_mislabelled_gaussians():
    """A box whose language features say class 0 except for 12 % scattered Gaussians that say class 1: plain labels
    split it into many pieces, two smoothing passes give one segment of class 0."""
    g = torch.Generator().manual_seed(0)
    xyz = box(600, [0, 0, 0], [1, 1, 0.2], 4)
    flipped = torch.rand(600, generator=g) < 0.12
    feats = torch.where(flipped[:, None], torch.tensor([0.2, 1.0, 0.0]), torch.tensor([1.0, 0.0, 0.0]))
    feats = feats + 0.05 * torch.randn(600, 3, generator=g)
    seg = Segmenter(SegmentConfig(source="gt", radius=0.15, knn_k=10, min_points=1, smooth_iters=2))
    seg.heads, seg.head_name = _IdentityHeads(), "lang"
    seg.text = torch.nn.functional.normalize(torch.eye(3)[:2], dim=1)
    plain = seg.labels(feats, xyz, smooth_iters=0)
    assert torch.equal(plain, flipped.long())
    smoothed = seg.labels(feats, xyz)
    assert (smoothed == 0).float().mean() > 0.99
    pieces = label_segments(xyz, plain, 10, 0.15, 1).unique().numel()
    assert pieces > 20 and label_segments(xyz, smoothed, 10, 0.15, 1).unique().numel() <= 3
    with pytest.raises(ValueError, match="positions"):
        seg.labels(feats)


def test_segment_config_key_ignores_smoothing_only_when_it_is_off():
    base = SegmentConfig()
    assert base.key() == SegmentConfig(smooth_iters=0).key() != SegmentConfig(smooth_iters=2).key()
    import hashlib
    import json

    legacy = {k: v for k, v in dataclasses.asdict(base).items() if k != "smooth_iters"}
    assert base.key() == hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:8]
    with pytest.raises(ValueError, match="smooth_iters"):
        SegmentConfig(smooth_iters=-1)


def test_metric_extents_give_the_box_size_in_metres_whatever_the_room_size():
    f, means, s, c = three_objects()
    plain = pool_scene(f, means, objects_cfg(), segments=s, colors=c)
    cfg = objects_cfg(metric_extents=True)
    assert cfg.geometry_dim == plain.geometry.shape[1] + 3
    metric = pool_scene(f, means, cfg, segments=s, colors=c)
    assert torch.equal(metric.geometry[:, :10], plain.geometry)  # the relative columns are unchanged
    # the boxes' sizes from the points themselves (largest segment first): 300 points in [0, 1]^3, 200 in [3, 3.5] x [0, 2] x [0, 1]
    for slot, seg in enumerate((5, 2, 9)):
        pts = means[s == seg]
        size = pts.max(0).values - pts.min(0).values
        assert torch.allclose(metric.geometry[slot, 10:], torch.log(size + 0.01), atol=1e-5)
    assert not metric.geometry[3].any()  # the empty slot stays all zeros
    # a room twice as big with the same objects: relative extents change, metric ones do not
    far = torch.cat([means, torch.tensor([[12.0, 12.0, 0.0]])])
    grown = pool_scene(torch.cat([f, f[:1]]), far, cfg, segments=torch.cat([s, torch.tensor([-1])]),
                       colors=torch.cat([c, c[:1]]))
    assert not torch.allclose(grown.geometry[:3, :3], metric.geometry[:3, :3])
    assert torch.allclose(grown.geometry[:3, 10:], metric.geometry[:3, 10:], atol=1e-5)
    embeds_and_is_objects_only(cfg, metric, "metric_extents")


def embeds_and_is_objects_only(cfg, pooled, option):
    """The tokenizer embeds ``pooled`` (its geometry width is ``cfg``'s), and ``option`` is refused with cell pooling."""
    tokens, _ = SceneTokenizer(cfg).embed_pooled(pooled)
    assert tokens.shape == (cfg.num_tokens, cfg.token_dim)
    with pytest.raises(ValueError, match=option):
        SceneTokenizerConfig(in_dim=FEAT, pooling="cell", **{option: True})
    with pytest.raises(ValueError, match=option):
        QAModelConfig(feature_dim=FEAT, llm="tiny-random-llama", pooling="cell", **{option: True})


def texture_reference(colors):
    """group_texture of one group, written out with numpy from the definitions (relative luminance moments)."""
    import numpy as np

    lum = colors.double().numpy().mean(1)
    rel = lum / lum.mean() - 1
    sd = np.sqrt((rel ** 2).mean())
    return [np.log(sd + 1e-3), (rel ** 3).mean() / sd ** 3, np.log((rel ** 4).mean() / sd ** 4 + 1e-3),
            np.log(colors.double().numpy().std(0).mean() / lum.mean() + 1e-3),
            np.log(rel.max() + 1e-3), np.log(-rel.min() + 1e-3)]


def test_texture_stats_match_a_reference_ignore_brightness_and_sit_before_the_metric_columns():
    f, means, s, _ = three_objects()
    gen = torch.Generator().manual_seed(3)
    base = torch.tensor([[0.6, 0.3, 0.2]]).repeat(len(means), 1)
    # segment 5 grained (a sine along x, like wood), segment 2 speckled with rare highlights, segment 9 nearly flat
    grain = 1 + 0.12 * torch.sin(23 * means[:, 0:1])
    speckle = 1 + 0.04 * torch.randn(len(means), 1, generator=gen) + 0.3 * (torch.rand(len(means), 1, generator=gen) > 0.95)
    flat = 1 + 0.005 * torch.randn(len(means), 1, generator=gen)
    c = torch.where((s == 5)[:, None], base * grain, torch.where((s == 2)[:, None], base * speckle, base * flat)).clamp(0, 1)
    cfg = objects_cfg(metric_extents=True, texture_stats=True)
    assert cfg.geometry_dim == 10 + 6 + 3
    p = pool_scene(f, means, cfg, segments=s, colors=c)
    metric = pool_scene(f, means, objects_cfg(metric_extents=True), segments=s, colors=c)
    assert torch.equal(p.geometry[:, :10], metric.geometry[:, :10]) and torch.equal(p.geometry[:, 16:], metric.geometry[:, 10:])
    for slot, seg in enumerate((5, 2, 9)):  # largest segment first
        assert torch.allclose(p.geometry[slot, 10:16].double(), torch.tensor(texture_reference(c[s == seg])), atol=1e-3)
    assert not p.geometry[3].any()  # the empty slot stays all zeros
    tex = p.geometry[:3, 10:16]
    assert tex[2, 0] < tex[0, 0] - 2 and tex[2, 0] < tex[1, 0] - 2  # the flat object varies ~10x less
    assert tex[1, 1] > 1 and tex[1, 4] > tex[0, 4]  # the highlights skew the speckled one bright
    # the same textures under half the light (or in a darker paint) read the same
    dim = pool_scene(f, means, cfg, segments=s, colors=c * 0.5)
    assert torch.allclose(dim.geometry[:3, 10:16], tex, atol=1e-4)
    embeds_and_is_objects_only(cfg, p, "texture_stats")
