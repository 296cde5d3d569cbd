"""How well an object's colour *name* can be read off its Gaussians (the rule behind ``color_names: true``).

    python benchmarks/color_names.py [--rooms 60] [--shading 0.6 0.45 ...] [--out benchmarks/results/color_names.json]

On generated rooms (seeds 5000.., density 0.3, the Q&A recipe's density) each ground-truth object's Gaussians
are named by several rules and compared with the colour word its generator painted it with (the answer of the
synthetic "what color is the X?" questions):

- ``vote_lab``: every Gaussian takes its nearest basic colour term in CIELAB, the object the majority
  (``chorus_qa.scene_tokens.basic_color_ids`` + ``group_majority``: what the Q&A tokens use);
- ``mean_lab``: the object's mean colour, nearest term in CIELAB;
- ``mean_rgb``: the mean colour, nearest term in sRGB;
- ``vote_lab_shading<s>``: ``vote_lab`` where each Gaussian's term may be matched dimmed down to ``s`` of its light
  (``basic_color_ids(colors, s)``; ``color_shading: s`` in a Q&A config), one per ``--shading`` floor.

Per rule: accuracy over all objects, over non-structural objects (no walls / floor), and the most common confusions.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.atomic import write_json  # noqa: E402

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from chorus_qa.scene_tokens import basic_color_ids, basic_color_names, group_majority, group_mean_std  # noqa: E402
from data.synth import COLORS, generate_room  # noqa: E402


def shading_rule(shading: float) -> str:
    """The name of the ``vote_lab`` rule with shading floor ``shading``."""
    return f"vote_lab_shading{shading:g}"


def name_objects(colors: torch.Tensor, instance: torch.Tensor, shadings=()) -> dict[str, dict[int, int]]:
    """Colour-term id per instance id (>= 0) under each rule (plus ``vote_lab_shading<s>`` per shading floor)."""
    names = basic_color_names()
    protos = torch.tensor([COLORS[n] for n in names], dtype=torch.float32) / 255
    ids, assign = torch.unique(instance[instance >= 0], return_inverse=True)
    cols = colors[instance >= 0].float().clamp(0, 1)
    k = len(ids)
    mean, _ = group_mean_std(cols, assign, torch.bincount(assign, minlength=k).float())
    rules = {"vote_lab": group_majority(basic_color_ids(cols), assign, k),
             "mean_lab": basic_color_ids(mean),
             "mean_rgb": torch.cdist(mean, protos).argmin(1)}
    for shading in shadings:
        rules[shading_rule(shading)] = group_majority(basic_color_ids(cols, shading), assign, k)
    return {rule: {int(i): int(v) for i, v in zip(ids, got)} for rule, got in rules.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rooms", type=int, default=60)
    ap.add_argument("--seed", type=int, default=5000)
    ap.add_argument("--shading", type=float, nargs="*", default=[0.6, 0.45, 0.35, 0.25, 0.15],
                    help="shading floors of basic_color_ids to score as vote_lab_shading<s> (color_shading)")
    ap.add_argument("--out", default="benchmarks/results/color_names.json")
    args = ap.parse_args(argv)
    if args.rooms < 1:
        ap.error("--rooms must be >= 1")
    names = basic_color_names()
    if any(not 0 < s <= 1 for s in args.shading):
        ap.error("--shading floors must be in (0, 1]")
    hits = {r: Counter() for r in ("vote_lab", "mean_lab", "mean_rgb", *map(shading_rule, args.shading))}
    confusions = {r: Counter() for r in hits}
    for seed in tqdm(range(args.seed, args.seed + args.rooms), desc="rooms", unit="room"):
        scene, meta = generate_room(seed, density=0.3)
        got = name_objects(scene.colors, scene.instance, args.shading)
        for obj in meta["objects"]:
            if obj["id"] not in got["vote_lab"]:
                continue
            group = "structure" if obj.get("structural") else "objects"
            for rule in hits:
                name = names[got[rule][obj["id"]]]
                ok = name == obj["color"]
                hits[rule][group, ok] += 1
                if not ok:
                    confusions[rule][f"{obj['color']} -> {name}"] += 1
    result = {"rooms": args.rooms, "seeds": [args.seed, args.seed + args.rooms - 1], "density": 0.3,
              "shading": args.shading, "rules": {}}
    for rule, h in hits.items():
        n_obj = h["objects", True] + h["objects", False]
        n_all = n_obj + h["structure", True] + h["structure", False]
        result["rules"][rule] = {
            "accuracy_all": round((h["objects", True] + h["structure", True]) / n_all, 4), "n_all": n_all,
            "accuracy_objects": round(h["objects", True] / n_obj, 4), "n_objects": n_obj,
            "top_confusions": dict(confusions[rule].most_common(6))}
    write_json(Path(args.out), result)
    for rule, r in result["rules"].items():
        print(f"{rule:20s} all {100 * r['accuracy_all']:.1f} % of {r['n_all']}, "
              f"objects {100 * r['accuracy_objects']:.1f} % of {r['n_objects']}; {r['top_confusions']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
