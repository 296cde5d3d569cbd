"""Size words (chorus_qa.object_words): "small" / "large" per object token against its class's median size."""

import dataclasses
import json
import math

import pytest
import torch
import yaml

from chorus_qa.model import ChorusQAModel, QAModelConfig
from chorus_qa.scene_tokens import SceneTokenizerConfig, pool_scene
from chorus_qa.object_words import SIZE_WORDS, reference_table, size_ids, size_reference

FEAT = 6
LAMP, BED, CHAIR = 3, 1, 4


def grid_box(origin, size, n=4):
    """n^3 points filling an axis-aligned box exactly from its corner ``origin`` (so the extent is ``size``)."""
    t = torch.linspace(0, 1, n)
    g = torch.stack(torch.meshgrid(t, t, t, indexing="ij"), -1).reshape(-1, 3)
    return torch.tensor(origin) + g * torch.tensor(size)


def scene(boxes):
    """A pooled scene ("objects", ground-truth segments, metric extents) of (origin, size, class label) boxes; the
    box of segment i has ~64 + 8 i points, so the slot order (largest first) is the reverse of ``boxes``."""
    parts = [grid_box(o, s) for o, s, _ in boxes]
    extra = [torch.tensor([o], dtype=torch.float32).repeat(8 * (i + 1), 1) for i, (o, _, _) in enumerate(boxes)]  # corner copies
    means = torch.cat([torch.cat([p, e]) for p, e in zip(parts, extra)])
    segs = torch.cat([torch.full((len(p) + len(e),), i) for i, (p, e) in enumerate(zip(parts, extra))])
    labels = torch.cat([torch.full((len(p) + len(e),), lab) for (_, _, lab), p, e in zip(boxes, parts, extra)])
    cfg = SceneTokenizerConfig(in_dim=FEAT, num_tokens=len(boxes) + 1, token_dim=16, pooling="objects", metric_extents=True)
    features = torch.randn(len(means), FEAT, generator=torch.Generator().manual_seed(0))
    return pool_scene(features, means, cfg, segments=segs, colors=torch.rand(len(means), 3), labels=labels)


def log_volume(size):
    return sum(math.log(s + 0.01) for s in size)


NAMES = ["wall", "bed", "floor", "lamp", "chair"]
ROOM_A = [([0, 0, 0], [0.2, 0.2, 0.2], LAMP), ([2, 0, 0], [0.4, 0.4, 0.4], LAMP), ([0, 3, 0], [2.0, 1.5, 0.5], BED)]
ROOM_B = [([1, 1, 0], [0.3, 0.3, 0.3], LAMP), ([3, 3, 0], [0.5, 0.5, 0.9], CHAIR)]


def test_reference_is_the_median_per_class_and_words_compare_with_it():
    a, b = scene(ROOM_A), scene(ROOM_B)
    ref = size_reference([a, b], NAMES)
    # independent: the medians of the boxes' log volumes (sizes + 1 cm), per class
    assert ref.keys() == {"lamp", "bed", "chair"}
    assert ref["lamp"] == pytest.approx(log_volume([0.3] * 3), abs=1e-4)
    assert ref["bed"] == pytest.approx(log_volume([2.0, 1.5, 0.5]), abs=1e-4)
    table = reference_table(ref, NAMES)
    assert torch.isnan(table[[0, 2]]).all() and table[LAMP] == pytest.approx(ref["lamp"])
    ids_a = size_ids(a, table)
    # the 0.2 m lamp is small and the 0.4 m one large; the bed is its class's median (not above it: small); the
    # empty slot gets no word
    slots = {round(float(a.geometry[k, 10:].exp().sub(0.01).max()), 2): int(ids_a[k]) for k in range(3)}
    assert slots == {0.2: 0, 0.4: 1, 2.0: 0}
    assert int(ids_a[3]) == -1
    # a class the reference has never seen gets no word either
    assert size_ids(b, reference_table({"lamp": ref["lamp"]}, NAMES)).tolist() == [-1 if int(lab) == CHAIR else 0
                                                                                    for lab in b.labels[:2]] + [-1]
    with pytest.raises(ValueError, match="no labelled"):
        size_reference([], NAMES)


