"""Greedy decoding after a prepared prompt prefix: ``ChorusQAModel``'s inference half (a mixin).

The system prompt and a scene's tokens form a prefix shared by every question about that scene; its KV cache
(``SceneContext``) is computed once (``prepare_scene`` / ``prepare_pooled``) and each batch of questions decodes
after a copy of it (``decode_steps``, ``generate``, ``stream``). The methods rely on the model's embedding side
(``embed``, ``pooled_embeddings``, ``situated_per_question``, ...) and its prompt builder (``prefix_ids``,
``question_ids``).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor

from .scene_placeholders import merge_scene_tokens
from .scene_tokens import PooledScene
from .situated import interleave


@dataclass
class SceneContext:
    """KV cache of the shared prompt prefix (system prompt + scene tokens) of U scenes: batch U, length P."""

    cache: object          # transformers Cache, batch U
    length: int            # P
    num_scenes: int        # U
    blind: bool
    pooled: list[PooledScene] | None = None  # the U pooled scenes (situated tokens of posed questions read them)


class GreedyDecoding:
    """Inference methods of ``ChorusQAModel``: prefix KV caches and batched / streamed greedy decoding."""

    @contextlib.contextmanager
    def _inference(self):
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            self.train(was_training)

    def prepare_scenes(self, scene_embeds: Tensor | None, pooled: Sequence[PooledScene] | None = None) -> SceneContext:
        """Run the shared prefix for U scenes (scene_embeds [U, K, H]) or, when None, the blind prefix; ``pooled``: the
        U pooled scenes, kept for the situated tokens of posed questions."""
        blind = scene_embeds is None
        ids = torch.tensor([self.prefix_ids(blind)], device=self.device)
        num = 1 if blind else scene_embeds.shape[0]
        ids = ids.expand(num, -1)
        embeds = self.embed(ids, scene_embeds)
        out = self.causal_lm.get_decoder()(inputs_embeds=embeds, use_cache=True)
        return SceneContext(cache=out.past_key_values, length=ids.shape[1], num_scenes=num, blind=blind,
                            pooled=None if blind or pooled is None else list(pooled))

    def prepare_scene(self, features: Tensor, means: Tensor, segments: Tensor | None = None,
                      colors: Tensor | None = None, labels: Tensor | None = None) -> SceneContext:
        """Scene tokens + prefix KV cache of one scene, ready for many questions ("objects": + segments, colors, labels)."""
        with self._inference():
            if not self.scene_tokenizer.config.pooled:
                return self.prepare_scenes(self.scene_embeddings(features, means))
            pooled = self.pool_scenes(features, means, None, segments, colors, labels)
            return self.prepare_scenes(self.pooled_embeddings(pooled), pooled)

    def prepare_pooled(self, pooled: PooledScene) -> SceneContext:
        """``prepare_scene`` from an already pooled scene (identical to it for the inference pooling)."""
        with self._inference():
            return self.prepare_scenes(self.pooled_embeddings([pooled]), [pooled])

    def _logits_last(self, hidden: Tensor) -> Tensor:
        logits = self.causal_lm.get_output_embeddings()(hidden[:, -1]).float()
        logits[:, self.scene_token_id] = float("-inf")
        return logits

    def decode_steps(self, context: SceneContext, rows: Tensor, questions: Sequence[str], situations=None,
                     max_new_tokens: int = 16, poses=None) -> Iterator[Tensor]:
        """Greedy decoding after a prepared prefix; yields the next token ids [B] at each step.

        rows [B]: which context scene each question uses. The context itself is not modified.
        Question turns are left-padded *after* the prefix; explicit position ids skip the padding.
        ``poses``: the askers' poses (or None), for the situated tokens.
        """
        situations = situations or [None] * len(questions)
        wants = poses is not None and any(p is not None for p in poses) or self.config.anchor_frames != "none"
        if wants and self.situated is not None and not context.blind and context.pooled is None:
            raise ValueError("situated tokens need a context prepared from pooled scenes (prepare_scene / prepare_pooled)")
        situated = self.situated_per_question([context.pooled[int(r)] for r in rows] if context.pooled else [None] * len(rows),
                                              poses, questions, blind=context.blind)
        suffixes = [self.question_ids(q, s, 0 if t is None else len(t))
                    for q, s, t in zip(questions, situations, situated, strict=True)]
        b, width, p = len(suffixes), max(len(s) for s in suffixes), context.length
        cache = copy.deepcopy(context.cache)
        cache.batch_select_indices(rows.to(self.device))
        ids = torch.full((b, width), self.pad_token_id, dtype=torch.long, device=self.device)
        mask = torch.zeros((b, p + width), dtype=torch.long, device=self.device)
        mask[:, :p] = 1
        positions = torch.full((b, width), p, dtype=torch.long, device=self.device)
        for i, s in enumerate(suffixes):
            ids[i, width - len(s):] = torch.tensor(s, device=self.device)
            mask[i, p + width - len(s):] = 1
            positions[i, width - len(s):] = torch.arange(p, p + len(s), device=self.device)
        decoder = self.causal_lm.get_decoder()
        embed = self.causal_lm.get_input_embeddings()
        first = embed(ids)
        if any(t is not None and len(t) for t in situated):
            first = merge_scene_tokens(first, ids, interleave(None, [[] if t is None else [t] for t in situated]),
                                       self.scene_token_id)
        out = decoder(inputs_embeds=first, attention_mask=mask, position_ids=positions,
                      past_key_values=cache, use_cache=True)
        next_pos = positions[:, -1:] + 1
        stops = torch.tensor(self.stop_token_ids, device=self.device)
        done = torch.zeros(b, dtype=torch.bool, device=self.device)
        for step in range(max_new_tokens):
            token = self._logits_last(out.last_hidden_state).argmax(-1)
            token = torch.where(done, torch.full_like(token, self.pad_token_id), token)
            yield token
            done |= torch.isin(token, stops)
            if bool(done.all()) or step == max_new_tokens - 1:
                return
            mask = torch.cat([mask, torch.ones((b, 1), dtype=mask.dtype, device=self.device)], 1)
            out = decoder(inputs_embeds=embed(token[:, None]), attention_mask=mask, position_ids=next_pos,
                          past_key_values=out.past_key_values, use_cache=True)
            next_pos = next_pos + 1

    def _decode_text(self, tokens: list[int]) -> str:
        stops = set(self.stop_token_ids)
        cut = next((i for i, t in enumerate(tokens) if t in stops), len(tokens))
        return self.tokenizer.decode(tokens[:cut], skip_special_tokens=True).strip()

    def generate(self, scenes, questions: Sequence[str], situations=None, max_new_tokens: int = 16,
                 blind: bool = False, poses=None) -> list[str]:
        """Batched greedy answers (deterministic).

        scenes: a SceneContext (from ``prepare_scene``; one scene for all questions, or one per question);
                scene tokens [B, K, D_tok] or [1, K, D_tok] (before the projector);
                a list of (features [N, C], means [N, 3]) pairs (+ segments [N], colors [N, 3] and labels [N]
                for "objects" pooling), one per question (the same objects may repeat: each distinct scene is tokenized and
                prefixed once);
                None when ``blind``.
        """
        questions = list(questions)
        if not questions:
            return []
        with self._inference():
            context, rows = self._context_for(scenes, len(questions), blind)
            steps = list(self.decode_steps(context, rows, questions, situations, max_new_tokens, poses))
        tokens = torch.stack(steps, 1).tolist()
        return [self._decode_text(t) for t in tokens]

    def _context_for(self, scenes, num_questions: int, blind: bool) -> tuple[SceneContext, Tensor]:
        if blind:
            return self.prepare_scenes(None), torch.zeros(num_questions, dtype=torch.long)
        if isinstance(scenes, SceneContext):
            context = scenes
        elif isinstance(scenes, Tensor):
            context = self.prepare_scenes(self.projector(scenes.to(self.device)))
        elif isinstance(scenes, (list, tuple)):
            if len(scenes) != num_questions:
                raise ValueError(f"generate: {len(scenes)} scenes for {num_questions} questions; give one per question")
            unique: dict[int, int] = {}
            rows = [unique.setdefault(id(pair[0]), len(unique)) for pair in scenes]
            firsts = {row: pair for pair, row in zip(scenes, rows)}
            # (features, means) or, for "objects" pooling, (features, means, segments, colors[, labels])
            if not self.scene_tokenizer.config.pooled:
                embeds = torch.cat([self.scene_embeddings(firsts[r][0], firsts[r][1]) for r in range(len(unique))], 0)
                return self.prepare_scenes(embeds), torch.tensor(rows, dtype=torch.long)
            pooled = [self.pool_scenes(firsts[r][0], firsts[r][1], None, *firsts[r][2:])[0] for r in range(len(unique))]
            return self.prepare_scenes(self.pooled_embeddings(pooled), pooled), torch.tensor(rows, dtype=torch.long)
        else:
            raise TypeError(f"generate: scenes of type {type(scenes).__name__}; expected SceneContext, Tensor or list of (features, means)")
        if context.num_scenes == 1:
            return context, torch.zeros(num_questions, dtype=torch.long)
        if context.num_scenes != num_questions:
            raise ValueError(f"generate: {context.num_scenes} scenes for {num_questions} questions; give 1 or one per question")
        return context, torch.arange(num_questions)

    def stream(self, context: SceneContext, question: str, situation: str | None = None,
               max_new_tokens: int = 64) -> Iterator[str]:
        """Answer one question after a prepared prefix, yielding text pieces as tokens arrive."""
        with self._inference():
            tokens: list[int] = []
            shown = ""
            stops = set(self.stop_token_ids)
            for token in self.decode_steps(context, torch.zeros(1, dtype=torch.long), [question],
                                           [situation], max_new_tokens):
                t = int(token[0])
                if t in stops:
                    break
                tokens.append(t)
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the next token
                    continue
                if len(text) > len(shown):
                    yield text[len(shown):]
                    shown = text
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            if len(text) > len(shown):  # flush bytes held back at the end
                yield text[len(shown):]
