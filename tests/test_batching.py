"""chorus_qa.batching: length grouping and sequence length estimates."""

import random

import pytest
import torch

from chorus_qa.batching import group_by_length, sequence_lengths
from chorus_qa.datasets import QAExample


def test_group_by_length_sorts_within_windows_and_keeps_every_sequence():
    rng = random.Random(0)
    lengths = [rng.randint(10, 500) for _ in range(100)]
    batches = group_by_length(lengths, 8, 32, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(100))
    assert all(len(b) == 8 for b in batches if len(b) != 4) and sum(len(b) == 4 for b in batches) == 1
    for b in batches:
        assert len({i // 32 for i in b}) == 1  # never mixes windows
        assert [lengths[i] for i in b] == sorted(lengths[i] for i in b)
    # padding (batch max x size) falls against consecutive batches
    padded = lambda bs: sum(len(b) * max(lengths[i] for i in b) for b in bs)  # noqa: E731
    plain = group_by_length(lengths, 8, 0, random.Random(1))
    assert plain == [list(range(i, min(i + 8, 100))) for i in range(0, 100, 8)]
    assert padded(batches) < padded(plain)
    assert batches == group_by_length(lengths, 8, 32, random.Random(1))  # deterministic per seed
    assert batches != group_by_length(lengths, 8, 32, random.Random(2))


def test_sequence_lengths_count_turns_and_situated_tokens():
    from tests.test_situated import object_situated_model, three_pooled_objects

    model = object_situated_model(situated_words=True)
    pooled = three_pooled_objects(model)

    class Store:
        def get(self, scene_id, variant=0):
            assert variant == 0
            return pooled

    q = dict(scene_id="s", answers=["bed"])
    examples = [QAExample(question_id="1", question="what is on my left?", position=[0.0, 0.0, 0.0],
                          rotation=[0.0, 0.0, 0.0, 1.0], situation="i am at the door.", **q),
                QAExample(question_id="2", question="what is on my left?", **q)]
    posed, plain = sequence_lengths([[0], [1]], examples, model, Store())
    text_only = sequence_lengths([[0], [1]], examples, model, None)
    assert model.situated_size(pooled) == 6  # three occupied slots, two tokens each
    assert posed == text_only[0] + 6 and plain == text_only[1]
    tokens = model.tokenizer("what is on my left? bed", add_special_tokens=False)["input_ids"]
    assert plain == len(tokens) + 10
    both = sequence_lengths([[0, 1]], examples, model, Store())
    assert both == [posed + plain]