def test_config_needs_names_and_metric_extents_and_counts_a_placeholder_per_object():
    base = dict(feature_dim=FEAT, llm="tiny-random-llama", num_scene_tokens=4, token_dim=16, pooling="objects",
                segments={"source": "gt"}, object_names=True)
    with pytest.raises(ValueError, match="metric_extents"):
        QAModelConfig(**base, size_words=True)
    cfg = QAModelConfig(**base, metric_extents=True, color_tokens=True, size_words=True)
    assert cfg.num_placeholders == 12
    assert QAModelConfig.from_dict(json.loads(json.dumps({**cfg.to_dict(), "size_reference": {"lamp": -3.5}}))).size_reference == {"lamp": -3.5}


def test_size_word_follows_the_colour_word_or_precedes_the_object_as_the_llms_own_word():
    from encoder.label_sets import get_label_set

    names = get_label_set("synth")
    lamp = names.index("lamp")
    boxes = [([0, 0, 0], [0.2, 0.2, 0.2], lamp), ([2, 0, 0], [0.4, 0.4, 0.4], lamp)]
    cfg = QAModelConfig(feature_dim=FEAT, llm="tiny-random-llama", num_scene_tokens=3, token_dim=16, pooling="objects",
                        segments={"source": "gt"}, object_names=True, metric_extents=True, color_tokens=True,
                        size_words=True, lora={"r": 4, "alpha": 8})
    with pytest.raises(ValueError, match="size_reference"):
        ChorusQAModel.build(cfg).size_ids(scene(boxes))
    cfg.size_reference = {"lamp": log_volume([0.3] * 3)}
    model = ChorusQAModel.build(cfg).eval()
    pooled = scene(boxes)
    with torch.no_grad():
        got = model.pooled_embeddings([pooled])[0]
    assert got.shape == (9, model.causal_lm.config.hidden_size)
    emb = model.causal_lm.get_input_embeddings().weight
    word = {w: emb[model.tokenizer(" " + w, add_special_tokens=False)["input_ids"]].float().mean(0) for w in SIZE_WORDS}
    # groups of (object, colour, size), largest segment first: the 0.4 m lamp (large), then the 0.2 m one (small)
    sizes = got[2::3].float()
    assert torch.allclose(sizes[0], word["large"], atol=1e-6) and torch.allclose(sizes[1], word["small"], atol=1e-6)
    assert not sizes[2].any()  # the empty slot

    # size_first: the same words, the size word moved before its object token: groups of (size, object, colour)
    model.config.size_first = True
    with torch.no_grad():
        first = model.pooled_embeddings([pooled])[0]
    assert torch.equal(first[0::3], got[2::3]) and torch.equal(first[1::3], got[0::3]) and torch.equal(first[2::3], got[1::3])
    model.config.size_first = False
    with pytest.raises(ValueError, match="size_words: true"):
        dataclasses.replace(cfg, size_words=False, size_first=True)

    from chorus_qa.session import inventory, scene_objects

    objects = scene_objects(pooled, names, True, model.size_ids(pooled))
    assert [o.size for o in objects] == ["large", "small"]
    assert inventory(objects).startswith("2 objects: large ")


def test_trainer_sets_the_reference_from_its_training_rooms_and_a_warm_start_keeps_its_own(tmp_path):
    from data.synth.dataset import generate_dataset

    from chorus_qa.feature_cache import SceneFeatureSource
    from chorus_qa.train_config import TrainQAConfig
    from chorus_qa.train_qa import PooledSceneStore, main, make_scene_store, run_size_reference, train_examples

    world = tmp_path / "world"
    generate_dataset(world, 3, seed=0, density=0.05, progress=False)
    d = {"data_dir": str(world), "out_dir": str(tmp_path / "run"), "encoder": "raw", "feature_cache": str(tmp_path / "cache"),
         "model": {"llm": "tiny-random-llama", "num_scene_tokens": 8, "token_dim": 32, "max_points": 512,
                   "pooling": "objects", "segments": {"source": "gt"}, "object_names": True, "metric_extents": True,
                   "size_words": True, "texture_stats": True, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
         "stage1": {"epochs": 0, "lr": 1e-3}, "stage2": {"epochs": 1, "lr": 1e-3},
         "batch_size": 8, "max_train_examples": 8, "max_val_examples": 4, "threads": 1}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(d))  # with texture_stats: the trainer path end to end
    assert main(["--config", str(tmp_path / "run.yaml"), "--no-progress"]) == 0
    saved = json.loads((tmp_path / "run" / "last" / "config.json").read_text())["size_reference"]
    model = ChorusQAModel.from_pretrained(tmp_path / "run" / "last")
    cfg = TrainQAConfig.from_dict(d)
    store = make_scene_store(cfg, SceneFeatureSource("raw"), model.config)
    assert isinstance(store, PooledSceneStore)
    rooms = sorted({e.scene_id for e in train_examples(cfg)})
    assert saved == size_reference([store.get(s, 0) for s in rooms], model.config.class_names()) and saved
    pooled = store.get(rooms[0], 0)
    assert model.config.texture_stats and pooled.geometry.shape[1] == 10 + 6 + 3 and "_texture" in str(store.cache.path(rooms[0]))
    assert model.config.size_reference == saved
    # a continued run reads the words of the run it starts from, whatever rooms it trains on
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({"size_reference": {"lamp": 1.0}}))
    warm = TrainQAConfig.from_dict({**d, "init_from": str(tmp_path / "ckpt")})
    assert run_size_reference(warm, store, model.config, train_examples(cfg)) == {"lamp": 1.0}


