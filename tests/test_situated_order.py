"""Question-dependent situated tokens: the orders an anchor or posed frame lists its objects in (lateral, sector,
comparison) and the groups a size or count question gets instead (size_group, side_group, count_group)."""

import math

import pytest
import torch

from chorus_qa.model import QAModelConfig
from chorus_qa.situated import SECTOR_WORDS, egocentric
from tests.test_situated import object_situated_model, perturb, three_pooled_objects


def test_lateral_order_lists_a_left_right_questions_anchor_frame_leftmost_first():
    model = object_situated_model(situated_words=True, anchor_frames="spatial", lateral_order=True)
    perturb(model.situated)
    pooled = three_pooled_objects(model)
    from encoder.label_sets import get_label_set

    table = get_label_set("synth")[9]
    question = f"standing at the {table} and facing into the room, which is farther to the left, the a or the b?"
    pose = model.anchor_pose(pooled, question)
    assert pose is not None
    # independent reference: each slot's offset along the frame's left axis, and its floor distance
    x, y, yaw = pose
    centres = pooled.centres[:3, :2].double()
    left = (-(centres[:, 0] - x) * math.sin(yaw) + (centres[:, 1] - y) * math.cos(yaw)).tolist()
    dist = (centres - torch.tensor([x, y], dtype=torch.float64)).norm(dim=1).tolist()
    by_left = sorted(range(3), key=lambda i: -left[i])
    by_dist = sorted(range(3), key=lambda i: dist[i])
    assert by_left != by_dist  # so the test sees the reordering
    with torch.no_grad():
        near = model.situated_embeddings(pooled, pose).view(3, 2, -1)  # (name, quarter word) per slot, nearest first
        got = model.situated_per_question([pooled], [None], [question])[0].view(3, 2, -1)
        assert torch.allclose(got, near[[by_dist.index(i) for i in by_left]], atol=1e-5)  # same rows, other order
        # a posed question and a question without left / right keep the nearest-first order
        posed = model.situated_per_question([pooled], [pose], [question])[0].view(3, 2, -1)
        assert torch.equal(posed, near)
        closest = f"what is the closest object to the {table}?"
        assert torch.equal(model.situated_per_question([pooled], [None], [closest])[0].view(3, 2, -1), near)
        plain = object_situated_model(situated_words=True, anchor_frames="spatial")
        plain.load_state_dict(model.state_dict())
        assert torch.equal(plain.situated_per_question([pooled], [None], [question])[0].view(3, 2, -1), near)
    with pytest.raises(ValueError, match="lateral_order"):
        QAModelConfig(feature_dim=6, llm="tiny-random-llama", pooling="objects", segments={"source": "gt"},
                      object_names=True, situated_tokens=True, lateral_order=True)


def test_asked_sector_names_one_quarter_of_the_view():
    from chorus_qa.situated import asked_sector

    assert [asked_sector(q) for q in ("what is in front of me?", "what is on my left?", "what is behind me?",
                                      "how many chairs are on my right?")] == [0, 1, 2, 3]
    assert SECTOR_WORDS[asked_sector("What is on my LEFT?")] == "left"
    # a question naming both sides, or none, gets no quarter
    assert asked_sector("is the lamp on my left or my right?") is None
    assert asked_sector("which way should i turn to face the lamp?") is None
    assert asked_sector("what is to the left of the bed?") is None


