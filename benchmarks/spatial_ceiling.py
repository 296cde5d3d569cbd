"""What the situated and anchor-frame tokens offer for spatial questions, before the LLM learns anything.

    python benchmarks/spatial_ceiling.py --data runs/qa1k/qa_data \
        --pooled runs/qa1k/qa_data/feature_cache/<encoder>_objects-<segments>_k32_m16384_s0_v4_r0 \
        [--split val] [--scenes 100] [--out benchmarks/results/spatial_ceiling.json]

For every spatial and situated question of a synthetic Q&A split whose scene is in the trainer's pooled cache
(the inference pooling, variant 0), a fixed rule answers it from what the object tokens carry (class name, colour
word, box centre) and the frame the model would see: the asker's pose for situated questions
(``situated.pose_of``), the ``anchor_frames`` pose for the others (``situated.question_frame``). Per type, the
share of questions the rule gets right is what tokens + frames make answerable; the gap from there to the
model's accuracy is the LLM's, the gap from there to 100 % is the segments' and the frames'. The rules are the
synthetic world's (``data.synth.qa``) applied to tokens instead of ground-truth objects:

- situated_what: the nearest non-structural token in the asked quarter (front / left / behind / right);
- situated_side / situated_turn: the lateral side / the turn (30 and 150 degree bounds) of the named object;
- situated_count: the tokens of the named class on the asked side;
- nearest / farthest: the non-structural token nearest to / farthest from the named object (the anchor), other
  than tokens of the anchor's own class (over-segmentation splits one object into several tokens);
- closer: which of the two named objects is nearer the door (the anchor);
- left_right: which of the two lies farther to the left in the door's frame (the anchor's facing);
- counting (needs no frame): the tokens of the named class (and colour, "how many red chairs ...") in the room.

Per type: ``rule_correct`` (share of all questions), ``answerable`` (the frame exists and every object the rule
needs has a token: a named object without one is usually a small object below the segment threshold or beyond
the kept slots) and ``correct_when_answerable``. Also reported: how often the frame exists (the named anchor has a
token) and, for questions about a door, how far
the anchor frame's facing is from the ground-truth door's front (``scene.json``): the door frame's error.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.atomic import write_json  # noqa: E402

import torch  # noqa: E402

TYPES = ("situated_what", "situated_side", "situated_turn", "situated_count", "nearest", "farthest", "closer",
         "left_right", "counting")
QUARTERS = {"left": "left", "right": "right", "in front of": "front", "behind": "behind"}


def turn_word(bearing: float) -> str | None:
    """The synthetic world's turn rule (``data.synth.qa._situated_questions``) for a bearing in degrees."""
    if 30 < bearing < 150:
        return "left"
    if -150 < bearing < -30:
        return "right"
    return "around" if abs(bearing) > 150 else None


def rule_answer(qtype: str, question: str, tokens: dict, frame, vocab) -> str | None:
    """The answer the tokens give under the frame (see the module docstring); None when the rule cannot answer.

    tokens: per occupied slot, lists ``name`` (class name or None), ``colour`` and tensors ``centres`` [n, 3],
    ``sizes`` [n], ``labels`` [n], ``color_ids`` [n]."""
    from data.synth.classes import PLURALS, STRUCTURE_CLASSES

    from chorus_qa.situated import egocentric, find_anchor, pick_slot, sector_ids, SECTOR_WORDS

    class_names, color_names = vocab
    if qtype == "counting":
        found = find_anchor(question, class_names, color_names, plural=True)
        if found is None:
            return None
        cls, colour = found
        return str(sum(1 for c, k in zip(tokens["labels"].tolist(), tokens["color_ids"].tolist())
                       if c == cls and (colour is None or k == colour)))
    if frame is None or not tokens["name"]:
        return None
    off = egocentric(tokens["centres"], frame)
    bearing = torch.rad2deg(torch.atan2(off[:, 1], off[:, 0]))
    dist = off[:, :2].norm(dim=1)
    movable = torch.tensor([n is not None and n not in STRUCTURE_CLASSES for n in tokens["name"]])
    everything = torch.ones(len(movable), dtype=torch.bool)

    def slot_of(text: str) -> int | None:
        found = find_anchor(text, class_names, color_names)
        return None if found is None else pick_slot(tokens["labels"], tokens["color_ids"], tokens["sizes"], everything, *found)

    def phrase(i: int) -> str:  # how the question names an object: "<colour> <class>" when the class repeats
        same = sum(n == tokens["name"][i] for n in tokens["name"])
        return tokens["name"][i] if same == 1 else f"{tokens['colour'][i]} {tokens['name'][i]}"

    if qtype == "situated_what":
        quarter = next(w for k, w in QUARTERS.items() if k in question)
        pick = movable & (sector_ids(off) == SECTOR_WORDS.index(quarter))
        return tokens["name"][int(torch.where(pick, dist, math.inf).argmin())] if bool(pick.any()) else None
    if qtype in ("situated_side", "situated_turn"):
        i = slot_of(question)
        if i is None:
            return None
        return ("left" if float(off[i, 1]) > 0 else "right") if qtype == "situated_side" else turn_word(float(bearing[i]))
    if qtype == "situated_count":
        m = re.match(r"how many (.+) are on my (left|right)\?", question)
        singular = {p: c for c, p in PLURALS.items()}.get(m.group(1)) if m else None
        if singular is None:
            return None
        side = off[:, 1] > 0 if m.group(2) == "left" else off[:, 1] < 0
        return str(sum(1 for n, s in zip(tokens["name"], side.tolist()) if n == singular and s))
    if qtype in ("nearest", "farthest"):
        anchor = int(dist.argmin())  # the frame stands at the anchor's centre
        pick = movable & torch.tensor([n != tokens["name"][anchor] for n in tokens["name"]])  # nor its other pieces
        if not bool(pick.any()):
            return None
        i = int(torch.where(pick, dist, math.inf).argmin()) if qtype == "nearest" else int(torch.where(pick, dist, -math.inf).argmax())
        return tokens["name"][i]
    m = re.search(r"the ([^,]+?) or the ([^,]+)\?$", question)
    if m is None:
        return None
    a, b = slot_of(f"the {m.group(1)}"), slot_of(f"the {m.group(2)}")
    if a is None or b is None or a == b:
        return None
    if qtype == "closer":
        return m.group(1) if float(dist[a]) < float(dist[b]) else m.group(2)
    if qtype == "left_right":
        return m.group(1) if float(off[a, 1]) > float(off[b, 1]) else m.group(2)
    raise ValueError(f"rule_answer: no rule for {qtype!r}")


