"""Spatial relation layers (chorus_qa.relations) and their place in the scene tokenizer and the Q&A model."""

import dataclasses
import math

import pytest
import torch

from chorus_qa.model import ChorusQAModel, QABatch, QAModelConfig
from chorus_qa.relations import RelationLayer, SpatialRelationEncoder, pair_geometry
from chorus_qa.scene_tokens import SceneTokenizer, SceneTokenizerConfig, pool_scene
from tests.test_object_tokens import FEAT, objects_cfg, three_objects


def randomised(enc: SpatialRelationEncoder, seed: int = 0) -> SpatialRelationEncoder:
    """The encoder with every weight random (the zero-initialised output projections too)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in enc.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return enc


def test_pair_geometry_is_the_offset_its_lengths_and_log():
    c = torch.tensor([[0.0, 0, 0], [3, 4, 12]])
    p = pair_geometry(c)
    assert p.shape == (2, 2, 6)
    assert torch.allclose(p[0, 1], torch.tensor([3, 4, 12, 5, 13, math.log(14)]))
    assert torch.allclose(p[1, 0, :3], -p[0, 1, :3]) and torch.equal(p[0, 0], torch.zeros(6))


def test_a_new_encoder_is_the_identity_and_rejects_bad_settings():
    enc = SpatialRelationEncoder(16, layers=2, heads=4)
    x, c = torch.randn(2, 5, 16), torch.randn(2, 5, 3)
    assert torch.equal(enc(x, c), x)
    with pytest.raises(ValueError, match="divisible"):
        RelationLayer(16, 3)
    with pytest.raises(ValueError, match="layers"):
        SpatialRelationEncoder(16, layers=0)
    with pytest.raises(ValueError, match="centres"):
        enc(x, c[:, :4])
    with pytest.raises(ValueError, match="relation_heads"):
        SceneTokenizerConfig(in_dim=4, token_dim=16, relation_layers=1, relation_heads=3)
    with pytest.raises(ValueError, match="relation_layers"):
        SceneTokenizerConfig(in_dim=4, relation_layers=-1)


def test_attention_follows_the_pair_bias_by_hand():
    """Queries and keys at zero, values = tokens, output = mixed values, bias = -2 x distance: each token's update
    is the distance-weighted mean softmax(-2 d_ij) @ x, computed here independently."""
    dim = 8
    layer = RelationLayer(dim, heads=1)
    with torch.no_grad():
        for p in layer.parameters():
            p.zero_()
        layer.attn_norm.weight.fill_(1.0)
        layer.qkv.weight[2 * dim:] = torch.eye(dim)           # v = layer-normed x
        layer.attn_out.weight.copy_(torch.eye(dim))
        layer.pair_bias[0].weight[0, 4] = 1.0                  # hidden unit 0 = distance (GELU(d) ~ d for d >= 2)
        layer.pair_bias[2].weight[0, 0] = -2.0
    centres = torch.tensor([[0.0, 0, 0], [2, 0, 0], [2, 3, 0], [9, 9, 9]])
    x = torch.randn(1, 4, dim)
    valid = torch.tensor([[True, True, True, False]])
    out = layer(x, pair_geometry(centres)[None], valid)
    d = torch.cdist(centres[:3], centres[:3])
    w = torch.softmax(-2 * torch.nn.functional.gelu(d), -1)
    normed = torch.nn.functional.layer_norm(x[0, :3], (dim,))
    assert torch.allclose(out[0, :3], x[0, :3] + w @ normed, atol=1e-5)
    assert torch.equal(out[0, 3], x[0, 3])                     # the empty slot passes through


def test_relations_are_equivariant_translation_invariant_and_blind_to_empty_slots():
    enc = randomised(SpatialRelationEncoder(16, layers=2, heads=4))
    x, c = torch.randn(6, 16), torch.randn(6, 3) * 3
    valid = torch.tensor([True, True, True, True, False, False])
    out = enc(x, c, valid)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert torch.allclose(enc(x[perm], c[perm], valid[perm]), out[perm], atol=1e-5)
    assert torch.allclose(enc(x, c + torch.tensor([10.0, -4, 2]), valid), out, atol=1e-4)
    x2 = x.clone()
    x2[4:] = torch.randn(2, 16)
    c2 = c.clone()
    c2[4:] += 5
    assert torch.allclose(enc(x2, c2, valid)[:4], out[:4], atol=1e-6)
    # ... while moving one real object changes what the others see
    c3 = c.clone()
    c3[0] += torch.tensor([1.5, 0, 0])
    assert not torch.allclose(enc(x, c3, valid)[1:4], out[1:4], atol=1e-3)


def test_tokenizer_applies_relations_to_real_objects_only():
    f, m, s, c = three_objects()
    plain = SceneTokenizer(objects_cfg(k=4)).eval()
    related = SceneTokenizer(objects_cfg(k=4, relation_layers=2)).eval()
    missing, unexpected = related.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("relations.") for k in missing)
    pooled = pool_scene(f, m, related.config, segments=s, colors=c)
    base, centres = plain.embed_pooled(pooled)
    assert torch.equal(related.embed_pooled(pooled)[0], base)  # identity at initialisation
    randomised(related.relations)
    got, got_centres = related.embed_pooled(pooled)
    assert torch.equal(got_centres, centres)
    assert not torch.allclose(got[:3], base[:3]) and torch.equal(got[3], base[3])  # slot 4 is empty


def test_model_with_relation_layers_trains_them_and_round_trips(tmp_path):
    cfg = QAModelConfig(feature_dim=FEAT, llm="tiny-random-llama", num_scene_tokens=4, token_dim=16, pooling="objects",
                        segments={"source": "gt"}, object_names=True, color_tokens=True, relation_layers=2,
                        lora={"r": 4, "alpha": 8})
    model = ChorusQAModel.build(cfg)
    model.set_trainable(2)
    randomised(model.scene_tokenizer.relations)
    f, m, s, c = three_objects()
    labels = torch.where(s == 5, 5, torch.where(s == 2, 9, -1))
    pooled = pool_scene(f, m, model.scene_tokenizer.config, segments=s, colors=c, labels=labels)
    torch.nn.init.normal_(model.projector[-1].weight, std=0.1)
    batch = QABatch(None, None, None, questions=["what is next to the bed?"], answers=["table"], pooled=[pooled])
    model.train()
    model(batch).backward()
    grads = [p.grad for p in model.scene_tokenizer.relations.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert any(k.startswith("scene_tokenizer.relations.") for k in model.trainable_state_dict())
    model.eval()
    model.save_pretrained(tmp_path / "ck")
    loaded = ChorusQAModel.from_pretrained(tmp_path / "ck").eval()
    assert loaded.config.relation_layers == 2
    with torch.no_grad():
        assert torch.allclose(loaded.pooled_embeddings([pooled]), model.pooled_embeddings([pooled]), atol=1e-6)


def test_token_norms_compare_the_projector_residual_with_the_name_word():
    from benchmarks.token_norms import token_norms

    cfg = QAModelConfig(feature_dim=FEAT, llm="tiny-random-llama", num_scene_tokens=4, token_dim=16, pooling="objects",
                        segments={"source": "gt"}, object_names=True, lora={"r": 4, "alpha": 8})
    model = ChorusQAModel.build(cfg).eval()
    f, m, s, c = three_objects()
    labels = torch.where(s == 5, 5, torch.where(s == 2, 9, -1))
    pooled = pool_scene(f, m, model.scene_tokenizer.config, segments=s, colors=c, labels=labels)
    fresh = token_norms(model, [pooled])
    assert fresh["object_slots"] == 3 and fresh["projector_residual"] == 0.0  # zero-initialised last layer
    want = model.name_embeds[torch.tensor([5, 9, model.name_embeds.shape[0] - 1])].float().norm(dim=-1).mean()
    assert fresh["name_word"] == pytest.approx(float(want))   # the third segment has no class: the zero row
    with torch.no_grad():
        model.projector[-1].bias.fill_(1.0)
    loud = token_norms(model, [pooled])
    hidden = model.causal_lm.config.hidden_size
    assert loud["projector_residual"] == pytest.approx(math.sqrt(hidden), rel=1e-5)
    assert loud["residual_over_name"] == pytest.approx(math.sqrt(hidden) / float(want), rel=1e-5)
    # with residual_cap the residual the LLM gets is bounded; the uncapped projector output is reported beside it
    model.config = dataclasses.replace(model.config, residual_cap=0.5)
    capped = token_norms(model, [pooled])
    assert capped["projector_residual"] == pytest.approx(0.5 * model.name_norm, rel=1e-5)
    assert capped["projector_output_uncapped"] == pytest.approx(math.sqrt(hidden), rel=1e-5)


def test_relation_tokens_leave_object_tokens_alone_and_follow_each_object(tmp_path):
    with pytest.raises(ValueError, match="relation_layers"):
        SceneTokenizerConfig(in_dim=4, relation_tokens=True)
    with pytest.raises(ValueError, match="relation_tokens"):
        QAModelConfig(feature_dim=FEAT, relation_layers=1, relation_tokens=True)  # cell pooling
    kw = dict(feature_dim=FEAT, llm="tiny-random-llama", num_scene_tokens=4, token_dim=16, pooling="objects",
              segments={"source": "gt"}, object_names=True, color_tokens=True, lora={"r": 4, "alpha": 8})
    cfg = QAModelConfig(**kw, relation_layers=1, relation_tokens=True)
    assert cfg.num_placeholders == 12
    model = ChorusQAModel.build(cfg).eval()
    plain = ChorusQAModel.build(QAModelConfig(**kw)).eval()
    shared = {k: v for k, v in model.trainable_state_dict().items() if not k.startswith(("relation_projector.", "scene_tokenizer.relations."))}
    plain.scene_tokenizer.load_state_dict({k[len("scene_tokenizer."):]: v for k, v in shared.items() if k.startswith("scene_tokenizer.")})
    plain.projector.load_state_dict({k[len("projector."):]: v for k, v in shared.items() if k.startswith("projector.")})
    f, m, s, c = three_objects()
    labels = torch.where(s == 5, 5, torch.where(s == 2, 9, -1))
    pooled = pool_scene(f, m, model.scene_tokenizer.config, segments=s, colors=c, labels=labels)
    randomised(model.scene_tokenizer.relations)
    torch.nn.init.normal_(model.relation_projector[-1].weight, std=0.1)
    torch.nn.init.normal_(model.relation_projector[-1].bias, std=0.1)
    with torch.no_grad():
        got = model.pooled_embeddings([pooled])[0]
        want = plain.pooled_embeddings([pooled])[0]
        tokens, centres = model.scene_tokenizer.embed_pooled(pooled)  # relations are not applied in place
        delta = model.scene_tokenizer.relations(tokens, centres, torch.tensor([True, True, True, False])) - tokens
    assert got.shape == (12, model.causal_lm.config.hidden_size)
    assert torch.equal(got[0::3], want[0::2]) and torch.equal(got[1::3], want[1::2])  # objects and colours as without
    assert torch.allclose(got[2::3][:3], model.relation_projector(delta)[:3], atol=1e-6)
    assert got[2::3][:3].abs().sum() > 0 and not got[11].any()  # the empty slot's relation token is zero
    model.save_pretrained(tmp_path / "ck")
    loaded = ChorusQAModel.from_pretrained(tmp_path / "ck").eval()
    assert any(k.startswith("relation_projector.") for k in loaded.trainable_state_dict())
    with torch.no_grad():
        assert torch.allclose(loaded.pooled_embeddings([pooled])[0], got, atol=1e-6)
    model.set_trainable(2)
    assert all(p.requires_grad for p in model.relation_projector.parameters())
