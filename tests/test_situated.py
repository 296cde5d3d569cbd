"""Situated tokens (chorus_qa.situated): poses, the asker's frame, prompt placement, training and inference."""

import math

import numpy as np
import pytest
import torch

from chorus_qa.model import SCENE_TOKEN, ChorusQAModel, QABatch, QAModelConfig, merge_scene_tokens
from chorus_qa.situated import EGO_FEATURES, SECTOR_WORDS, ego_features, egocentric, interleave, pose_of, sector_ids
from tests.test_qa_model import FEAT, K, random_scene, tiny_config


def yaw_quaternion(yaw):
    """The quaternion the synthetic world writes for a facing of angle ``yaw`` (data/synth/qa.py)."""
    return [0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)]


def test_pose_of_reads_the_facing_from_the_quaternion():
    for yaw in (-3.0, -math.pi / 2, 0.0, 0.5, 2.9):
        x, y, got = pose_of([1.0, 2.0, 0.3], yaw_quaternion(yaw))
        assert (x, y) == (1.0, 2.0) and math.isclose(got, yaw, abs_tol=1e-9)
        assert math.isclose(pose_of([0, 0, 0], [3 * v for v in yaw_quaternion(yaw)])[2], yaw, abs_tol=1e-9)  # unnormalised
    assert pose_of(None, [0, 0, 0, 1]) is None and pose_of([0, 0, 0], None) is None
    with pytest.raises(ValueError, match="zero norm"):
        pose_of([0, 0, 0], [0, 0, 0, 0])
    s = math.sin(-math.pi / 4)  # -90 degrees about y: +x turns to +z, no facing on the floor
    with pytest.raises(ValueError, match="straight up"):
        pose_of([0, 0, 0], [0.0, s, 0.0, math.cos(-math.pi / 4)])
    with pytest.raises(ValueError, match="3 values"):
        pose_of([0, 0], [0, 0, 0, 1])


def test_egocentric_bearings_follow_the_synthetic_worlds_rule():
    """atan2(left, ahead) of every object is the bearing data.synth.qa uses to write the answers."""
    from data.synth.qa import bearing

    rng = np.random.default_rng(0)
    for _ in range(20):
        pos, yaw = rng.uniform(-3, 3, 2), rng.uniform(-math.pi, math.pi)
        facing = np.array([math.cos(yaw), math.sin(yaw)])
        pts = rng.uniform(-4, 4, (12, 3))
        pose = pose_of([pos[0], pos[1], 0.0], yaw_quaternion(math.atan2(facing[1], facing[0])))
        off = egocentric(torch.tensor(pts), pose)
        got = torch.rad2deg(torch.atan2(off[:, 1], off[:, 0])).tolist()
        ref = [bearing(pos, facing, p[:2]) for p in pts]
        assert np.allclose(got, ref, atol=1e-3)
        assert np.allclose(off[:, :2].norm(dim=1).numpy(), np.linalg.norm(pts[:, :2] - pos, axis=1), atol=1e-5)
        assert np.allclose(off[:, 2].numpy(), pts[:, 2], atol=1e-6)
    left_of_origin = egocentric(torch.tensor([[0.0, 2.0, 1.0]]), (0.0, 0.0, 0.0))
    assert torch.allclose(left_of_origin, torch.tensor([[0.0, 2.0, 1.0]]))
    feats = ego_features(left_of_origin)
    assert feats.shape == (1, EGO_FEATURES)
    assert torch.allclose(feats[0, -3:], torch.tensor([1.0, 0.0, math.log1p(2.0)]), atol=1e-6)  # bearing +90 degrees


def test_interleave_orders_rows_then_their_posed_questions():
    scene = torch.arange(2 * 3 * 1.0).reshape(2, 3, 1)
    a, b = torch.full((2, 1), 10.0), torch.full((2, 1), 20.0)
    out = interleave(scene, [[a], [b, a]])
    assert out.shape == (1, 3 + 2 + 3 + 4, 1)
    assert out.flatten().tolist() == [0, 1, 2, 10, 10, 3, 4, 5, 20, 20, 10, 10]
    assert interleave(None, [[], [b]]).flatten().tolist() == [20, 20]
    with pytest.raises(ValueError, match="no scene"):
        interleave(None, [[], []])