def test_sector_order_lists_the_asked_quarter_first_for_a_posed_question():
    model = object_situated_model(situated_words=True, sector_order=True)
    perturb(model.situated)
    pooled = three_pooled_objects(model)
    # independent reference: bearings of the three slots from a pose, counter-clockwise from its facing
    centres = pooled.centres[:3, :2].double()
    cases = 0
    for yaw in torch.linspace(-math.pi, math.pi, 13).tolist():
        pose = (float(centres[:, 0].mean()), float(centres[:, 1].mean()), yaw)
        d = centres - torch.tensor(pose[:2], dtype=torch.float64)
        ahead = d[:, 0] * math.cos(yaw) + d[:, 1] * math.sin(yaw)
        left = -d[:, 0] * math.sin(yaw) + d[:, 1] * math.cos(yaw)
        bearing = torch.rad2deg(torch.atan2(left, ahead)).tolist()
        quarter = [int(((b + 45) % 360) // 90) for b in bearing]  # front, left, behind, right
        dist = d.norm(dim=1).tolist()
        by_dist = sorted(range(3), key=lambda i: dist[i])
        with torch.no_grad():
            near = model.situated_embeddings(pooled, pose).view(3, 2, -1)
            for sector, question in enumerate(("what is in front of me?", "what is on my left?", "what is behind me?",
                                               "how many chairs are on my right?")):
                want = sorted(range(3), key=lambda i: (quarter[i] != sector, dist[i]))
                got = model.situated_per_question([pooled], [pose], [question])[0].view(3, 2, -1)
                assert torch.allclose(got, near[[by_dist.index(i) for i in want]], atol=1e-5), (yaw, sector)
                cases += want != by_dist
            # a question about both sides keeps the nearest-first order
            both = model.situated_per_question([pooled], [pose], ["is the a on my left or my right?"])[0]
            assert torch.equal(both.view(3, 2, -1), near)
    assert cases >= 5  # the reordering was exercised
    # without the option, a posed question keeps the nearest-first order
    plain = object_situated_model(situated_words=True)
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(plain.situated_per_question([pooled], [pose], ["what is on my left?"])[0].view(3, 2, -1),
                           model.situated_embeddings(pooled, pose).view(3, 2, -1))
    with pytest.raises(ValueError, match="sector_order"):
        QAModelConfig(feature_dim=6, llm="tiny-random-llama", pooling="objects", segments={"source": "gt"},
                      object_names=True, sector_order=True)


def test_comparison_order_lists_a_size_questions_anchor_frame_largest_or_tallest_first():
    from chorus_qa.scene_tokens import pool_scene
    from chorus_qa.situated import asks_comparison
    from encoder.label_sets import get_label_set
    from tests.test_object_tokens import box

    assert [asks_comparison(q) for q in ("which is bigger, the a or the b?", "which is taller, the a or the b?",
                                         "is the lamp small or large?")] == ["volume", "height", None]
    model = object_situated_model(situated_words=True, anchor_frames="spatial", metric_extents=True,
                                  comparison_order=True)
    perturb(model.situated)
    # three labelled boxes: volume order (0, 2, 1), height order (1, 2, 0), both unlike the distance order
    lows, highs = [[0, 0, 0], [3, 0, 0], [0, 3, 0]], [[1.5, 1.5, 0.4], [3.3, 0.3, 1.8], [0.8, 3.8, 1.0]]
    means = torch.cat([box(200, lo, hi, i) for i, (lo, hi) in enumerate(zip(lows, highs))])
    segments = torch.arange(3).repeat_interleave(200)
    names = get_label_set("synth")
    labels = torch.tensor([5, 9, 12]).repeat_interleave(200)
    pooled = pool_scene(torch.randn(600, 6, generator=torch.Generator().manual_seed(0)), means,
                        model.scene_tokenizer.config, segments=segments, colors=torch.rand(600, 3), labels=labels)
    slot = {int(pooled.labels[k]): k for k in range(3)}  # slots are ordered by size; map them back to the boxes
    boxes = [slot[c] for c in (5, 9, 12)]
    # independent reference from the raw points: box volume and box top of each object
    ext = [(means[i * 200:(i + 1) * 200].max(0).values - means[i * 200:(i + 1) * 200].min(0).values) for i in range(3)]
    volume = [float((e + 0.01).prod()) for e in ext]
    top = [float(means[i * 200:(i + 1) * 200, 2].max()) for i in range(3)]
    for word, key in (("bigger", volume), ("taller", top)):
        question = f"which is {word}, the {names[5]} or the {names[9]}?"
        pose = model.anchor_pose(pooled, question)
        assert pose is not None  # a comparison gets the frame of the object it names first
        with torch.no_grad():
            near = model.situated_embeddings(pooled, pose).view(3, 2, -1)
            got = model.situated_per_question([pooled], [None], [question])[0].view(3, 2, -1)
        dist = egocentric(pooled.centres[:3], pose)[:, :2].norm(dim=1).tolist()
        by_dist = sorted(range(3), key=lambda k: dist[k])
        want = [boxes[i] for i in sorted(range(3), key=lambda i: -key[i])]
        assert want != by_dist
        assert torch.allclose(got, near[[by_dist.index(k) for k in want]], atol=1e-5), word
    # without the option a comparison question gets no frame ("spatial" frames only)
    plain = object_situated_model(situated_words=True, anchor_frames="spatial", metric_extents=True)
    assert plain.anchor_pose(pooled, f"which is bigger, the {names[5]} or the {names[9]}?") is None
    with pytest.raises(ValueError, match="comparison_order"):
        QAModelConfig(feature_dim=6, llm="tiny-random-llama", pooling="objects", segments={"source": "gt"},
                      object_names=True, situated_tokens=True, anchor_frames="spatial", comparison_order=True)


def test_size_group_lists_the_asked_class_as_name_then_size_word_largest_first():
    from chorus_qa.object_words import log_volumes
    from chorus_qa.scene_tokens import basic_color_names, pool_scene
    from chorus_qa.situated import asks_size
    from chorus_qa.train_state import WARM_START_FREE
    from encoder.label_sets import get_label_set
    from tests.test_object_tokens import box

    assert [asks_size(q) for q in ("is the lamp small or large?", "How big is the bed?", "which is bigger, the a or the b?",
                                   "what color is the lamp?", "is the small lamp on the table?")] == [True, True, False, False, True]
    names = get_label_set("synth")
    chair, bed = names.index("chair"), names.index("bed")
    # a small red chair, a large blue chair (its box 8x the volume) and a bed
    lows, highs = [[0, 0, 0], [2, 0, 0], [0, 3, 0]], [[0.5, 0.5, 0.5], [3, 1, 1], [2, 5, 0.6]]
    means = torch.cat([box(200, lo, hi, i) for i, (lo, hi) in enumerate(zip(lows, highs))])
    colors = torch.cat([torch.tensor([[0.77, 0.16, 0.14]]).repeat(200, 1), torch.tensor([[0.16, 0.31, 0.75]]).repeat(200, 1),
                        torch.full((200, 3), 0.5)])
    labels = torch.tensor([chair, chair, bed]).repeat_interleave(200)
    segments = torch.arange(3).repeat_interleave(200)
    # the reference volume sits between the two chairs: the small one is "small", the big one "large"
    model = object_situated_model(situated_words=True, metric_extents=True, size_words=True, size_group=True,
                                  size_reference={"chair": math.log(0.3), "bed": math.log(100.0)})
    pooled = pool_scene(torch.randn(600, 6, generator=torch.Generator().manual_seed(0)), means,
                        model.scene_tokenizer.config, segments=segments, colors=colors, labels=labels)
    vol = log_volumes(pooled)[:3]
    small_chair, big_chair = sorted((k for k in range(3) if int(pooled.labels[k]) == chair), key=lambda k: float(vol[k]))
    assert model.size_ids(pooled)[[small_chair, big_chair]].tolist() == [0, 1]
    small, large = model.size_embeds[0], model.size_embeds[1]
    with torch.no_grad():
        got = model.situated_per_question([pooled], [None], ["is the chair small or large?"])[0]
        # two chairs, the larger first, each as (chair word, its size word)
        want = torch.stack([model.name_embeds[chair], large, model.name_embeds[chair], small]).to(got.dtype)
        assert torch.equal(got, want)
        # a colour named before the class picks that colour's token
        red = model.situated_per_question([pooled], [None], ["is the red chair small or large?"])[0]
        assert torch.equal(red, torch.stack([model.name_embeds[chair], small]).to(got.dtype))
        assert basic_color_names()[int(pooled.color_ids[small_chair])] == "red"
        # questions that ask no size, name a class without a token, or come with a pose get no size group
        for question in ("what color is the chair?", "is the lamp small or large?"):
            assert model.situated_per_question([pooled], [None], [question])[0] is None
        posed = model.situated_per_question([pooled], [(0.0, 0.0, 0.0)], ["is the chair small or large?"])[0]
        assert torch.equal(posed, model.situated_embeddings(pooled, (0.0, 0.0, 0.0)))  # the pose's own tokens
        plain = object_situated_model(situated_words=True, metric_extents=True, size_words=True,
                                      size_reference={"chair": math.log(0.3)})
        assert plain.situated_per_question([pooled], [None], ["is the chair small or large?"])[0] is None
    assert "size_group" in WARM_START_FREE  # no weights of its own: a warm start may switch it on
    with pytest.raises(ValueError, match="size_group"):
        QAModelConfig(feature_dim=6, llm="tiny-random-llama", pooling="objects", segments={"source": "gt"},
                      object_names=True, situated_tokens=True, size_group=True)


def test_side_group_lists_the_counted_class_with_its_side_word_asked_side_first():
    from chorus_qa.scene_tokens import pool_scene
    from chorus_qa.situated import asked_side_count, find_anchor
    from chorus_qa.train_state import WARM_START_FREE
    from encoder.label_sets import get_label_set
    from tests.test_object_tokens import box

    left, right = SECTOR_WORDS.index("left"), SECTOR_WORDS.index("right")
    assert [asked_side_count(q) for q in ("how many chairs are on my left?", "How many lamps are on my right?",
                                          "what is on my left?", "how many chairs are on my left or my right?",
                                          "how many chairs are in the room?")] == [left, right, None, None, None]
    names = get_label_set("synth")
    chair, bed = names.index("chair"), names.index("bed")
    assert find_anchor("how many chairs are on my left?", names) is None  # the plural needs plural=True
    assert find_anchor("how many chairs are on my left?", names, plural=True) == (chair, None)
    assert names[find_anchor("how many bookshelves are there?", names, plural=True)[0]] == "bookshelf"
    # three chairs and a bed around a pose at the origin facing +x (left = +y)
    centres = [(2.0, 1.0), (1.0, -1.0), (0.5, 0.5), (3.0, 3.0)]
    means = torch.cat([box(100, [x - 0.2, y - 0.2, 0], [x + 0.2, y + 0.2, 0.8], i) for i, (x, y) in enumerate(centres)])
    labels = torch.tensor([chair, chair, chair, bed]).repeat_interleave(100)
    model = object_situated_model(situated_words=True, side_group=True)
    perturb(model.situated)
    pooled = pool_scene(torch.randn(400, 6, generator=torch.Generator().manual_seed(0)), means, model.scene_tokenizer.config,
                        segments=torch.arange(4).repeat_interleave(100), colors=torch.rand(400, 3), labels=labels)
    pose = (0.0, 0.0, 0.0)
    # independent reference: side by the sign of y, nearest first within a side, the asked side first
    chairs = [(x, y) for x, y in centres[:3]]
    for question, side in (("how many chairs are on my left?", "left"), ("how many chairs are on my right?", "right")):
        want = sorted(chairs, key=lambda c: (("left" if c[1] > 0 else "right") != side, math.hypot(*c)))
        words = ["left" if y > 0 else "right" for _, y in want]
        with torch.no_grad():
            got = model.situated_per_question([pooled], [pose], [question])[0]
        expect = torch.stack([t for w in words for t in (model.name_embeds[chair], model.sector_embeds[SECTOR_WORDS.index(w)])])
        assert torch.equal(got, expect.to(got.dtype)), question
    with torch.no_grad():
        # another question, or a class without a token, keeps the ordinary situated tokens
        ordinary = model.situated_embeddings(pooled, pose)
        assert torch.equal(model.situated_per_question([pooled], [pose], ["how many lamps are on my left?"])[0], ordinary)
        assert torch.equal(model.situated_per_question([pooled], [pose], ["what is on my left?"])[0], ordinary)
        plain = object_situated_model(situated_words=True)
        plain.load_state_dict(model.state_dict())
        assert torch.equal(plain.situated_per_question([pooled], [pose], ["how many chairs are on my left?"])[0], ordinary)
    assert "side_group" in WARM_START_FREE
    with pytest.raises(ValueError, match="side_group"):
        QAModelConfig(feature_dim=6, llm="tiny-random-llama", pooling="objects", segments={"source": "gt"},
                      object_names=True, situated_tokens=True, side_group=True)


def test_count_group_numbers_the_counted_class_in_the_whole_scene():
    from chorus_qa.scene_tokens import basic_color_names, pool_scene
    from chorus_qa.situated import asks_count
    from chorus_qa.train_state import WARM_START_FREE
    from encoder.label_sets import get_label_set
    from tests.test_object_tokens import box

    assert [asks_count(q) for q in ("how many chairs are in the room?", "How many lamps are there?",
                                    "what is on the chair?", "is the lamp small or large?")] == [True, True, False, False]
    names = get_label_set("synth")
    chair, bed = names.index("chair"), names.index("bed")
    # three chairs (two red, one blue) and a bed
    centres = [(2.0, 1.0), (1.0, -1.0), (0.5, 0.5), (3.0, 3.0)]
    means = torch.cat([box(100, [x - 0.2, y - 0.2, 0], [x + 0.2, y + 0.2, 0.8], i) for i, (x, y) in enumerate(centres)])
    red, blue = [0.77, 0.16, 0.14], [0.16, 0.31, 0.75]
    colors = torch.cat([torch.tensor([c]).repeat(100, 1) for c in (red, blue, red, [0.5, 0.5, 0.5])])
    labels = torch.tensor([chair, chair, chair, bed]).repeat_interleave(100)
    model = object_situated_model(situated_words=True, count_group=True)
    perturb(model.situated)
    pooled = pool_scene(torch.randn(400, 6, generator=torch.Generator().manual_seed(0)), means, model.scene_tokenizer.config,
                        segments=torch.arange(4).repeat_interleave(100), colors=colors, labels=labels)
    reds = sum(basic_color_names()[int(c)] == "red" for c, k in zip(pooled.color_ids, pooled.labels) if int(k) == chair)
    assert reds == 2
    digits = model.word_embeddings([str(n) for n in range(1, 10)], space=False)  # rebuilt from the LLM's table, not the buffer

    def numbered(n: int) -> torch.Tensor:  # the class word then "1", "2", ... for n chairs
        return torch.stack([t for i in range(n) for t in (model.name_embeds[chair], digits[i])])

    with torch.no_grad():
        for question, n in (("how many chairs are in the room?", 3), ("How many red chairs are there?", 2),
                            ("how many chair are there?", 3)):
            got = model.situated_per_question([pooled], [None], [question])[0]
            assert torch.equal(got, numbered(n).to(got.dtype)), question
        # no count or a class without a token: no count group; a posed question keeps its pose's tokens
        for question in ("what color is the chair?", "how many lamps are in the room?"):
            assert model.situated_per_question([pooled], [None], [question])[0] is None, question
        pose = (0.0, 0.0, 0.0)
        posed = model.situated_per_question([pooled], [pose], ["how many chairs are in the room?"])[0]
        assert torch.equal(posed, model.situated_embeddings(pooled, pose))
        plain = object_situated_model(situated_words=True)
        assert plain.situated_per_question([pooled], [None], ["how many chairs are in the room?"])[0] is None
    assert "count_group" in WARM_START_FREE
    with pytest.raises(ValueError, match="count_group"):
        QAModelConfig(feature_dim=6, llm="tiny-random-llama", pooling="objects", segments={"source": "gt"},
                      object_names=True, count_group=True)
