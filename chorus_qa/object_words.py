"""Words an object token carries besides its class name and colour, each a token of its own after the object's
colour word, the way colour words made colour readable: its size (``size_words``) and how many tokens its class has
(``count_words``).

Size words: "small" or "large" after each object token.

"Is the lamp small or large?" asks about the lamp against other lamps, not against the room: a large lamp is
smaller than a small bed. The object tokens carry the box size in metres (``metric_extents``), but reading it
means the LLM learning a threshold per class from a few hundred size questions, and the released models answer
at chance (README). So each labelled object token is followed by the word "small" or "large": its box volume
against the median volume of its class's tokens in the training rooms (``size_reference``, computed once by the
trainer from the pooled cache and saved in the model config, so inference and the app read the same words).

The reference is a statistic of the model's own inputs (zero-shot segments and their classes), not of any
ground truth: a class whose segments are usually merged or split gets a reference that reflects that.

Count words: the digit "1" .. "9" of how many object tokens of the scene share the token's class ("9" for nine or
more). "How many chairs are there?" then asks the LLM to copy a word next to any chair token instead of counting
tokens, which a 135M LLM does badly (release H: the tokens give the right count for 61.5 % of the val counting
questions, and the model misses 51 of those 243). The count is the segmenter's: a split or missed object changes it.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Iterable, Sequence

import torch
from torch import Tensor

SIZE_WORDS = ("small", "large")
COUNT_WORDS = tuple(str(n) for n in range(1, 10))  # digits as the answers write them (no leading space)
METRIC_COLUMNS = 3  # the last geometry columns of an object token with metric_extents: log(box size in metres + 1 cm)


def log_volumes(pooled) -> Tensor:
    """[K] log box volume (m^3, each side + 1 cm) of a pooled scene's object tokens (``metric_extents`` geometry)."""
    return pooled.geometry[:, -METRIC_COLUMNS:].float().sum(-1)


def labelled_tokens(pooled) -> Tensor:
    """[K] bool: the occupied slots of a pooled scene that carry a class label."""
    from .scene_tokens import pooled_valid

    if pooled.labels is None:
        raise ValueError("object words: the pooled scene carries no class labels (pool it with labels=...)")
    return pooled_valid(pooled) & (pooled.labels >= 0)


def size_reference(pooled_scenes: Iterable, class_names: Sequence[str]) -> dict[str, float]:
    """Per class name, the median log box volume of that class's labelled object tokens over ``pooled_scenes``
    (rounded to 1e-4 so the JSON config round-trips exactly). Classes without a token are left out."""
    seen: dict[str, list[float]] = defaultdict(list)
    for pooled in pooled_scenes:
        keep = labelled_tokens(pooled)
        for label, volume in zip(pooled.labels[keep].tolist(), log_volumes(pooled)[keep].tolist()):
            if label < len(class_names):
                seen[class_names[label]].append(volume)
    if not seen:
        raise ValueError("size_reference: no labelled object token in the pooled scenes")
    return {name: round(statistics.median(v), 4) for name, v in sorted(seen.items())}


def reference_table(reference: dict[str, float], class_names: Sequence[str]) -> Tensor:
    """[L] the reference log volume of each class of the label set, NaN for a class the reference does not know."""
    return torch.tensor([reference.get(name, math.nan) for name in class_names], dtype=torch.float32)


def size_ids(pooled, table: Tensor) -> Tensor:
    """[K] index into ``SIZE_WORDS`` per token: 1 ("large") when its log volume is above its class's reference, 0
    ("small") otherwise; -1 for empty or unlabelled slots and classes without a reference."""
    keep = labelled_tokens(pooled)
    labels = pooled.labels.long().clamp(0, len(table) - 1)
    ref = table.to(pooled.geometry.device)[labels]
    keep = keep & (pooled.labels < len(table)) & ~torch.isnan(ref)
    ids = (log_volumes(pooled) > ref).long()
    return torch.where(keep, ids, torch.full_like(ids, -1))


def count_ids(pooled) -> Tensor:
    """[K] index into ``COUNT_WORDS`` per token: the number of labelled object tokens of its class in the scene, minus
    one, at most 8 ("9"); -1 for empty or unlabelled slots."""
    keep = labelled_tokens(pooled)
    labels = torch.where(keep, pooled.labels.long(), torch.full_like(pooled.labels.long(), -1))
    same = (labels[:, None] == labels[None, :]) & keep[None, :]
    ids = (same.sum(1) - 1).clamp(max=len(COUNT_WORDS) - 1)
    return torch.where(keep, ids, torch.full_like(ids, -1))
