"""benchmarks/spatial_ceiling.py: its rules, given perfect tokens, answer the synthetic world's own questions."""

import math
from collections import defaultdict

import torch

from benchmarks.spatial_ceiling import rule_answer
from chorus_qa.scene_tokens import PooledScene, basic_color_names
from chorus_qa.situated import example_pose, pose_of, question_frame
from data.synth import CLASS_NAMES, generate_room
from data.synth.qa import generate_questions, is_floor_object

VOCAB = (list(CLASS_NAMES), basic_color_names())


def perfect_tokens(objects):
    """Object tokens as perfect segments of ``objects`` would give them: class, colour, box centre, volume, extents."""
    n = len(objects)
    centres = torch.tensor([o["box"]["center"] for o in objects], dtype=torch.float32)
    geometry = torch.zeros(n, 10)
    for i, o in enumerate(objects):
        w, d = o["box"]["size"][0] / 2, o["box"]["size"][1] / 2
        c, s = abs(math.cos(o["box"]["yaw"])), abs(math.sin(o["box"]["yaw"]))
        geometry[i, :2] = torch.tensor([c * w + s * d, s * w + c * d])  # axis-aligned half extents of the turned box
        geometry[i, 6] = math.log1p(1000 * math.prod(o["box"]["size"]))
        geometry[i, 7:] = 0.5
    labels = torch.tensor([CLASS_NAMES.index(o["class"]) for o in objects])
    color_ids = torch.tensor([VOCAB[1].index(o["color"]) if o["color"] in VOCAB[1] else -1 for o in objects])
    pooled = PooledScene(cells=torch.zeros(n, 2), geometry=geometry, positions=centres, centres=centres,
                         labels=labels, color_ids=color_ids)
    tokens = {"name": [o["class"] for o in objects], "colour": [o["color"] for o in objects], "centres": centres,
              "sizes": geometry[:, 6], "labels": labels, "color_ids": color_ids}
    return pooled, tokens


def test_rules_answer_the_synthetic_worlds_questions_from_perfect_tokens():
    hits, totals = defaultdict(int), defaultdict(int)
    for seed in range(12):
        _, scene = generate_room(seed, density=0.05)
        structure = [o for o in scene["objects"] if o["class"] in ("door", "window")]
        movable = [o for o in scene["objects"] if not o.get("structural")]
        floor = [o for o in movable if is_floor_object(o)]
        everything = perfect_tokens(structure + movable)
        floor_only = perfect_tokens(structure + floor)  # the candidates of nearest / farthest / situated_what
        for q in generate_questions(scene, seed):
            if q["type"] not in ("situated_what", "situated_side", "situated_turn", "situated_count", "nearest",
                                 "farthest", "closer", "left_right", "counting"):
                continue
            pooled, tokens = floor_only if q["type"] in ("nearest", "farthest", "situated_what") else everything
            if "position" in q:
                p, r = q["position"], q["rotation"]
                frame = pose_of([p["x"], p["y"], p["z"]], [r["_x"], r["_y"], r["_z"], r["_w"]])
            else:
                frame = question_frame(pooled, q["question"], *VOCAB)
            totals[q["type"]] += 1
            hits[q["type"]] += rule_answer(q["type"], q["question"], tokens, frame, VOCAB) in q["answers"]
    assert all(totals[t] >= 10 for t in totals) and len(totals) == 9, dict(totals)
    for t in totals:  # nearest / farthest may differ where the answer is another object of the anchor's own class
        assert hits[t] >= (0.9 if t in ("nearest", "farthest") else 0.97) * totals[t], (t, hits[t], totals[t])