@pytest.fixture
def situated_model():
    model = ChorusQAModel.build(tiny_config(situated_tokens=True))
    model.eval()
    return model


def perturb(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))


def test_config_needs_pooled_centres():
    with pytest.raises(ValueError, match="situated_tokens"):
        QAModelConfig(feature_dim=FEAT, llm="tiny-random-llama", pooling="knn", situated_tokens=True)


def test_posed_questions_get_placeholders_in_their_own_turn(situated_model):
    m = situated_model
    pose = (0.0, 0.0, 0.3)
    p = m.config.num_placeholders
    f, means = random_scene()
    pooled = m.pool_scenes(f, means)[0]
    tokens = m.situated_per_question([pooled], [pose, None], turns=[2])
    assert tokens[1] is None and tokens[0].shape == (K, m.causal_lm.config.hidden_size)  # cells: every slot occupied
    ids, labels = m.build_token_ids(["what is on my left?", "how many chairs?"], ["bed", "2"],
                                    situations=["i am at the door.", None], turns=[2], ego_counts=[K, 0])
    assert int((ids == m.scene_token_id).sum()) == p + K
    # the K come after the situation and before the question, in the first turn only
    q_ids = m.question_ids("what is on my left?", "i am at the door.", K)
    assert q_ids.count(m.scene_token_id) == K
    text = m.tokenizer.decode(q_ids)
    assert text.index("door") < text.index(SCENE_TOKEN) < text.index("left")
    assert m.situated_per_question([pooled], [pose], blind=True) == [None]
    with pytest.raises(ValueError, match="blind"):
        m.build_token_ids(["what is on my left?"], ["bed"], blind=True, ego_counts=[K])
    with pytest.raises(ValueError, match="2 poses and 1 question texts for 1 questions"):
        m.situated_per_question([pooled], [pose, pose])
    plain = ChorusQAModel(tiny_config(), m.language_model, m.tokenizer)  # no situated_tokens: poses are ignored
    assert plain.situated_per_question([pooled], [pose]) == [None]


def test_situated_tokens_start_at_zero_and_are_rigid_invariant(situated_model):
    m = situated_model
    f, means = random_scene()
    pooled = m.pool_scenes(f, means)[0]
    assert torch.count_nonzero(m.situated_embeddings(pooled, (1.0, 2.0, 0.4))) == 0
    perturb(m.situated)
    a = m.situated_embeddings(pooled, (1.0, 2.0, 0.4))
    assert torch.count_nonzero(a) > 0
    assert not torch.allclose(a, m.situated_embeddings(pooled, (1.0, 2.0, 0.4 + math.pi / 2)), atol=1e-4)
    # move the room and the asker together (turn by 0.7 rad about z, then shift): the tokens stay the same
    c, s = math.cos(0.7), math.sin(0.7)
    rot = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    shift = torch.tensor([5.0, -3.0, 0.0])  # heights stay measured from the floor (z = 0)
    moved = type(pooled)(**{**pooled.__dict__, "centres": pooled.centres @ rot.T + shift})
    px, py = (rot @ torch.tensor([1.0, 2.0, 0.0]) + shift)[:2].tolist()
    b = m.situated_embeddings(moved, (px, py, 0.4 + 0.7))
    assert torch.allclose(a, b, atol=1e-4)