def test_a_model_trained_without_size_words_warm_starts_one_that_reads_them(tmp_path):
    from chorus_qa.train_state import warm_start

    cfg = QAModelConfig(feature_dim=FEAT, llm="tiny-random-llama", num_scene_tokens=3, token_dim=16, pooling="objects",
                        segments={"source": "gt"}, object_names=True, metric_extents=True, color_tokens=True,
                        lora={"r": 2, "alpha": 4, "dropout": 0.0})
    source = ChorusQAModel.build(cfg)
    with torch.no_grad():
        for p in source.projector.parameters():
            p.add_(1.0)
    source.save_pretrained(tmp_path / "src")
    target = ChorusQAModel.build(dataclasses.replace(cfg, size_words=True, size_reference={"lamp": -3.0}))
    warm_start(tmp_path / "src", target)  # the size words have no weights: the rest loads
    for a, b in zip(source.projector.parameters(), target.projector.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="color_tokens"):
        warm_start(tmp_path / "src", ChorusQAModel.build(dataclasses.replace(cfg, color_tokens=False)))


def test_count_words_are_the_number_of_tokens_of_each_class_as_the_digit_the_answers_use():
    from chorus_qa.object_words import COUNT_WORDS, count_ids

    lamps = [([3 * i, 0, 0], [0.3, 0.3, 0.3], LAMP) for i in range(3)]
    pooled = scene(lamps + [([0, 4, 0], [2.0, 1.5, 0.5], BED)])
    ids = count_ids(pooled)
    words = [COUNT_WORDS[i] if i >= 0 else None for i in ids.tolist()]
    # independent: per slot, how many slots carry its label
    want = [str(int((pooled.labels == lab).sum())) if lab >= 0 else None for lab in pooled.labels.tolist()]
    assert words == want and sorted(w for w in words if w) == ["1", "3", "3", "3"] and words[-1] is None
    many = scene([([2 * i, 0, 0], [0.3, 0.3, 0.3], CHAIR) for i in range(11)])
    assert [COUNT_WORDS[i] for i in count_ids(many)[:11].tolist()] == ["9"] * 11  # nine or more

    from encoder.label_sets import get_label_set

    names = get_label_set("synth")
    with pytest.raises(ValueError, match="object_names"):
        QAModelConfig(feature_dim=FEAT, num_scene_tokens=3, pooling="objects", segments={"source": "gt"}, count_words=True)
    cfg = QAModelConfig(feature_dim=FEAT, llm="tiny-random-llama", num_scene_tokens=3, token_dim=16, pooling="objects",
                        segments={"source": "gt"}, object_names=True, metric_extents=True, color_tokens=True,
                        size_words=True, count_words=True, size_reference={"lamp": 0.0}, lora={"r": 4, "alpha": 8})
    assert cfg.num_placeholders == 12
    model = ChorusQAModel.build(cfg).eval()
    two = scene([([0, 0, 0], [0.2, 0.2, 0.2], names.index("lamp")), ([2, 0, 0], [0.4, 0.4, 0.4], names.index("lamp"))])
    with torch.no_grad():
        got = model.pooled_embeddings([two])[0]
    emb = model.causal_lm.get_input_embeddings().weight
    (digit,) = model.tokenizer("2", add_special_tokens=False)["input_ids"]
    # groups of (object, colour, size, count): both lamps read "2", the empty slot nothing
    assert torch.allclose(got[3].float(), emb[digit].float(), atol=1e-6) and torch.equal(got[3], got[7])
    assert not got[11].any()
