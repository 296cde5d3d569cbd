"""ChorusQAModel: scene tokens -> projector -> (LoRA) LLM, composed rather than subclassed.

Prompt layout (chat template of the LLM, ChatML for SmolLM2)::

    <|im_start|>system\n{system prompt}\n<scene> x K<|im_end|>\n        <- shared prefix, cached per scene
    <|im_start|>user\n{situation} {question}<|im_end|>\n<|im_start|>assistant\n   <- per question
    (with ``situated_tokens``, a question with the asker's pose: {situation} <scene> x n {question}, n situated
    tokens of the occupied object slots; chorus_qa.situated)
    {answer}<|im_end|>                                                    <- the only labelled tokens

The scene tokens and the system prompt come first so that the KV cache of that
prefix is computed once per scene and reused for every question about it
(:meth:`ChorusQAModel.prepare_scenes`, in chorus_qa.decoding). The projected scene tokens replace the K
``<scene>`` placeholders in ``inputs_embeds`` with ``masked_scatter`` after a
count check. ``blind=True`` drops the placeholders (the no-scene baseline).

Prefix, question and answer are tokenized separately, in training and at
inference alike, so the token boundaries are identical in both.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from data.atomic import atomic_directory

from .decoding import GreedyDecoding, SceneContext  # noqa: F401 (SceneContext re-exported)
from .object_words import COUNT_WORDS, METRIC_COLUMNS, SIZE_WORDS, count_ids, log_volumes, reference_table, size_ids
from .projector import cap_norm, mlp2x_gelu
from .prompts import IGNORE_INDEX, PromptBuilder, user_turn_text  # noqa: F401 (re-exported)
from .scene_placeholders import SCENE_TOKEN, add_scene_token, merge_scene_tokens  # noqa: F401 (re-exported)
from .qa_config import LoraSettings, QAModelConfig
from .scene_tokens import PooledScene, SceneTokenizer, basic_color_names, pool_scene, pooled_valid, scene_slices
from .situated import (SECTOR_WORDS, SituatedProjector, asked_sector, asked_side_count, asks_comparison, asks_count,
                       asks_lateral, asks_size, egocentric, find_anchor, interleave, question_frame, resolve_pose, sector_ids)

log = logging.getLogger(__name__)


@dataclass
class QABatch:
    """A training batch: B sequences, each with its own scene (scenes may repeat).

    features: [N, C] concatenated per-Gaussian features; means: [N, 3]; offset: [B] cumulative counts.
    pooled: instead of features/means/offset (left None), one PooledScene per sequence ("cell" pooling).
    questions / answers / situations: flat lists over all questions; ``turns`` [B] says how many consecutive
    questions each sequence asks about its scene as a multi-turn chat (None: one question per sequence).
    poses: flat list of the askers' (x, y, yaw) (``situated.pose_of``) or None, read with ``situated_tokens``.
    """

    features: Tensor | None
    means: Tensor | None
    offset: Tensor | None
    questions: list[str]
    answers: list[str]
    situations: list[str | None] | None = None
    turns: list[int] | None = None
    pooled: list[PooledScene] | None = None
    poses: list[tuple[float, float, float] | None] | None = None


def apply_lora(language_model, lora: LoraSettings):
    """Wrap the LLM with peft LoRA adapters (base weights frozen)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                     target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(language_model, cfg)


