"""How the Q&A trainer cuts training questions into packed sequences and batches.

- ``pack_by_scene``: consecutive questions about one scene become one multi-turn sequence
  (``questions_per_sequence``), so the scene tokens are paid once for several questions;
- ``group_by_length`` (``length_grouping``): within windows of shuffled sequences, sequences of similar length go
  into the same batch, so less of each step is padding. Situated tokens make lengths uneven (a posed question adds
  a token or two per object): with them, padding was ~22 % of a step's tokens, ~6 % after grouping in windows of 64;
- ``make_packed_batch``: the QABatch of a batch of sequences.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

from .model import QABatch
from .prompts import user_turn_text
from .situated import example_pose

TURN_TOKENS = 10  # chat-template tokens around one question / answer turn (ChatML: role headers and end markers)


def pack_by_scene(examples, per_sequence: int, rng: random.Random) -> list[list[int]]:
    """Indices of ``examples`` grouped into runs of at most ``per_sequence`` questions about one scene, shuffled.

    The number of groups (sum over scenes of ceil(questions / per_sequence)) does not depend on ``rng``.
    """
    by_scene = defaultdict(list)
    for i, ex in enumerate(examples):
        by_scene[ex.scene_id].append(i)
    groups = []
    for sid in sorted(by_scene):
        idx = by_scene[sid]
        rng.shuffle(idx)
        groups += [idx[j:j + per_sequence] for j in range(0, len(idx), per_sequence)]
    rng.shuffle(groups)
    return groups


def group_by_length(lengths: Sequence[int], batch_size: int, window: int, rng: random.Random) -> list[list[int]]:
    """Batches of positions 0..len(lengths)-1: each window of ``window`` consecutive positions is sorted by length and
    cut into batches of ``batch_size``; the batches are then shuffled. ``window`` <= ``batch_size`` keeps the order
    (plain consecutive batches, not shuffled)."""
    order = list(range(len(lengths)))
    if window <= batch_size:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    batches = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w:w + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def sequence_lengths(groups: Sequence[Sequence[int]], examples, model, store=None) -> list[int]:
    """Approximate token count of each packed sequence after the shared prefix: its question and answer turns, plus
    the situated tokens of its framed questions (counted on the inference pooling of ``store``, when the model has
    situated tokens). Only for ordering batches: exact counts are not needed."""
    tokenizer = model.tokenizer
    texts = [user_turn_text(ex.question, ex.situation) + " " + ex.answers[0] for ex in examples]
    counts = [len(ids) + TURN_TOKENS for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    out = []
    for group in groups:
        n = sum(counts[i] for i in group)
        if model.situated is not None and store is not None:
            pooled = store.get(examples[group[0]].scene_id, 0)
            frames = model.situated_frames([pooled], [example_pose(examples[i]) for i in group],
                                           [examples[i].question for i in group], turns=[len(group)])
            n += model.situated_size(pooled) * sum(f is not None for f in frames)
        out.append(n)
    return out


def make_packed_batch(groups, store, rng: random.Random) -> QABatch:
    """QABatch with one multi-turn sequence per group of QAExample (all of a group's questions share its scene)."""
    for group in groups:
        if len({ex.scene_id for ex in group}) != 1:
            raise ValueError(f"a packed sequence mixes scenes {sorted({ex.scene_id for ex in group})}")
    scene_inputs = store.batch_inputs([group[0].scene_id for group in groups], rng)
    flat = [ex for group in groups for ex in group]
    return QABatch(
        **scene_inputs, questions=[ex.question for ex in flat],
        answers=[rng.choice(ex.answers) for ex in flat], situations=[ex.situation for ex in flat],
        turns=None if all(len(g) == 1 for g in groups) else [len(g) for g in groups],
        poses=[example_pose(ex) for ex in flat],
    )
