"""Questions and answers about synthetic rooms, computed from scene.json.

Question types (``type`` field) and the rules that define their answers:

- counting      "how many <plural> are in the room?" / "how many <color> <plural> are in the room?"
- color         "what color is the <ref>?"
- material      "what is the <ref> made of?"
- size          "is the <ref> small or large?"            (size_word of the object)
- existence     "is there a <class> in the room?" / "is there a <color> <class> in the room?"  yes / no
- object_on     "what is on the <ref>?"                   every object resting on it has one class
- support       "what is the <ref> on?"                   class of the object it rests on
- between       "what is between the <ref> and the <ref>?"
- nearest       "what is the closest object to the <ref>?"
- farthest      "what is the farthest object from the <ref>?"
- closer        "which is closer to the door, the <ref> or the <ref>?"
- bigger        "which is bigger, the <ref> or the <ref>?"   box volume
- taller        "which is taller, the <ref> or the <ref>?"   box height
- left_right    "standing at the door and facing into the room, which is farther to the left, the <ref> or the <ref>?"
- room_type     "what kind of room is this?"
Situated (SQA3D form, a situation text + position + facing):
- situated_what  "what is on my left?" / "... on my right?" / "what is in front of me?" / "what is behind me?"
- situated_side  "is the <ref> on my left or my right?"
- situated_turn  "which way should i turn to face the <ref>?"  left / right / around
- situated_count "how many <plural> are on my left?" / "... on my right?"

Definitions shared by all rules:
- objects = non-structural objects of scene.json; floor objects = objects with ``support`` null whose
  box bottom is at most 5 cm above the floor (wall-hung and supported objects are not floor objects).
- a <ref> is "<class>" when the class occurs once among objects, else "<color> <class>" when that
  colour is unique within the class; answers naming objects use the same phrase.
- distances are between box centres in the xy plane.
- candidates for nearest / farthest / between / situated_what are floor objects.
- the door frame: origin at the door's box centre, forward = the door's front (into the room),
  left = forward rotated +90 degrees about z. Situated bearings: angle of (object - position) from
  the facing direction, counter-clockwise (left) positive; front |a| < 45, left 45..135,
  right -135..-45, behind |a| > 135.
Questions whose answer would sit within a margin of a rule's threshold are not generated.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np

from .classes import CLASS_BY_NAME, PLURALS, STRUCTURE_CLASSES

NEAR_MARGIN = 0.4      # m: runner-up must be at least this much farther
ANGLE_MARGIN = 10.0    # degrees away from sector boundaries
MAX_SECTOR_DIST = 4.0  # m
SECTORS = {"front": (-45.0, 45.0), "left": (45.0, 135.0), "right": (-135.0, -45.0)}  # behind: |a| > 135

# ---------------------------------------------------------------- scene helpers


def objects_of(scene: dict) -> list[dict]:
    return [o for o in scene["objects"] if not o.get("structural")]


def is_floor_object(o: dict) -> bool:
    b = o["box"]
    return (not o.get("structural")) and o.get("support") is None and b["center"][2] - b["size"][2] / 2 <= 0.05


def refer(o: dict, objs: list[dict]) -> str | None:
    same = [p for p in objs if p["class"] == o["class"]]
    if len(same) == 1:
        return o["class"]
    if sum(p["color"] == o["color"] for p in same) == 1:
        return f"{o['color']} {o['class']}"
    return None


def xy(o: dict) -> np.ndarray:
    return np.asarray(o["box"]["center"][:2], float)


def front_dir(o: dict) -> np.ndarray:
    y = o["box"]["yaw"]
    return np.array([-math.sin(y), math.cos(y)])


def bearing(pos: np.ndarray, facing: np.ndarray, p: np.ndarray) -> float:
    """Angle (degrees) of p seen from pos relative to facing; counter-clockwise (left) positive."""
    v = p - pos
    left = np.array([-facing[1], facing[0]])
    return math.degrees(math.atan2(float(v @ left), float(v @ facing)))


def sector_of(a: float) -> str:
    for name, (lo, hi) in SECTORS.items():
        if lo < a < hi:
            return name
    return "behind"


def _sector_margin(a: float) -> float:
    """Degrees from the nearest sector boundary (+-45, +-135)."""
    return min(abs(abs(a) - 45.0), abs(abs(a) - 135.0))


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _q(scene, text, answer, objs, qtype, **extra):
    return {"scene_id": scene["scene_id"], "question": text, "answers": [str(answer)],
            "object_ids": [int(o["id"]) for o in objs], "object_names": [o["class"] for o in objs], "type": qtype, **extra}


# ---------------------------------------------------------------- ScanQA-style questions


def _attribute_questions(scene, rng):
    objs = objects_of(scene)
    out = []
    by_class = defaultdict(list)
    for o in objs:
        by_class[o["class"]].append(o)
    doors_windows = [o for o in scene["objects"] if o["class"] in ("door", "window")]
    for o in doors_windows:
        by_class.setdefault(o["class"], [])
    for o in doors_windows:
        by_class[o["class"]].append(o)
    for cls, members in by_class.items():
        if 1 <= len(members) <= 6 and (len(members) > 1 or rng.random() < 0.35):
            out.append(_q(scene, f"how many {PLURALS[cls]} are in the room?", len(members), members, "counting"))
        if len(members) >= 2 and cls not in ("door", "window"):
            colors = Counter(m["color"] for m in members)
            col = rng.choice(sorted(colors))
            sub = [m for m in members if m["color"] == col]
            out.append(_q(scene, f"how many {col} {PLURALS[cls]} are in the room?", len(sub), sub, "counting"))
    present = sorted(c for c in by_class if c not in ("door", "window"))
    absent = sorted(c for c in CLASS_BY_NAME if c not in by_class)
    for cls in rng.permutation(present)[:2]:
        out.append(_q(scene, f"is there {_a(cls)} {cls} in the room?", "yes", by_class[cls], "existence"))
    for cls in rng.permutation(absent)[:2]:
        out.append(_q(scene, f"is there {_a(cls)} {cls} in the room?", "no", [], "existence"))
    for cls in rng.permutation(absent)[:1]:
        out.append(_q(scene, f"how many {PLURALS[cls]} are in the room?", 0, [], "counting"))
    for cls in rng.permutation(present)[:2]:
        cols = sorted({m["color"] for m in by_class[cls]})
        allowed = [c for c in CLASS_BY_NAME[cls].colors if c not in cols]
        if rng.random() < 0.5 and allowed:
            c = rng.choice(allowed)
            out.append(_q(scene, f"is there {_a(c)} {c} {cls} in the room?", "no", by_class[cls], "existence"))
        else:
            c = rng.choice(cols)
            out.append(_q(scene, f"is there {_a(c)} {c} {cls} in the room?", "yes",
                          [m for m in by_class[cls] if m["color"] == c], "existence"))
    for o in objs:
        if len(by_class[o["class"]]) != 1:
            continue
        oc = CLASS_BY_NAME[o["class"]]
        if len(oc.colors) > 1:
            out.append(_q(scene, f"what color is the {o['class']}?", o["color"], [o], "color"))
        if len(oc.materials) > 1:
            out.append(_q(scene, f"what is the {o['class']} made of?", o["material"], [o], "material"))
        vol_lo, vol_hi = np.prod(oc.size_min), np.prod(oc.size_max)
        if o["size_word"] in ("small", "large") and vol_hi / vol_lo > 1.6:
            out.append(_q(scene, f"is the {o['class']} small or large?", o["size_word"], [o], "size"))
    out.append(_q(scene, "what kind of room is this?", scene["room"]["type"], [], "room_type"))
    return out


def _relation_questions(scene, rng):
    objs = objects_of(scene)
    byid = {o["id"]: o for o in scene["objects"]}
    floor = [o for o in objs if is_floor_object(o)]
    out = []
    # on / support
    children = defaultdict(list)
    for o in objs:
        if o.get("support") is not None:
            children[o["support"]].append(o)
    for sid, kids in children.items():
        sup = byid[sid]
        r = refer(sup, objs)
        if r and len({k["class"] for k in kids}) == 1:
            out.append(_q(scene, f"what is on the {r}?", kids[0]["class"], [sup, *kids], "object_on"))
    for o in objs:
        if o.get("support") is not None:
            r = refer(o, objs)
            if r:
                sup = byid[o["support"]]
                out.append(_q(scene, f"what is the {r} on?", sup["class"], [o, sup], "support"))
    refs = [(o, refer(o, objs)) for o in floor]
    refs = [(o, r) for o, r in refs if r]
    # nearest / farthest
    for o, r in refs:
        others = sorted((float(np.linalg.norm(xy(p) - xy(o))), p) for p in floor if p is not o)
        others = [(d, p) for d, p in others]
        if len(others) >= 2 and others[1][0] - others[0][0] >= NEAR_MARGIN:
            out.append(_q(scene, f"what is the closest object to the {r}?", others[0][1]["class"], [o, others[0][1]], "nearest"))
        if len(others) >= 2 and others[-1][0] - others[-2][0] >= NEAR_MARGIN:
            out.append(_q(scene, f"what is the farthest object from the {r}?", others[-1][1]["class"], [o, others[-1][1]], "farthest"))
    # pairwise: closer to door, bigger, taller, left/right from the door
    door = next((o for o in scene["objects"] if o["class"] == "door"), None)
    pairs = [(a, b) for i, a in enumerate(refs) for b in refs[i + 1:] if a[1] != b[1]]
    rng.shuffle(pairs)
    if door is not None:
        dpos, dfwd = xy(door), front_dir(door)
        dleft = np.array([-dfwd[1], dfwd[0]])
    counts = Counter()
    for (a, ra), (b, rb) in pairs:
        if rng.random() < 0.5:
            (a, ra), (b, rb) = (b, rb), (a, ra)
        if door is not None and counts["closer"] < 3:
            da, db = np.linalg.norm(xy(a) - dpos), np.linalg.norm(xy(b) - dpos)
            if abs(da - db) >= 0.6:
                win = ra if da < db else rb
                out.append(_q(scene, f"which is closer to the door, the {ra} or the {rb}?", win, [a, b, door], "closer"))
                counts["closer"] += 1
        if door is not None and counts["left_right"] < 3:
            la, lb = float((xy(a) - dpos) @ dleft), float((xy(b) - dpos) @ dleft)
            if abs(la - lb) >= 0.6:
                win = ra if la > lb else rb
                out.append(_q(scene, "standing at the door and facing into the room, which is farther to the left, "
                                     f"the {ra} or the {rb}?", win, [a, b, door], "left_right"))
                counts["left_right"] += 1
        ca, cb = CLASS_BY_NAME[a["class"]], CLASS_BY_NAME[b["class"]]
        va, vb = float(np.prod(a["box"]["size"])), float(np.prod(b["box"]["size"]))
        overlap_vol = np.prod(ca.size_min) < np.prod(cb.size_max) and np.prod(cb.size_min) < np.prod(ca.size_max)
        if counts["bigger"] < 2 and overlap_vol and max(va, vb) / min(va, vb) >= 1.5:
            out.append(_q(scene, f"which is bigger, the {ra} or the {rb}?", ra if va > vb else rb, [a, b], "bigger"))
            counts["bigger"] += 1
        ha, hb = a["box"]["size"][2], b["box"]["size"][2]
        overlap_h = ca.size_min[2] < cb.size_max[2] and cb.size_min[2] < ca.size_max[2]
        if counts["taller"] < 2 and overlap_h and abs(ha - hb) >= 0.15:
            out.append(_q(scene, f"which is taller, the {ra} or the {rb}?", ra if ha > hb else rb, [a, b], "taller"))
            counts["taller"] += 1
        if counts["between"] < 2:
            pa, pb = xy(a), xy(b)
            seg = pb - pa
            L = float(np.linalg.norm(seg))
            if L < 1.0:
                continue
            inside, near = [], []
            for p in floor:
                if p is a or p is b:
                    continue
                t = float((xy(p) - pa) @ seg) / L**2
                dist = abs(float(np.cross(seg, xy(p) - pa))) / L
                if 0.25 <= t <= 0.75 and dist <= 0.4:
                    inside.append(p)
                elif -0.1 <= t <= 1.1 and dist <= 0.9:
                    near.append(p)
            if len(inside) == 1 and not near:
                out.append(_q(scene, f"what is between the {ra} and the {rb}?", inside[0]["class"], [a, b, inside[0]], "between"))
                counts["between"] += 1
    return out


# ---------------------------------------------------------------- situated questions


def _stand_ok(scene, pos) -> bool:
    from .layout2d import footprint, points_in_polygon

    poly = np.asarray(scene["room"]["polygon"], float)
    if not points_in_polygon(pos[None], poly)[0]:
        return False
    for i in range(len(poly)):
        p0, p1 = poly[i], poly[(i + 1) % len(poly)]
        e = p1 - p0
        t = np.clip((pos - p0) @ e / (e @ e), 0, 1)
        if np.linalg.norm(pos - (p0 + t * e)) < 0.25:
            return False
    for o in objects_of(scene):
        if o["box"]["center"][2] - o["box"]["size"][2] / 2 > 0.6:
            continue
        b = o["box"]
        c = footprint(b["center"], b["size"][0] + 0.3, b["size"][1] + 0.3, b["yaw"])
        if points_in_polygon(pos[None], c)[0]:
            return False
    return True


def situations(scene: dict, rng) -> list[tuple[str, np.ndarray, np.ndarray, int | None]]:
    """(situation text, position (2,), facing (2,) unit, anchor object id or None) for a scene."""
    objs = objects_of(scene)
    out = []
    door = next((o for o in scene["objects"] if o["class"] == "door"), None)
    if door is not None:
        pos = xy(door) + front_dir(door) * 0.6
        if _stand_ok(scene, pos):
            out.append(("i am standing at the door, facing into the room.", pos, front_dir(door), None))
    anchors = [o for o in objs if is_floor_object(o) and o.get("against_wall") and refer(o, objs)]
    rng.shuffle(anchors)
    for a in anchors[:3]:
        f = front_dir(a)
        pos = xy(a) + f * (a["box"]["size"][1] / 2 + 0.6)
        if not _stand_ok(scene, pos):
            continue
        r = refer(a, objs)
        if rng.random() < 0.5:
            out.append((f"i am standing in front of the {r}, facing it.", pos, -f, a["id"]))
        else:
            out.append((f"i am standing in front of the {r} with my back to it.", pos, f, a["id"]))
    return out


def _situated_questions(scene, rng):
    objs = objects_of(scene)
    floor = [o for o in objs if is_floor_object(o)]
    out = []
    for text, pos, facing, anchor in situations(scene, rng):
        yaw = math.atan2(facing[1], facing[0])
        extra = {"situation": text, "position": {"x": float(pos[0]), "y": float(pos[1]), "z": 0.0},
                 "rotation": {"_x": 0.0, "_y": 0.0, "_z": math.sin(yaw / 2), "_w": math.cos(yaw / 2)}}
        info = [(o, bearing(pos, facing, xy(o)), float(np.linalg.norm(xy(o) - pos))) for o in floor]
        for sector, phrase in (("left", "what is on my left?"), ("right", "what is on my right?"),
                               ("front", "what is in front of me?"), ("behind", "what is behind me?")):
            cands = sorted([(d, o, a) for o, a, d in info if sector_of(a) == sector and d <= MAX_SECTOR_DIST],
                           key=lambda t: t[0])
            if not cands:
                continue
            d0, o0, a0 = cands[0]
            if _sector_margin(a0) < ANGLE_MARGIN:
                continue
            rivals = [(d, o) for o, a, d in info if o is not o0 and d < d0 + NEAR_MARGIN
                      and (sector_of(a) == sector or _sector_margin(a) < ANGLE_MARGIN)]
            if rivals or d0 > MAX_SECTOR_DIST - NEAR_MARGIN or o0["id"] == anchor:
                continue
            out.append(_q(scene, phrase, o0["class"], [o0], "situated_what", **extra))
        order = rng.permutation(len(info))
        n_side = n_turn = 0
        for k in order:
            o, a, d = info[k]
            r = refer(o, objs)
            if not r or d < 0.3:
                continue
            lateral = d * math.sin(math.radians(a))
            if abs(lateral) >= 0.5 and n_side < 1 and rng.random() < 0.5:
                out.append(_q(scene, f"is the {r} on my left or my right?", "left" if lateral > 0 else "right", [o],
                              "situated_side", **extra))
                n_side += 1
                continue
            turn = "left" if 30 < a < 150 else "right" if -150 < a < -30 else "around" if abs(a) > 150 else None
            if turn and n_turn < 2 and min(abs(abs(a) - e) for e in (30.0, 150.0)) >= ANGLE_MARGIN:
                out.append(_q(scene, f"which way should i turn to face the {r}?", turn, [o], "situated_turn", **extra))
                n_turn += 1
        by_class = defaultdict(list)
        for o in objs:
            by_class[o["class"]].append(o)
        multi = sorted(c for c, m in by_class.items() if len(m) >= 2)
        single = sorted(c for c, m in by_class.items() if len(m) == 1)
        for cls in list(rng.permutation(multi)[:2]) + list(rng.permutation(single)[:1]):
            members = by_class[cls]
            lats = [float((xy(o) - pos) @ np.array([-facing[1], facing[0]])) for o in members]
            if min(abs(v) for v in lats) < 0.3:
                continue
            side = str(rng.choice(["left", "right"]))
            sel = [o for o, v in zip(members, lats) if (v > 0) == (side == "left")]
            out.append(_q(scene, f"how many {PLURALS[cls]} are on my {side}?", len(sel), sel or members, "situated_count", **extra))
    return out


def generate_questions(scene: dict, seed: int = 0) -> list[dict]:
    """All candidate questions of one scene (unbalanced). Situated ones carry situation/position/rotation."""
    rng = np.random.default_rng([int(seed), sum(map(ord, scene["scene_id"]))])
    return _attribute_questions(scene, rng) + _relation_questions(scene, rng) + _situated_questions(scene, rng)


# ---------------------------------------------------------------- balancing and the blind baseline


def balance(questions: list[dict], seed: int = 0, max_share: float = 0.3) -> list[dict]:
    """Subsample each question type so its most common answer is at most ``max_share`` of it
    (or an even split when the type has fewer than 1/max_share distinct answers). Keeps input order."""
    rng = np.random.default_rng(seed)
    by_type = defaultdict(list)
    for i, q in enumerate(questions):
        by_type[q["type"]].append(i)
    keep = []
    for qtype, idx in sorted(by_type.items()):
        by_ans = defaultdict(list)
        for i in idx:
            by_ans[questions[i]["answers"][0]].append(i)
        counts = sorted((len(v) for v in by_ans.values()), reverse=True)
        share = max(max_share, 1.0 / len(counts))
        cap = 1
        for c in range(1, counts[0] + 1):
            if c <= share * sum(min(n, c) for n in counts) + 1e-9:
                cap = c
        for ans in sorted(by_ans):
            members = by_ans[ans]
            if len(members) > cap:
                members = sorted(rng.choice(members, size=cap, replace=False).tolist())
            keep.extend(members)
    return [questions[i] for i in sorted(keep)]


def blind_baseline(train: list[dict], val: list[dict]) -> dict:
    """Most common answer per question type on ``train`` applied to ``val`` (exact match against any answer).

    Returns {"overall": accuracy, "per_type": {type: accuracy}, "n_train": int, "n_val": int}.
    """
    best = {}
    by_type = defaultdict(Counter)
    for q in train:
        by_type[q["type"]][q["answers"][0]] += 1
    overall = Counter(q["answers"][0] for q in train)
    for t, c in by_type.items():
        best[t] = c.most_common(1)[0][0]
    fallback = overall.most_common(1)[0][0] if overall else ""
    hits, per = 0, defaultdict(list)
    for q in val:
        ok = best.get(q["type"], fallback) in q["answers"]
        hits += ok
        per[q["type"]].append(ok)
    return {"overall": hits / max(1, len(val)), "per_type": {t: float(np.mean(v)) for t, v in sorted(per.items())},
            "n_train": len(train), "n_val": len(val)}


# ---------------------------------------------------------------- file formats


def to_scanqa(questions: list[dict], split: str) -> list[dict]:
    """ScanQA records (question_id "<split>-<scene>-<k>")."""
    out, k = [], Counter()
    for q in questions:
        out.append({"scene_id": q["scene_id"], "question_id": f"{split}-{q['scene_id']}-{k[q['scene_id']]}",
                    "question": q["question"], "answers": list(q["answers"]), "object_ids": list(q["object_ids"]),
                    "object_names": list(q["object_names"]), "type": q["type"]})
        k[q["scene_id"]] += 1
    return out


def to_sqa3d(questions: list[dict], split: str, id_base: int = 0) -> tuple[dict, dict]:
    """SQA3D's two files: (questions file dict, annotations file dict), joined on integer question_id.

    rotation is the quaternion turning +x into the facing direction (a rotation about z); position z is the floor.
    Positions are scene coordinates (``"position_origin": "scene"``; the SQA3D release's are box-centred).
    """
    qs, anns = [], []
    for i, q in enumerate(questions):
        qid = id_base + i
        qs.append({"scene_id": q["scene_id"], "situation": q["situation"], "alternative_situation": [],
                   "question": q["question"], "question_id": qid, "object_ids": list(q["object_ids"]),
                   "object_names": list(q["object_names"])})
        anns.append({"scene_id": q["scene_id"], "question_id": qid, "question_type": q["type"],
                     "answer_type": "other", "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                                                         for j, a in enumerate(q["answers"])],
                     "position": dict(q["position"]), "rotation": dict(q["rotation"])})
    head = {"info": {"description": "Chorus-QA synthetic world, SQA3D format"}, "data_type": "synth", "data_subtype": split}
    return {**head, "questions": qs}, {**head, "position_origin": "scene", "annotations": anns}