class ChorusQAModel(PromptBuilder, GreedyDecoding, nn.Module):
    """Scene tokenizer + projector + language model (+ LoRA); the encoder is referenced, not owned."""

    def __init__(self, config: QAModelConfig, language_model, tokenizer):
        super().__init__()
        self.config = config
        self.language_model = language_model
        self.tokenizer = tokenizer
        if SCENE_TOKEN not in tokenizer.get_vocab():
            raise ValueError(f"the tokenizer has no {SCENE_TOKEN} token: call add_scene_token(language_model, tokenizer) first")
        self.scene_token_id = tokenizer.convert_tokens_to_ids(SCENE_TOKEN)
        hidden = self.causal_lm.config.hidden_size
        self.scene_tokenizer = SceneTokenizer(config.scene_tokenizer_config())
        self.projector = mlp2x_gelu(config.token_dim, hidden)
        if config.object_names or config.color_names:
            # Start each object token as exactly its class-name word: the projector's last layer begins at zero and
            # learns a residual (box, colour, features) on top. A randomly initialised projector instead gives the
            # LLM noise tokens, which early training silences into a constant soft prompt that ignores the scene.
            nn.init.zeros_(self.projector[-1].weight)
            nn.init.zeros_(self.projector[-1].bias)
        self.relation_projector = None
        if config.relation_tokens:
            # a relation token starts as zeros (an empty slot) and learns what the relation layers found
            self.relation_projector = mlp2x_gelu(config.token_dim, hidden)
            nn.init.zeros_(self.relation_projector[-1].weight)
            nn.init.zeros_(self.relation_projector[-1].bias)
        self.situated = SituatedProjector(hidden) if config.situated_tokens else None
        device = self.causal_lm.get_input_embeddings().weight.device
        for module in self.trainable_modules().values():
            module.to(device)
        stops = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
        self.stop_token_ids = sorted(t for t in stops if isinstance(t, int) and t >= 0 and t != tokenizer.unk_token_id)
        vocab = tokenizer.get_vocab()
        self.end_of_turn_id = vocab["<|im_end|>"] if "<|im_end|>" in vocab else tokenizer.eos_token_id
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_token_ids[0]
        self._prefix_cache: dict[bool, list[int]] = {}
        self._anchor_vocab: tuple[list[str], list[str]] | None = None
        if config.object_names:
            self.register_buffer("name_embeds", self.word_embeddings(self.config.class_names()), persistent=False)
            self.name_norm = float(self.name_embeds[:-1].float().norm(dim=-1).mean())  # the last row is "no name" (zeros)
        if config.color_words:
            self.register_buffer("color_embeds", self.word_embeddings(basic_color_names()), persistent=False)
        if config.situated_words:
            self.register_buffer("sector_embeds", self.word_embeddings(SECTOR_WORDS), persistent=False)
        if config.size_words:
            self.register_buffer("size_embeds", self.word_embeddings(SIZE_WORDS), persistent=False)
            reference = config.size_reference
            self.size_table = None if reference is None else reference_table(reference, self.config.class_names())
        if config.count_words or config.count_group:
            self.register_buffer("count_embeds", self.word_embeddings(COUNT_WORDS, space=False), persistent=False)

    def word_embeddings(self, names: Sequence[str], space: bool = True) -> Tensor:
        """[L + 1, H]: the mean input embedding of each name's tokens (as a word inside a sentence, with a leading
        space unless ``space`` is False: digits); the last row (id -1 / none) is zeros. Frozen, and rebuilt from the
        LLM on load, so checkpoints do not store it."""
        table = self.causal_lm.get_input_embeddings().weight.detach()
        lead = " " if space else ""
        rows = [table[torch.tensor(self.tokenizer(lead + n, add_special_tokens=False)["input_ids"], device=table.device)].float().mean(0)
                for n in names]
        return torch.cat([torch.stack(rows), torch.zeros(1, table.shape[1], device=table.device)]).to(table.dtype)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, config: QAModelConfig, device: str = "cpu", cache_dir=None) -> "ChorusQAModel":
        """Load the LLM named by ``config.llm``, add ``<scene>``, wrap with LoRA when enabled."""
        from adapters.llm import load_llm

        lm, tokenizer = load_llm(config.llm, dtype=config.llm_dtype, quantization=config.quantization,
                                 cache_dir=cache_dir, device=device)
        add_scene_token(lm, tokenizer)
        for p in lm.parameters():
            p.requires_grad_(False)
        if config.quantization is not None:
            from peft import prepare_model_for_kbit_training

            lm = prepare_model_for_kbit_training(lm, use_gradient_checkpointing=False)
        if config.lora.enabled:
            lm = apply_lora(lm, config.lora)
        return cls(config, lm, tokenizer)

    @property
    def causal_lm(self):
        """The underlying CausalLM (LoRA layers, if any, are injected into it in place)."""
        lm = self.language_model
        return lm.get_base_model() if hasattr(lm, "get_base_model") else lm

    @property
    def device(self) -> torch.device:
        return self.projector[0].weight.device

    @property
    def encoder_ref(self) -> str | None:
        return self.config.encoder_ref

    def set_trainable(self, stage: int) -> None:
        """Stage 1: scene tokenizer + projector. Stage 2: also the LoRA adapters. Base LLM weights never train."""
        if stage not in (1, 2):
            raise ValueError(f"stage = {stage}: expected 1 or 2")
        for name, p in self.language_model.named_parameters():
            p.requires_grad_(stage == 2 and "lora_" in name)
        for module in self.trainable_modules().values():
            for p in module.parameters():
                p.requires_grad_(True)

    def trainable_modules(self) -> dict[str, nn.Module]:
        """The modules trained besides LoRA and saved in projector.safetensors, by state-dict prefix."""
        modules = {"scene_tokenizer": self.scene_tokenizer, "projector": self.projector}
        if self.relation_projector is not None:
            modules["relation_projector"] = self.relation_projector
        if self.situated is not None:
            modules["situated_projector"] = self.situated
        return modules

    # ------------------------------------------------------------------ embeddings
    def scene_embeddings(self, features: Tensor, means: Tensor, offset: Tensor | None = None,
                         segments: Tensor | None = None, colors: Tensor | None = None,
                         labels: Tensor | None = None) -> Tensor:
        """Projected scene tokens [B, K, H] (B = 1 without offset); "objects" pooling also takes segments [N],
        colors [N, 3] and (for ``object_names``) per-Gaussian class ids labels [N].

        Parameter-free poolings ("cell", "objects") pool each scene and go through ``pooled_embeddings``, the path
        training on cached pooled scenes takes; "knn" pooling runs the tokenizer on the features.
        """
        cfg, device = self.scene_tokenizer.config, self.device
        if not cfg.pooled:
            tokens, _ = self.scene_tokenizer(features.to(device), means.to(device), offset)
            return self.projector(tokens if tokens.ndim == 3 else tokens.unsqueeze(0))
        return self.pooled_embeddings(self.pool_scenes(features, means, offset, segments, colors, labels))

    def pool_scenes(self, features: Tensor, means: Tensor, offset: Tensor | None = None, segments: Tensor | None = None,
                    colors: Tensor | None = None, labels: Tensor | None = None) -> list[PooledScene]:
        """The parameter-free pooling ("cell" / "objects") of one scene, or of B concatenated ones with ``offset``."""
        cfg, device = self.scene_tokenizer.config, self.device
        per_gaussian = {"segments": segments, "colors": colors, "labels": labels}
        return [pool_scene(features[a:b].to(device), means[a:b].to(device), cfg, self.scene_tokenizer.training,
                           **{k: None if v is None else v[a:b].to(device) for k, v in per_gaussian.items()})
                for a, b in scene_slices(offset, len(means))]

    def situated_embeddings(self, pooled: PooledScene, pose: tuple[float, float, float], lateral: bool = False,
                            first_sector: int | None = None, magnitude: str | None = None) -> Tensor:
        """The situated tokens [n, H] of one scene seen from ``pose``, one per occupied slot, nearest to the asker first
        (leftmost first with ``lateral``; largest box volume or highest box top first with ``magnitude`` "volume" /
        "height"; the slots in quarter ``first_sector`` of the view before the others, each part nearest first, with
        ``first_sector``; two per slot, [2n, H], with ``situated_words``): see ``chorus_qa.situated``."""
        valid = pooled_valid(pooled).to(self.device)
        offsets = egocentric(pooled.centres.to(self.device)[valid], pose)
        if magnitude == "volume":  # "which is bigger, ...?" = the one listed first
            order = (-log_volumes(pooled).to(self.device)[valid]).argsort(stable=True)
        elif magnitude == "height":  # "which is taller, ...?": highest box top (the metric height column is log(h + 1 cm))
            height = pooled.geometry.to(self.device)[valid][:, -METRIC_COLUMNS + 2].float().exp() - 0.01
            order = (-(pooled.centres.to(self.device)[valid][:, 2].float() + height / 2)).argsort(stable=True)
        elif lateral:  # "which is farther to the left, ...?" = the one listed first
            order = (-offsets[:, 1]).argsort(stable=True)
        else:  # nearest first: "what is on my left?" = first left one
            order = offsets[:, :2].norm(dim=1).argsort(stable=True)
        if first_sector is not None:  # ... and with sector_order the first token at all
            order = order[(sector_ids(offsets[order]) != first_sector).long().argsort(stable=True)]
        offsets = offsets[order]
        ego = self.situated(offsets)
        name = torch.zeros_like(ego)
        if self.config.object_names:
            name = self._lookup(self.name_embeds, [pooled.labels], "object_names", "class labels")[0][valid][order].to(ego.dtype)
        if not self.config.situated_words:
            return name + ego
        word = self.sector_embeds[sector_ids(offsets)].to(ego.dtype)
        return torch.stack([name, word + ego], 1).flatten(0, 1)

    def _asked(self, pooled: Sequence[PooledScene], poses, questions, turns) -> list[tuple[int, object, str | None]]:
        """(row, pose, question text) of each question: ``pooled`` holds the scene of each of the B rows, ``turns`` [B]
        how many questions each row asks (one each when None); missing poses / texts are None."""
        turns = list(turns) if turns is not None else [1] * len(pooled)
        n = sum(turns)
        poses = list(poses) if poses is not None else [None] * n
        questions = list(questions) if questions is not None else [None] * n
        if len(poses) != n or len(questions) != n:
            raise ValueError(f"situated_per_question: {len(poses)} poses and {len(questions)} question texts for {n} questions")
        return list(zip([b for b, k in enumerate(turns) for _ in range(k)], poses, questions))

    def _frame(self, scene: PooledScene, pose, question: str | None) -> tuple[float, float, float] | None:
        """The pose (placed in ``scene``), else the anchor frame of the question's text, else None."""
        if pose is not None:
            return resolve_pose(pose, scene.box_centre)
        return None if question is None else self.anchor_pose(scene, question)

    def situated_frames(self, pooled: Sequence[PooledScene], poses, questions=None, turns=None,
                        blind: bool = False) -> list[tuple[float, float, float] | None]:
        """The frame each question's situated tokens are seen from: its pose, or (``anchor_frames``) the frame of the
        object its text names first; None without either, blind or without ``situated_tokens``. ``pooled`` holds the
        scene of each of the B rows, ``turns`` [B] how many questions each row asks."""
        asked = self._asked(pooled, poses, questions, turns)
        if self.situated is None or blind:
            return [None] * len(asked)
        return [self._frame(pooled[b], pose, question) for b, pose, question in asked]

    def situated_per_question(self, pooled: Sequence[PooledScene], poses, questions=None, turns=None,
                              blind: bool = False) -> list[Tensor | None]:
        """The situated tokens of each question (None where ``situated_frames`` gives no frame); an anchor frame of a
        question about left and right lists them leftmost first with ``lateral_order``, one comparing sizes largest /
        tallest first with ``comparison_order``, and a posed question about one quarter of the view ("what is on my
        left?") lists that quarter's first with ``sector_order``. Without a frame, a question whether an object is small or
        large gets ``size_group``'s tokens and one counting a class ``count_group``'s."""
        asked = self._asked(pooled, poses, questions, turns)
        if self.situated is None or blind:
            return [None] * len(asked)
        tokens = []
        for b, pose, question in asked:
            frame = self._frame(pooled[b], pose, question)
            if frame is None:
                group = None
                if pose is None and question and pooled[b] is not None:
                    if self.config.size_group:
                        group = self.size_group_embeddings(pooled[b], question)
                    if group is None and self.config.count_group:
                        group = self.count_group_embeddings(pooled[b], question)
                tokens.append(group)
                continue
            anchored = pose is None  # an anchor frame, found from the question's text
            lateral = self.config.lateral_order and anchored and asks_lateral(question)
            magnitude = asks_comparison(question) if self.config.comparison_order and anchored else None
            side = asked_side_count(question) if self.config.side_group and not anchored and question else None
            if side is not None:
                group = self.side_group_embeddings(pooled[b], frame, question, side)
                if group is not None:
                    tokens.append(group)
                    continue
            first = asked_sector(question) if self.config.sector_order and not anchored and question else None
            tokens.append(self.situated_embeddings(pooled[b], frame, lateral, first, magnitude))
        return tokens

    def _named_slots(self, pooled: PooledScene, question: str, plural: bool = False) -> Tensor | None:
        """[n] the occupied slots of the class a question names first (``find_anchor``; of the colour named before
        it, when a slot has that colour), or None when it names none or no slot has it."""
        if self._anchor_vocab is None:
            self._anchor_vocab = (self.config.class_names(), basic_color_names())
        found = find_anchor(question, *self._anchor_vocab, plural=plural)
        if found is None or pooled.labels is None:
            return None
        cls, color = found
        pick = pooled_valid(pooled) & (pooled.labels == cls)
        if color is not None and pooled.color_ids is not None and bool((pick & (pooled.color_ids == color)).any()):
            pick = pick & (pooled.color_ids == color)
        return torch.where(pick)[0] if bool(pick.any()) else None

    def _word_pairs(self, pooled: PooledScene, slots: Tensor, words: Tensor) -> Tensor:
        """[2n, H] each slot's class-name word followed by its row of ``words`` [n, H], in the situated tokens' dtype."""
        dtype = next(self.situated.parameters()).dtype
        names = self._lookup(self.name_embeds, [pooled.labels], "object_names", "class labels")[0][slots.to(self.device)]
        return torch.stack([names.to(dtype), words.to(dtype)], 1).flatten(0, 1)

    def size_group_embeddings(self, pooled: PooledScene, question: str) -> Tensor | None:
        """``size_group``'s situated tokens [2n, H] for a question asking whether an object is small or large: each object
        token of the class it names (``_named_slots``), largest box first, as its class word followed by its size word;
        None when it asks no such thing or no token has the class."""
        slots = self._named_slots(pooled, question) if asks_size(question) else None
        if slots is None:
            return None
        slots = slots[(-log_volumes(pooled)[slots]).argsort(stable=True)]
        sizes = self._lookup(self.size_embeds, [self.size_ids(pooled)], "size_words", "sizes")[0][slots.to(self.device)]
        return self._word_pairs(pooled, slots, sizes)

    def side_group_embeddings(self, pooled: PooledScene, pose: tuple[float, float, float], question: str,
                              side: int) -> Tensor | None:
        """``side_group``'s situated tokens [2n, H] for a posed question counting one class on one side ("how many
        chairs are on my left?"): each object token of that class as its class word followed by "left" or "right"
        (the sign of its offset along the pose's left axis), the asked ``side``'s (a ``SECTOR_WORDS`` index) first,
        each side nearest first; None when the question names no class with a token."""
        slots = self._named_slots(pooled, question, plural=True)
        if slots is None:
            return None
        offsets = egocentric(pooled.centres[slots].to(self.device), pose)
        words = torch.where(offsets[:, 1] > 0, SECTOR_WORDS.index("left"), SECTOR_WORDS.index("right"))
        order = offsets[:, :2].norm(dim=1).argsort(stable=True)
        order = order[(words[order] != side).long().argsort(stable=True)]  # the asked side first, each nearest first
        return self._word_pairs(pooled, slots[order.cpu()], self.sector_embeds[words[order]])

    def count_group_embeddings(self, pooled: PooledScene, question: str) -> Tensor | None:
        """``count_group``'s situated tokens [2n, H] for a question counting one class in the whole scene ("how many
        chairs are in the room?"): each object token of that class (``_named_slots``, plurals allowed) as its class word
        followed by its running number "1", "2", ... (the last is "9" from the ninth on); None when it asks no count
        or no token has the class."""
        slots = self._named_slots(pooled, question, plural=True) if asks_count(question) else None
        if slots is None:
            return None
        numbers = torch.arange(len(slots), device=self.device).clamp(max=len(COUNT_WORDS) - 1)
        return self._word_pairs(pooled, slots, self.count_embeds[numbers])

    def situated_size(self, pooled: PooledScene) -> int:
        """How many situated tokens a framed question about ``pooled`` gets (``situated_embeddings``' length)."""
        return (2 if self.config.situated_words else 1) * int(pooled_valid(pooled).sum())

    def anchor_pose(self, pooled: PooledScene, question: str) -> tuple[float, float, float] | None:
        """The frame ``anchor_frames`` gives a question without a pose (``situated.question_frame``), or None."""
        if self.config.anchor_frames == "none":
            return None
        if self._anchor_vocab is None:
            self._anchor_vocab = (self.config.class_names(), basic_color_names())
        return question_frame(pooled, question, *self._anchor_vocab, mode=self.config.anchor_frames,
                              comparisons=self.config.comparison_order)

    def object_residual(self, tokens: Tensor) -> Tensor:
        """The projector's output for scene tokens [..., D_tok] -> [..., H]: with ``object_names``, the residual added to
        each class-name word, bounded by ``config.residual_cap`` (times the mean class-name word norm) when set."""
        out = self.projector(tokens)
        return out if self.config.residual_cap is None else cap_norm(out, self.config.residual_cap * self.name_norm)

    def pooled_embeddings(self, pooled: Sequence[PooledScene]) -> Tensor:
        """Projected scene tokens [B, K, H] of B pooled scenes (see ``scene_tokens.pool_scene``), plus the class-name
        embedding of each object token when ``config.object_names``. With ``config.color_tokens`` each object token is
        followed by its colour word's plain embedding: [B, 2K, H] as (object 1, colour 1, object 2, colour 2, ...).
        With ``config.relation_tokens`` each object's group ends with a relation token: the relation layers' change to
        the object token, projected by ``relation_projector`` (zeros at initialisation and for empty slots). Size and
        count words (``chorus_qa.object_words``) follow the colour word, the size word before the object token with
        ``config.size_first``."""
        parts = [self.scene_tokenizer.embed_pooled(p) for p in pooled]
        tokens = torch.stack([t for t, _ in parts])
        embeds = self.object_residual(tokens)
        if self.config.object_names:
            embeds = embeds + self._lookup(self.name_embeds, [p.labels for p in pooled], "object_names", "class labels (pool them with labels=...)").to(embeds.dtype)
        if self.config.color_names:
            embeds = embeds + self._lookup(self.color_embeds, [p.color_ids for p in pooled], "color_names", "colour ids").to(embeds.dtype)
        per_object = [embeds]
        if self.config.color_tokens:
            per_object.append(self._lookup(self.color_embeds, [p.color_ids for p in pooled], "color_tokens", "colour ids").to(embeds.dtype))
        if self.config.size_words:
            sizes = self._lookup(self.size_embeds, [self.size_ids(p) for p in pooled], "size_words", "sizes").to(embeds.dtype)
            per_object.insert(0 if self.config.size_first else len(per_object), sizes)
        if self.config.count_words:
            per_object.append(self._lookup(self.count_embeds, [count_ids(p) for p in pooled], "count_words", "counts").to(embeds.dtype))
        if self.relation_projector is not None:
            valid = torch.stack([pooled_valid(p) for p in pooled]).to(tokens.device)
            related = self.scene_tokenizer.relations(tokens, torch.stack([c for _, c in parts]), valid)
            per_object.append((self.relation_projector(related - tokens) * valid.unsqueeze(-1)).to(embeds.dtype))
        return torch.stack(per_object, 2).flatten(1, 2) if len(per_object) > 1 else embeds

    def size_ids(self, pooled: PooledScene) -> Tensor:
        """[K] ``SIZE_WORDS`` index of each object token of a pooled scene (``chorus_qa.object_words``; -1 = none)."""
        if self.size_table is None:
            raise ValueError("size_words: the model config has no size_reference (the trainer sets it from its pooled cache)")
        return size_ids(pooled, self.size_table)

    def _lookup(self, table: Tensor, ids: Sequence[Tensor | None], option: str, what: str) -> Tensor:
        """Rows of a word table [L + 1, H] for per-token ids [B, K]; ids outside 0..L-1 (-1 = none) get the zero row."""
        if any(i is None for i in ids):
            raise ValueError(f"{option}: the pooled scenes carry no {what}")
        last = table.shape[0] - 1
        ids = torch.stack([i.to(self.device).long() for i in ids])
        ids = torch.where((ids < 0) | (ids >= last), torch.full_like(ids, last), ids)
        return table[ids]

    def embed(self, input_ids: Tensor, scene_embeds: Tensor | None) -> Tensor:
        """Token embeddings [B, T, H] with scene tokens placed (pass None for a blind prompt)."""
        embeds = self.causal_lm.get_input_embeddings()(input_ids.to(self.device))
        if scene_embeds is None:
            if bool((input_ids == self.scene_token_id).any()):
                raise ValueError(f"the prompt has {SCENE_TOKEN} placeholders but no scene tokens were given")
            return embeds
        return merge_scene_tokens(embeds, input_ids.to(self.device), scene_embeds, self.scene_token_id)

    # ------------------------------------------------------------------ training
    def forward(self, batch: QABatch, blind: bool = False) -> Tensor:
        """Mean cross-entropy over the answer tokens of the batch."""
        pooled, situated = batch.pooled, [None] * len(batch.questions)
        if not blind and self.situated is not None and (self.config.anchor_frames != "none"
                                                         or any(p is not None for p in batch.poses or [])):
            if pooled is None:
                pooled = self.pool_scenes(batch.features, batch.means, batch.offset)
            situated = self.situated_per_question(pooled, batch.poses, batch.questions, batch.turns)
        input_ids, labels = self.build_token_ids(batch.questions, batch.answers, batch.situations, blind, batch.turns,
                                                 [0 if t is None else len(t) for t in situated])
        if blind:
            scene = None
        elif pooled is not None:
            scene = self.pooled_embeddings(pooled)
            if any(t is not None for t in situated):
                turns = batch.turns or [1] * len(pooled)
                starts = [sum(turns[:b]) for b in range(len(turns))]
                scene = interleave(scene, [[t for t in situated[a:a + n] if t is not None] for a, n in zip(starts, turns)])
        else:
            scene = self.scene_embeddings(batch.features, batch.means, batch.offset)
        return self.loss_from_ids(input_ids, labels, scene)

    def loss_from_ids(self, input_ids: Tensor, labels: Tensor, scene_embeds: Tensor | None) -> Tensor:
        embeds = self.embed(input_ids, scene_embeds)
        # Right padding + causal attention: padding never influences real tokens, so no mask is needed.
        hidden = self.causal_lm.get_decoder()(inputs_embeds=embeds, use_cache=False).last_hidden_state
        labels = labels.to(hidden.device)
        target = labels[:, 1:]
        keep = target != IGNORE_INDEX
        # lm_head only on the answer positions: the full-vocabulary projection dominates CPU cost otherwise.
        logits = self.causal_lm.get_output_embeddings()(hidden[:, :-1][keep])
        return nn.functional.cross_entropy(logits.float(), target[keep])

    # ------------------------------------------------------------------ checkpoints
    def trainable_state_dict(self) -> dict[str, Tensor]:
        """Scene tokenizer + projector (+ relation projector) weights (the LoRA adapter is saved by peft)."""
        return {f"{name}.{k}": v.detach().contiguous().cpu()
                for name, module in self.trainable_modules().items() for k, v in module.state_dict().items()}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write config.json, projector.safetensors and adapter/ (peft) atomically into ``directory``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            (tmp / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
            save_file(self.trainable_state_dict(), str(tmp / "projector.safetensors"))
            if hasattr(self.language_model, "peft_config"):
                self.language_model.save_pretrained(str(tmp / "adapter"), save_embedding_layers=False)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str = "cpu", trainable: bool = False,
                        cache_dir=None, llm_dtype: str | None = None) -> "ChorusQAModel":
        """Rebuild from a ``save_pretrained`` folder (no pickles anywhere).

        llm_dtype  the frozen LLM's dtype; None = the checkpoint's, except that an LLM trained in bf16 runs in fp32
                   for inference on a device without native bf16 (``adapters.llm.inference_dtype``: ~6x faster there).
                   ``model.config.llm_dtype`` says what was loaded."""
        from safetensors.torch import load_file

        from adapters.llm import inference_dtype, load_llm

        directory = Path(directory)
        config_path = directory / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path}: missing; expected a ChorusQAModel.save_pretrained folder")
        config = QAModelConfig.from_dict(json.loads(config_path.read_text()))
        if llm_dtype is None and not trainable:
            llm_dtype = inference_dtype(config.llm_dtype, device)
            if llm_dtype != config.llm_dtype:
                log.info("%s: LLM trained in %s runs in %s here (no native bf16 on %s)", directory, config.llm_dtype,
                         llm_dtype, device)
        if llm_dtype is not None:
            config = dataclasses.replace(config, llm_dtype=llm_dtype)
        lm, tokenizer = load_llm(config.llm, dtype=config.llm_dtype, quantization=config.quantization,
                                 cache_dir=cache_dir, device=device)
        add_scene_token(lm, tokenizer)
        for p in lm.parameters():
            p.requires_grad_(False)
        adapter = directory / "adapter"
        if (adapter / "adapter_config.json").is_file():
            from peft import PeftModel

            lm = PeftModel.from_pretrained(lm, str(adapter), is_trainable=trainable)
        elif config.lora.enabled:
            raise FileNotFoundError(f"{adapter}: config.lora.enabled is true but the folder has no adapter_config.json")
        model = cls(config, lm, tokenizer)
        state = load_file(str(directory / "projector.safetensors"))
        current = model.trainable_state_dict()
        if set(state) != set(current):
            raise ValueError(f"{directory / 'projector.safetensors'}: keys differ from the model: "
                             f"missing {sorted(set(current) - set(state))[:5]}, unexpected {sorted(set(state) - set(current))[:5]}")
        for name, module in model.trainable_modules().items():
            module.load_state_dict({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")})
        return model.eval()