def test_posed_batch_trains_the_situated_projector(situated_model):
    m = situated_model
    scenes = [random_scene(200, s) for s in range(2)]
    feats, means = torch.cat([f for f, _ in scenes]), torch.cat([x for _, x in scenes])
    offset = torch.tensor([200, 400])
    batch = QABatch(feats, means, offset, ["what is on my left?", "what colour?", "what is behind me?"],
                    ["bed", "red", "door"], situations=["at the door.", None, "at the bed."], turns=[2, 1],
                    poses=[(0.5, 0.5, 0.0), None, (1.0, 2.0, 2.0)])
    m.train()
    m.set_trainable(2)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=2e-2)
    losses = []
    for _ in range(12):
        loss = m(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses
    assert torch.count_nonzero(m.situated.mlp[-1].weight) > 0


def test_decoding_with_a_pose_matches_the_training_layout(situated_model, tmp_path):
    """decode_steps (cached prefix, left-padded suffix with situated tokens) = greedy on the full training layout."""
    m = situated_model
    perturb(m.situated)
    f, means = random_scene()
    pooled = m.pool_scenes(f, means)[0]
    pose, situation, question = (1.0, 1.0, -0.8), "i am at the door.", "what is on my left?"
    with torch.no_grad():
        scene = m.pooled_embeddings([pooled])
        placed = interleave(scene, [[m.situated_embeddings(pooled, pose)]])
        ids = m.prefix_ids() + m.question_ids(question, situation, K)
        ref = []
        for _ in range(5):
            t = torch.tensor([ids])
            embeds = merge_scene_tokens(m.causal_lm.get_input_embeddings()(t), t, placed, m.scene_token_id)
            logits = m.causal_lm(inputs_embeds=embeds).logits[0, -1].clone()
            logits[m.scene_token_id] = float("-inf")
            ref.append(int(logits.argmax()))
            ids.append(ref[-1])
    context = m.prepare_scene(f, means)
    assert ids.count(m.scene_token_id) == m.config.num_placeholders + K
    with torch.inference_mode():
        got = torch.stack(list(m.decode_steps(context, torch.zeros(2, dtype=torch.long), [question, "why?"],
                                              [situation, None], max_new_tokens=5, poses=[pose, None])), 1)
    stop = next((j for j, t in enumerate(ref) if t in m.stop_token_ids), 4)
    assert got[0].tolist()[: stop + 1] == ref[: stop + 1]
    # the unposed question in the same batch answers as it does alone
    alone = m.generate(context, ["why?"], max_new_tokens=5)
    assert m.generate(context, [question, "why?"], [situation, None], max_new_tokens=5, poses=[pose, None])[1] == alone[0]
    # a context without pooled scenes cannot place situated tokens
    tokens = torch.randn(1, K, m.config.token_dim)
    with pytest.raises(ValueError, match="pooled"):
        m.generate(tokens, [question], [situation], poses=[pose])
    # save / load keeps the situated projector
    m.save_pretrained(tmp_path / "ckpt")
    back = ChorusQAModel.from_pretrained(tmp_path / "ckpt")
    assert torch.allclose(back.situated_embeddings(pooled, pose), m.situated_embeddings(pooled, pose), atol=1e-6)


def object_situated_model(**overrides):
    cfg = QAModelConfig(feature_dim=6, llm="tiny-random-llama", num_scene_tokens=4, token_dim=16, pooling="objects",
                        segments={"source": "gt"}, object_names=True, color_tokens=True, situated_tokens=True,
                        lora={"r": 4, "alpha": 8}, **overrides)
    return ChorusQAModel.build(cfg).eval()


def three_pooled_objects(model):
    from chorus_qa.scene_tokens import pool_scene
    from tests.test_object_tokens import three_objects

    f, means, s, c = three_objects()
    labels = torch.where(s == 5, 5, torch.where(s == 2, 9, -1))
    return pool_scene(f, means, model.scene_tokenizer.config, segments=s, colors=c, labels=labels)


def test_object_situated_tokens_start_as_the_class_name_words():
    model = object_situated_model()
    pooled = three_pooled_objects(model)
    last = model.name_embeds.shape[0] - 1
    pose = (0.0, 0.0, 1.0)
    near = egocentric(pooled.centres[:3], pose)[:, :2].norm(dim=1).argsort().tolist()
    assert near != [0, 1, 2]  # so the test sees the reordering
    with torch.no_grad():
        got = model.situated_embeddings(pooled, pose)
        # three segments in four slots: the empty slot gets no token; the unlabelled segment starts at zeros;
        # nearest to the asker first
        assert torch.equal(got, model.name_embeds[torch.tensor([5, 9, last])[near]].to(got.dtype))
        perturb(model.situated)
        moved = model.situated_embeddings(pooled, pose)
    assert moved.shape == got.shape and not torch.allclose(moved, got)


def test_sector_ids_follow_the_synthetic_worlds_quarters():
    """sector_ids names the quarter data.synth.qa.sector_of gives each bearing (its boundaries are +-45, +-135)."""
    from data.synth.qa import sector_of

    rng = np.random.default_rng(1)
    angles = rng.uniform(-180, 180, 500)
    angles = angles[np.min(np.abs(np.abs(angles)[:, None] - [45.0, 135.0]), 1) > 1e-3]
    rad = np.radians(angles)
    offsets = torch.tensor(np.stack([np.cos(rad), np.sin(rad), np.zeros_like(rad)], 1) * rng.uniform(0.2, 5, (len(rad), 1)))
    got = [SECTOR_WORDS[i] for i in sector_ids(offsets).tolist()]
    assert got == [sector_of(a) for a in angles]


def test_situated_words_read_name_then_quarter_word():
    model = object_situated_model(situated_words=True)
    pooled = three_pooled_objects(model)
    pose = (0.3, -0.2, 2.0)
    offsets = egocentric(pooled.centres[:3], pose)
    near = offsets[:, :2].norm(dim=1).argsort()
    offsets = offsets[near]
    last = model.name_embeds.shape[0] - 1
    with torch.no_grad():
        got = model.situated_embeddings(pooled, pose)
        names = model.name_embeds[torch.tensor([5, 9, last])[near]]
        words = model.sector_embeds[sector_ids(offsets)]
        assert torch.equal(got, torch.stack([names, words], 1).flatten(0, 1).to(got.dtype))
        # the learned projection goes onto the quarter word, never onto the name
        perturb(model.situated)
        moved = model.situated_embeddings(pooled, pose)
    assert torch.equal(moved[0::2], got[0::2]) and not torch.allclose(moved[1::2], got[1::2])
    ref = model.word_embeddings(["left"])[0]
    assert torch.equal(model.sector_embeds[SECTOR_WORDS.index("left")], ref)
    with pytest.raises(ValueError, match="situated_tokens"):
        QAModelConfig(feature_dim=6, llm="tiny-random-llama", pooling="objects", segments={"source": "gt"},
                      situated_words=True)


# ----------------------------------------------------------------------------- anchor frames
def test_find_anchor_takes_the_first_named_class_longest_first_with_its_colour():
    from chorus_qa.situated import find_anchor

    names = ["wall", "door", "chair", "office chair", "table", "coffee table", "bed", "lamp"]
    colors = ["red", "white"]
    assert find_anchor("what is the closest object to the red chair?", names, colors) == (2, 0)
    assert find_anchor("what is on the coffee table?", names, colors) == (5, None)
    assert find_anchor("is the office chair left of the table?", names, colors) == (3, None)
    assert find_anchor("which is closer to the door, the lamp or the bed?", names, colors) == (1, None)
    assert find_anchor("what kind of room is this? a bedroom?", names, colors) is None  # whole words only
    assert find_anchor("how many chairs are there?", names, colors) is None


def test_is_spatial():
    from chorus_qa.situated import is_spatial

    assert is_spatial("what is the closest object to the bed?") and is_spatial("what is between the bed and the desk?")
    assert is_spatial("standing at the door, which is farther to the left, the lamp or the bed?")
    assert not is_spatial("what color is the bed?") and not is_spatial("is there a lamp in the room?")


def yaw_of_mid(x, y, mid=(1.25, 0.75)):
    return math.atan2(mid[1] - y, mid[0] - x)


def test_anchor_pose_stands_at_the_named_object_facing_the_middle_of_the_room():
    from chorus_qa.situated import anchor_pose

    centres = torch.tensor([[0.0, 0.0, 0.5], [2.0, 0.0, 0.5], [2.0, 2.0, 0.5], [1.0, 1.0, 0.5], [9.0, 9.0, 0.0]])
    labels = torch.tensor([4, 7, 4, 7, 7])
    colors = torch.tensor([0, 1, 1, 0, 0])
    sizes = torch.tensor([5.0, 3.0, 4.0, 6.0, 9.0])
    valid = torch.tensor([True, True, True, True, False])  # the last slot is empty: never chosen, not in the middle
    mid = centres[:4, :2].mean(0)  # (1.25, 0.75)
    x, y, yaw = anchor_pose(centres, labels, colors, sizes, valid, cls=4)
    assert (x, y) == (0.0, 0.0) and math.isclose(yaw, math.atan2(0.75, 1.25), abs_tol=1e-6)  # larger of the two
    x, y, yaw = anchor_pose(centres, labels, colors, sizes, valid, cls=4, color=1)
    assert (x, y) == (2.0, 2.0) and math.isclose(yaw, math.atan2(0.75 - 2, 1.25 - 2), abs_tol=1e-6)
    assert anchor_pose(centres, labels, colors, sizes, valid, cls=7, color=2)[:2] == (1.0, 1.0)  # no such colour: largest
    assert anchor_pose(centres, labels, colors, sizes, valid, cls=3) is None
    # a flat object (a door in the wall x = 0, thin along x) faces along its short axis, into the room (+x here)
    flat = torch.tensor([[0.05, 0.5], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    assert anchor_pose(centres, labels, colors, sizes, valid, cls=4, extents=flat) == (0.0, 0.0, 0.0)
    assert anchor_pose(centres, labels, colors, sizes, valid, cls=4, extents=torch.ones(5, 2))[2] == yaw_of_mid(0, 0)
    door_far = centres.clone()
    door_far[0, :2] = torch.tensor([3.0, 0.5])  # now the middle lies at -x of it: it faces -x
    assert anchor_pose(door_far, labels, colors, sizes, valid, cls=4, extents=flat)[2] == math.pi
    assert torch.allclose(mid, torch.tensor([1.25, 0.75]))


def test_anchor_frames_give_spatial_questions_the_named_objects_view():
    model = object_situated_model(situated_words=True, anchor_frames="spatial")
    pooled = three_pooled_objects(model)  # classes 5 (chair) and 9 (table) in the synth label set
    from encoder.label_sets import get_label_set

    names = get_label_set("synth")
    chair, table = names[5], names[9]
    questions = [f"what is the closest object to the {table}?", f"what color is the {table}?",
                 "what is nearest to the bathtub?", "what is on my left?"]
    got = model.situated_per_question([pooled], [None, None, None, (0.0, 0.0, 0.0)], questions, turns=[4])
    pose = model.anchor_pose(pooled, questions[0])
    centre = pooled.centres[1, :2].tolist()  # the table is slot 1: segment 2 (200 points, after 300), labelled 9
    assert math.isclose(pose[0], centre[0], abs_tol=1e-6) and math.isclose(pose[1], centre[1], abs_tol=1e-6)
    assert torch.equal(got[0], model.situated_embeddings(pooled, pose))
    assert got[1] is None and got[2] is None  # not spatial; no bathtub among the objects
    assert torch.equal(got[3], model.situated_embeddings(pooled, (0.0, 0.0, 0.0)))  # a pose wins over an anchor
    every = object_situated_model(situated_words=True, anchor_frames="all")
    assert every.situated_per_question([pooled], [None], [f"what color is the {chair}?"])[0] is not None
    with pytest.raises(ValueError, match="anchor_frames"):
        QAModelConfig(feature_dim=6, llm="tiny-random-llama", pooling="objects", segments={"source": "gt"},
                      object_names=True, situated_tokens=True, anchor_frames="sometimes")
    with pytest.raises(ValueError, match="object_names"):
        QAModelConfig(feature_dim=6, llm="tiny-random-llama", pooling="objects", segments={"source": "gt"},
                      situated_tokens=True, anchor_frames="all")


# ----------------------------------------------------------------------------- SQA3D's box-centred positions
def write_sqa3d(tmp_path, head):
    import json

    qs = {"questions": [{"question_id": 1, "scene_id": "s", "situation": "I face the bed.", "question": "What is on my left?"}]}
    anns = {**head, "annotations": [{"question_id": 1, "scene_id": "s", "answers": [{"answer": "lamp", "answer_id": 1}],
                                     "position": {"x": 0.5, "y": -1.0, "z": 0.0},
                                     "rotation": {"_x": 0.0, "_y": 0.0, "_z": 0.0, "_w": 1.0}}]}
    (tmp_path / "q.json").write_text(json.dumps(qs))
    (tmp_path / "a.json").write_text(json.dumps(anns))
    return tmp_path / "q.json", tmp_path / "a.json"


@pytest.mark.parametrize("head, origin", [({}, "box_centre"), ({"data_type": "scannetv2"}, "box_centre"),
                                          ({"data_type": "synth"}, "scene"), ({"position_origin": "scene"}, "scene"),
                                          ({"data_type": "synth", "position_origin": "box_centre"}, "box_centre")])
def test_sqa3d_positions_are_box_centred_unless_the_file_says_otherwise(tmp_path, head, origin):
    from chorus_qa.datasets import load_sqa3d
    from chorus_qa.situated import BoxCentredPose, example_pose

    (ex,) = load_sqa3d(*write_sqa3d(tmp_path, head))
    assert ex.position_origin == origin
    assert isinstance(example_pose(ex), BoxCentredPose) == (origin == "box_centre")
    assert tuple(example_pose(ex)) == (0.5, -1.0, 0.0)


def test_sqa3d_position_origin_must_be_known(tmp_path):
    from chorus_qa.datasets import QADataError, load_sqa3d

    with pytest.raises(QADataError, match="position_origin"):
        load_sqa3d(*write_sqa3d(tmp_path, {"position_origin": "corner"}))


def test_the_synthetic_world_writes_scene_coordinates():
    from chorus_qa.datasets import sqa3d_position_origin
    from data.synth.qa import to_sqa3d

    _, anns = to_sqa3d([], "val")
    assert sqa3d_position_origin(anns, "a.json") == "scene"


def test_scene_box_centre_ignores_a_few_floaters():
    from chorus_qa.scene_tokens import scene_box_centre

    g = torch.Generator().manual_seed(0)
    room = torch.rand(20000, 3, generator=g) * torch.tensor([4.0, 3.0, 2.5]) + torch.tensor([1.0, -2.0, 0.0])
    floaters = torch.tensor([[40.0, 0.0, 0.0], [0.0, -30.0, 9.0]]).repeat(10, 1)
    centre = scene_box_centre(torch.cat([room, floaters]))
    assert torch.allclose(centre, torch.tensor([3.0, -0.5, 1.25]), atol=0.05)
    # the plain (max + min) / 2 of the same points is metres off
    pts = torch.cat([room, floaters])
    assert ((pts.max(0).values + pts.min(0).values) / 2 - centre).abs().max() > 5
    with pytest.raises(ValueError, match="N > 0"):
        scene_box_centre(torch.zeros(0, 3))


def test_box_centred_poses_see_the_scene_from_position_plus_box_centre():
    """A question posed SQA3D-style (relative to the box centre) gets the situated tokens of the same pose given in
    scene coordinates; the pooling records the centre, and a pooled scene without one is refused."""
    from dataclasses import replace

    from chorus_qa.scene_tokens import scene_box_centre
    from chorus_qa.situated import BoxCentredPose, resolve_pose
    from tests.test_object_tokens import three_objects

    model = object_situated_model(situated_words=True)
    pooled = three_pooled_objects(model)
    means = three_objects()[1]
    assert torch.allclose(pooled.box_centre, scene_box_centre(means))
    cx, cy = float(pooled.box_centre[0]), float(pooled.box_centre[1])
    assert abs(cx) + abs(cy) > 0.1  # so the shift matters
    relative = BoxCentredPose((0.3, -0.2, 2.0))
    absolute = (0.3 + cx, -0.2 + cy, 2.0)
    assert model.situated_frames([pooled], [relative]) == [pytest.approx(absolute)]
    assert resolve_pose(absolute, None) == absolute and resolve_pose(None, None) is None
    with torch.no_grad():
        got = model.situated_per_question([pooled], [relative])[0]
        assert torch.equal(got, model.situated_embeddings(pooled, absolute))
        assert not torch.equal(got, model.situated_embeddings(pooled, tuple(relative)))
    with pytest.raises(ValueError, match="box_centre"):
        model.situated_frames([replace(pooled, box_centre=None)], [relative])