def door_front_error(scene_json: dict, frame) -> float | None:
    """Degrees between the frame's facing and the front of the scene's door nearest the frame (None: no door)."""
    from data.synth.qa import front_dir

    doors = [o for o in scene_json["objects"] if o["class"] == "door"]
    if not doors or frame is None:
        return None
    door = min(doors, key=lambda o: math.dist(o["box"]["center"][:2], frame[:2]))
    front = front_dir(door)
    diff = math.degrees(frame[2] - math.atan2(front[1], front[0]))
    return abs((diff + 180) % 360 - 180)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="synthetic Q&A data folder (qa/, scenes/)")
    ap.add_argument("--pooled", required=True, help="the trainer's pooled cache folder of an 'objects' model with labels")
    ap.add_argument("--split", default="val")
    ap.add_argument("--scenes", type=int, default=100, help="first N scenes of the split that are in the cache")
    ap.add_argument("--label-set", default="synth")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from encoder.label_sets import get_label_set

    from chorus_qa.datasets import load_qa_split, scene_dir
    from chorus_qa.feature_cache import FeatureCache
    from chorus_qa.scene_tokens import basic_color_names, pooled_from_tensors, pooled_valid
    from chorus_qa.situated import example_pose, question_frame

    vocab = (get_label_set(args.label_set), basic_color_names())
    examples = [e for e in load_qa_split(args.data, args.split, "synth") if e.type in TYPES]
    pooled_dir = Path(args.pooled)
    store = FeatureCache(pooled_dir.parent, pooled_dir.name)
    scenes = sorted({e.scene_id for e in examples if store.path(e.scene_id).is_file()})
    scenes = set(scenes[: args.scenes])
    if not scenes:
        raise SystemExit(f"{args.pooled}: none of the {args.split} scenes is cached (run the trainer first)")
    hits, framed, answered, totals, door_err = defaultdict(int), defaultdict(int), defaultdict(int), defaultdict(int), []
    cache: dict[str, tuple] = {}
    for ex in examples:
        if ex.scene_id not in scenes:
            continue
        if ex.scene_id not in cache:
            pooled = pooled_from_tensors(store.load_tensors(ex.scene_id), 0)
            if pooled.labels is None:
                raise SystemExit(f"{args.pooled}: cached without class labels (object_names)")
            valid = pooled_valid(pooled)
            names = [vocab[0][int(c)] if 0 <= int(c) < len(vocab[0]) else None for c in pooled.labels[valid]]
            colours = [vocab[1][int(c)] if 0 <= int(c) < len(vocab[1]) else None for c in pooled.color_ids[valid]]
            tokens = {"name": names, "colour": colours, "centres": pooled.centres[valid].float(),
                      "sizes": pooled.geometry[valid, 6], "labels": pooled.labels[valid],
                      "color_ids": pooled.color_ids[valid]}
            scene_json = json.loads((Path(scene_dir(args.data, ex.scene_id)) / "scene.json").read_text())
            cache[ex.scene_id] = (pooled, tokens, scene_json)
        pooled, tokens, scene_json = cache[ex.scene_id]
        frame = example_pose(ex) or question_frame(pooled, ex.question, *vocab, mode="all")
        totals[ex.type] += 1
        framed[ex.type] += frame is not None or ex.type == "counting"
        answer = rule_answer(ex.type, ex.question, tokens, frame, vocab)
        answered[ex.type] += answer is not None
        hits[ex.type] += answer is not None and answer in ex.answers
        if ex.type in ("closer", "left_right"):
            err = door_front_error(scene_json, frame)
            if err is not None:
                door_err.append(err)
    per_type = {t: {"n": totals[t], "rule_correct": round(100 * hits[t] / totals[t], 1),
                    "framed": round(100 * framed[t] / totals[t], 1), "answerable": round(100 * answered[t] / totals[t], 1),
                    "correct_when_answerable": round(100 * hits[t] / max(answered[t], 1), 1)} for t in TYPES if totals[t]}
    n = sum(totals.values())
    door = torch.tensor(door_err)
    out = {"data": args.data, "pooled": args.pooled, "split": args.split, "scenes": len(scenes), "questions": n,
           "rule_correct_overall": round(100 * sum(hits.values()) / n, 1), "per_type": per_type,
           "door_frame_error_deg": {"median": round(float(door.median()), 1), "share_within_15": round(100 * float((door <= 15).float().mean()), 1),
                                    "n": len(door_err)} if door_err else None}
    print(json.dumps(out, indent=1))
    if args.out:
        write_json(Path(args.out), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
