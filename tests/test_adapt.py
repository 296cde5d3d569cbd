"""Render-and-distill adaptation: LoRA wrapper algebra, loss goes down, only LoRA parameters change."""

import copy

import pytest
import torch
from torch import nn

from encoder.adapt import AdaptConfig, LoRALinear, adapt_encoder, apply_lora, loss_on_views, merge_lora, prepare_views
from encoder.config import EncoderConfig
from encoder.heads import HeadsConfig, MultiTeacherHeads
from encoder.ptv3 import ChorusEncoder


TINY = dict(channels=(16, 32), depths=(1, 1), heads=(2, 4), patch_size=64, grid_size=0.1, drop_path=0.0)


class ColourTeacher:
    """A stand-in 2D teacher: a fixed non-linear function of the RGB at 1/4 resolution (6-D)."""

    name, dim, kind = "colour", 6, "generalist"

    def encode(self, inp):
        x = torch.nn.functional.avg_pool2d(inp.images, 4)
        return torch.cat([x, (x * 3).sin()], 1)


def test_lora_linear_merges_to_the_same_function():
    base = nn.Linear(12, 30)
    lora = LoRALinear(copy.deepcopy(base), rank=4, alpha=8.0)
    x = torch.randn(5, 12)
    assert torch.allclose(lora(x), base(x))  # B starts at zero: no change before training
    with torch.no_grad():
        lora.lora_b.normal_()
    assert not torch.allclose(lora(x), base(x))
    assert torch.allclose(lora.merged()(x), lora(x), atol=1e-5)
    assert not any(p.requires_grad for p in lora.base.parameters())


def test_apply_lora_wraps_only_qkv_and_freezes_the_rest():
    enc = ChorusEncoder(EncoderConfig.small(**TINY))
    wrapped = apply_lora(enc, ("qkv",), rank=8)
    assert wrapped and all(w.endswith("attn.qkv") for w in wrapped)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_a", "lora_b")) for n in trainable)
    merge_lora(enc)
    assert not any(isinstance(m, LoRALinear) for m in enc.modules())
    assert set(enc.state_dict()) == set(ChorusEncoder(EncoderConfig.small(**TINY)).state_dict())


@pytest.fixture(scope="module")
def tiny_room():
    from data.synth import generate_room

    scene, _ = generate_room(3, density=0.03)
    return scene


def test_adaptation_reduces_its_loss_and_changes_only_lora(tiny_room):
    torch.manual_seed(0)
    enc = ChorusEncoder(EncoderConfig.small(**TINY))
    heads = MultiTeacherHeads(HeadsConfig(in_dim=enc.out_dim, teacher_dims={"colour": 6}))
    before_enc = {k: v.clone() for k, v in enc.state_dict().items()}
    before_heads = {k: v.clone() for k, v in heads.state_dict().items()}
    cfg = AdaptConfig(n_positions=2, n_directions=4, views_per_scene=4, width=64, height=48, steps=12,
                      views_per_step=2, lr=2e-2, lora_rank=4)
    teacher = ColourTeacher()
    views, _ = prepare_views(tiny_room, teacher, cfg)
    assert views and all(len(v.valid) > 0 for v in views)
    projector = heads.projectors["colour"]
    loss_before = loss_on_views(enc, projector, tiny_room, views, cfg)

    summary = adapt_encoder(enc, heads, [tiny_room], cfg, teacher=teacher, progress=False)
    loss_after = loss_on_views(enc, projector, tiny_room, views, cfg)
    print("adapt loss", loss_before, loss_after)
    assert loss_after < 0.9 * loss_before, (loss_before, loss_after)
    assert not summary["new_head"] and summary["views"] == len(views)

    after_enc = enc.state_dict()
    changed = sorted(k for k in before_enc if not torch.equal(before_enc[k], after_enc[k]))
    assert changed and all(k.endswith("attn.qkv.weight") for k in changed)  # merged LoRA updates only
    assert all(torch.equal(before_heads[k], v) for k, v in heads.state_dict().items())
    assert set(summary["lora"]) and all(k.endswith(("lora_a", "lora_b")) for k in summary["lora"])
    n_lora = sum(v.numel() for v in summary["lora"].values())
    assert summary["trainable_parameters"] == n_lora


def test_new_head_matches_the_width_of_existing_heads(tiny_room):
    """A head added by adaptation has the hidden width of the checkpoint's heads, so the merged set reloads."""
    torch.manual_seed(0)
    enc = ChorusEncoder(EncoderConfig.small(**TINY))
    heads = MultiTeacherHeads(HeadsConfig(in_dim=enc.out_dim, teacher_dims={"caption_minilm": 8}, hidden_mult=1))
    cfg = AdaptConfig(n_positions=1, n_directions=4, views_per_scene=2, width=32, height=24, steps=1, views_per_step=1, lora_rank=2)
    summary = adapt_encoder(enc, heads, [tiny_room], cfg, teacher=ColourTeacher(), progress=False)
    assert summary["new_head"] and summary["projector"].fc1.out_features == enc.out_dim
