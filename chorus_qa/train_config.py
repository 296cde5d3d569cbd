"""The Q&A training recipe's configuration: ``TrainQAConfig`` (one YAML file, ``configs/qa_synth.yaml``), its two
stages and ``load_config`` with ``key.sub=value`` overrides. Validated on construction; unknown keys are rejected."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from chorus_qa.feature_cache import RAW_FEATURES
from chorus_qa.qa_config import QAModelConfig, strict_from_dict
from chorus_qa.scene_tokens import POOLED_POOLINGS


@dataclass
class StageConfig:
    epochs: int = 1          # epochs of this stage (0 skips it)
    lr: float = 1e-3         # peak learning rate (linear warm-up, cosine decay within the stage)
    warmup_ratio: float = 0.05

    def __post_init__(self):
        if self.epochs < 0 or self.lr <= 0 or not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"StageConfig: epochs={self.epochs} (>= 0), lr={self.lr} (> 0), warmup_ratio={self.warmup_ratio} ([0, 1)) out of range")


@dataclass
class TrainQAConfig:
    data_dir: str                                   # DATA: scenes/, qa/, splits/
    out_dir: str                                    # checkpoints, history, curves
    encoder: str = RAW_FEATURES                     # frozen Chorus encoder checkpoint folder, or "raw" (Gaussian attributes)
    feature_cache: str | None = None                # default: <data_dir>/feature_cache
    cache_points: int = 32768                       # Gaussians kept per scene in the feature cache (seeded subsample)
    memory_scenes: int = 64                         # scenes kept in RAM (LRU)
    pooled_variants: int = 4                        # "cell" pooling: cache this many pooled versions per scene instead of
                                                    # per-Gaussian features (version 0 = the inference pooling, the others
                                                    # random training draws); 0 = per-Gaussian feature cache (needed for "knn")
    qa_kind: str = "synth"                          # load_qa_split kind: synth, scanqa, sqa3d, auto
    train_split: str = "train"
    val_split: str = "val"
    max_train_examples: int | None = None          # a seeded random subset of the answered train questions
    exclude_seen_by: str | None = None              # a previous run's out_dir: leave out the train questions it trained on
                                                    # (recomputed from its saved config), e.g. to continue it over the rest
    init_from: str | None = None                    # warm start: a ChorusQAModel checkpoint (a run's best/ or last/, a
                                                    # release) whose scene tokenizer, projector and LoRA weights this run
                                                    # starts from, with a fresh optimizer and schedule; same model config
    max_val_examples: int | None = 300              # EM@1 on at most this many val questions per epoch
    model: dict = field(default_factory=dict)       # QAModelConfig fields (llm, num_scene_tokens, lora, ...)
    stage1: StageConfig = field(default_factory=lambda: StageConfig(epochs=1, lr=1e-3))
    stage2: StageConfig = field(default_factory=lambda: StageConfig(epochs=2, lr=2e-4))
    batch_size: int = 8                             # sequences per step
    questions_per_sequence: int = 1                 # >1 packs that many questions about one scene into a multi-turn chat
    length_grouping: int = 0                        # > batch_size: batch sequences of similar length within windows of
                                                    # this many shuffled sequences (less padding); 0 = off (chorus_qa.batching)
    grad_accum: int = 1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: bool | str = False                        # bf16 LLM weights (CPU and CUDA); trainables stay fp32; "auto" = only
                                                    # where bf16 is native (adapters.llm.fast_bf16; ~6x slower emulated)
    quantization: str | None = None                 # "4bit"/"8bit": bitsandbytes QLoRA base weights (CUDA only)
    eval_batch_size: int = 16
    max_new_tokens: int = 8
    seed: int = 0
    resume: bool = True
    save_every_steps: int = 0                       # also write a resumable last/ every this many optimizer steps
                                                    # (0 = only after each epoch): a rerun continues mid-epoch
    threads: int | None = None                      # torch CPU threads (None: torch default)
    trim_memory_every: int = 50                     # steps between glibc malloc_trim calls (0 = never): see release_free_memory

    def __post_init__(self):
        for name in ("stage1", "stage2"):
            if isinstance(getattr(self, name), dict):
                setattr(self, name, StageConfig(**getattr(self, name)))
        if self.stage1.epochs + self.stage2.epochs == 0:
            raise ValueError("TrainQAConfig: stage1.epochs + stage2.epochs is 0; nothing to train")
        for name in ("batch_size", "questions_per_sequence", "grad_accum", "eval_batch_size", "max_new_tokens", "cache_points", "memory_scenes"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainQAConfig.{name} = {getattr(self, name)}: expected >= 1")
        if self.bf16 not in (True, False, "auto"):
            raise ValueError(f"TrainQAConfig.bf16 = {self.bf16!r}: expected true, false or auto")
        if self.length_grouping < 0 or self.trim_memory_every < 0 or self.save_every_steps < 0:
            raise ValueError(f"TrainQAConfig: length_grouping = {self.length_grouping}, trim_memory_every = "
                             f"{self.trim_memory_every}, save_every_steps = {self.save_every_steps}: expected >= 0")
        if self.pooled_variants < 0:
            raise ValueError(f"TrainQAConfig.pooled_variants = {self.pooled_variants}: expected >= 0")
        pooling = self.model.get("pooling", "cell")
        if self.pooled_variants and pooling not in POOLED_POOLINGS:
            raise ValueError(f"TrainQAConfig.pooled_variants = {self.pooled_variants} needs model.pooling 'cell' or 'objects' "
                             f"(got {pooling!r}); set pooled_variants: 0 for per-Gaussian features")
        if pooling == "objects" and not self.pooled_variants:
            raise ValueError("TrainQAConfig: model.pooling 'objects' trains on pooled scenes; set pooled_variants >= 1")
        if self.qa_kind not in ("synth", "scanqa", "sqa3d", "auto"):
            raise ValueError(f"TrainQAConfig.qa_kind = {self.qa_kind!r}: expected synth, scanqa, sqa3d or auto")
        bad = {"feature_dim", "encoder_ref", "encoder_hash", "llm_dtype", "quantization"} & set(self.model)
        if bad:
            raise ValueError(f"TrainQAConfig.model sets {sorted(bad)}; these come from the encoder, 'bf16' and 'quantization'")
        QAModelConfig.from_dict({"feature_dim": 1, **self.model})  # validates the model section

    @classmethod
    def from_dict(cls, d: dict) -> "TrainQAConfig":
        return strict_from_dict(cls, d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def use_bf16(self, cuda: bool) -> bool:
        """Whether the LLM weights are bf16: ``bf16: auto`` means where bf16 is native (``adapters.llm.fast_bf16``)."""
        if self.bf16 != "auto":
            return self.bf16
        from adapters.llm import fast_bf16

        return fast_bf16("cuda" if cuda else "cpu")


def apply_overrides(d: dict, overrides: Sequence[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to the mapping ``d``, in place; returns ``d``."""
    import yaml

    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r}: expected KEY=VALUE (e.g. stage1.epochs=2)")
        key, value = item.split("=", 1)
        node = d
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return d


def load_config(path: str | None, overrides: list[str] = ()) -> TrainQAConfig:
    """Read a YAML config and apply ``key.sub=value`` overrides (``apply_overrides``)."""
    import yaml

    d = {}
    if path is not None:
        with open(path) as f:
            d = yaml.safe_load(f) or {}
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(d).__name__}")
    return TrainQAConfig.from_dict(apply_overrides(d, overrides))
