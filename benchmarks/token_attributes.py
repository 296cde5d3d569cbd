"""Which attributes of an object its token's inputs carry: material, size word and colour, read by linear probes.

    python benchmarks/token_attributes.py --data runs/qa1k/qa_data \
        --pooled runs/qa1k/qa_data/feature_cache/<encoder>_objects-<segments>_k32_m16384_s0_v4_r0_metric \
        [--train-scenes 300] [--val-scenes 100] [--out benchmarks/results/token_attributes.json]

Each object token of the trainer's pooled cache (an "objects" model with class labels) is matched to the
ground-truth object of its zero-shot class whose box centre is nearest, within ``--max-dist`` metres
(``scene.json`` of the synthetic world); unmatched tokens are left out. A linear probe
(``encoder.probe.train_linear_probe``) is fitted on the tokens of ``--train-scenes`` train rooms (inference
pooling and, when cached, the first training draw) and scored on the inference pooling of ``--val-scenes`` val rooms, per
attribute and per input group:

- ``features``: the segment's mean | max of encoder features (what the encoder contributes);
- ``geometry``: box half-extents, spread, log Gaussian count, mean colour (+ metric extents when cached);
- ``all``: both, plus a one-hot of the token's class;
- ``class_majority``: the most common value of the token's class in the train tokens (the prior a probe must beat);
- colour also reports the token's colour word (``color_ids``, the vote the released tokens carry).

Attributes are scored on the tokens whose class allows more than one value (a question about them is not
answered by the class alone; ``size`` on all). A probe at the class prior means the attribute is not in the
inputs: no LLM can read it from the tokens, and the fix is the encoder (or its teachers), not the Q&A recipe.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.atomic import write_json  # noqa: E402

import torch  # noqa: E402

ATTRIBUTES = ("material", "size_word", "color")
INPUTS = ("features", "geometry", "all")
ALLOWED = {"material": "materials", "color": "colors"}  # the ObjectClass field listing a class's possible values


def match_tokens(names: list[str | None], centres: torch.Tensor, objects: list[dict], max_dist: float) -> list[int | None]:
    """Per token: the index into ``objects`` of the object of the token's class (``names``) whose box centre is
    nearest the token's centre (``centres`` [K, 3], metres), or None (no class, no such object or none within
    ``max_dist``)."""
    out: list[int | None] = []
    for name, centre in zip(names, centres.tolist()):
        best, best_d = None, max_dist
        for j, o in enumerate(objects):
            if name is None or o["class"] != name:
                continue
            d = sum((a - b) ** 2 for a, b in zip(o["box"]["center"], centre)) ** 0.5
            if d <= best_d:
                best, best_d = j, d
        out.append(best)
    return out


def class_majority(train_classes: torch.Tensor, train_values: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Per query class: the most common train value of that class (ties: the smaller value; -1 if unseen)."""
    from chorus_qa.scene_tokens import group_majority

    k = int(torch.cat([train_classes, classes]).max()) + 1
    return group_majority(train_values, train_classes, k)[classes]


def probe_accuracy(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
                   num_classes: int, seed: int = 0) -> float:
    """Val accuracy (%) of a linear probe fitted on (x_train, y_train)."""
    from encoder.probe import LinearProbeConfig, train_linear_probe

    batches = -(-len(x_train) // 1024)
    cfg = LinearProbeConfig(epochs=max(30, -(-300 // batches)), batch_size=1024, seed=seed)  # >= 300 steps
    probe = train_linear_probe(x_train, y_train, num_classes, cfg)
    return round(100 * float((probe.predict(x_val) == y_val).float().mean()), 1)


def collect(store, data: str, scene_ids: list[str], variants: tuple[int, ...], class_names: list[str],
            max_dist: float) -> dict:
    """The matched tokens of ``scene_ids``: inputs per group, class ids, colour-word ids and attribute values."""
    from data.synth.classes import MATERIALS

    from chorus_qa.datasets import scene_dir
    from chorus_qa.scene_tokens import basic_color_names, pooled_from_tensors, pooled_valid

    # colour values are the tokens' colour-word vocabulary (the synthetic world's colours), so a colour-word id
    # compares with the object's colour index directly
    values = {"material": list(MATERIALS), "size_word": ["small", "medium", "large"], "color": basic_color_names()}
    rows = {"features": [], "geometry": [], "cls": [], "color_word": [], **{a: [] for a in ATTRIBUTES}}
    for sid in scene_ids:
        tensors = store.load_tensors(sid)
        objects = [o for o in json.loads((Path(scene_dir(data, sid)) / "scene.json").read_text())["objects"]
                   if not o.get("structural")]
        for v in (v for v in variants if v < len(tensors["cells"])):  # the poolings the cache holds
            pooled = pooled_from_tensors(tensors, v)
            if pooled.labels is None:
                raise SystemExit(f"{sid}: pooled without class labels (object_names)")
            valid = torch.where(pooled_valid(pooled))[0]
            names = [class_names[int(c)] if 0 <= int(c) < len(class_names) else None for c in pooled.labels[valid]]
            for k, j in zip(valid.tolist(), match_tokens(names, pooled.centres[valid].float(), objects, max_dist)):
                if j is None:
                    continue
                rows["features"].append(pooled.cells[k].float())
                rows["geometry"].append(pooled.geometry[k].float())
                rows["cls"].append(int(pooled.labels[k]))
                rows["color_word"].append(int(pooled.color_ids[k]) if pooled.color_ids is not None else -1)
                for a in ATTRIBUTES:
                    rows[a].append(values[a].index(objects[j][a]))
    if not rows["cls"]:
        raise SystemExit(f"no token of {len(scene_ids)} scenes matched a ground-truth object within {max_dist} m")
    out = {k: (torch.stack(v) if k in ("features", "geometry") else torch.tensor(v, dtype=torch.long)) for k, v in rows.items()}
    out["values"] = values
    return out


def ambiguous(rows: dict, attribute: str, class_names: list[str]) -> torch.Tensor:
    """[T] bool: the tokens whose class allows more than one value of ``attribute`` (all tokens for size)."""
    from data.synth.classes import CLASS_BY_NAME

    if attribute not in ALLOWED:
        return torch.ones(len(rows["cls"]), dtype=torch.bool)
    return torch.tensor([class_names[c] in CLASS_BY_NAME and len(getattr(CLASS_BY_NAME[class_names[c]], ALLOWED[attribute])) > 1
                         for c in rows["cls"].tolist()], dtype=torch.bool)


def inputs(rows: dict, group: str, num_classes: int) -> torch.Tensor:
    if group == "features":
        return rows["features"]
    if group == "geometry":
        return rows["geometry"]
    onehot = torch.nn.functional.one_hot(rows["cls"], num_classes).float()
    return torch.cat([rows["features"], rows["geometry"], onehot], 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="synthetic Q&A data folder (qa/, scenes/)")
    ap.add_argument("--pooled", required=True, help="the trainer's pooled cache folder of an 'objects' model with labels")
    ap.add_argument("--train-scenes", type=int, default=300, help="first N train scenes in the cache")
    ap.add_argument("--val-scenes", type=int, default=100, help="first N val scenes in the cache")
    ap.add_argument("--max-dist", type=float, default=0.5, help="token centre to object box centre (metres)")
    ap.add_argument("--label-set", default="synth")
    ap.add_argument("--seed", type=int, default=0, help="seeds the probes' initialisation and minibatch order")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)  # LinearProbe's nn.Linear init draws from the global generator

    from encoder.label_sets import get_label_set

    from chorus_qa.datasets import load_qa_split
    from chorus_qa.feature_cache import FeatureCache

    class_names = get_label_set(args.label_set)
    pooled_dir = Path(args.pooled)
    store = FeatureCache(pooled_dir.parent, pooled_dir.name)
    split_scenes = {}
    for split, n in (("train", args.train_scenes), ("val", args.val_scenes)):
        ids = sorted({e.scene_id for e in load_qa_split(args.data, split, "synth") if store.path(e.scene_id).is_file()})
        if not ids:
            raise SystemExit(f"{args.pooled}: none of the {split} scenes is cached (run the trainer first)")
        split_scenes[split] = ids[:n]
    train = collect(store, args.data, split_scenes["train"], (0, 1), class_names, args.max_dist)
    val = collect(store, args.data, split_scenes["val"], (0,), class_names, args.max_dist)
    x = {g: (inputs(train, g, len(class_names)), inputs(val, g, len(class_names))) for g in INPUTS}  # once, not per attribute
    results = {}
    for a in ATTRIBUTES:
        tr, va = ambiguous(train, a, class_names), ambiguous(val, a, class_names)
        y_train, y_val = train[a][tr], val[a][va]
        k = len(train["values"][a])
        res = {"train_tokens": int(tr.sum()), "val_tokens": int(va.sum()), "values": k,
               "class_majority": round(100 * float((class_majority(train["cls"][tr], y_train, val["cls"][va]) == y_val).float().mean()), 1)}
        for g in INPUTS:
            res[g] = probe_accuracy(x[g][0][tr], y_train, x[g][1][va], y_val, k, args.seed)
        if a == "color":
            res["color_word"] = round(100 * float((val["color_word"][va] == y_val).float().mean()), 1)
        results[a] = res
        print(a, res, flush=True)
    out = {"data": args.data, "pooled": args.pooled, "train_scenes": len(split_scenes["train"]),
           "val_scenes": len(split_scenes["val"]), "max_dist": args.max_dist, "seed": args.seed, "accuracy_percent": results}
    if args.out:
        write_json(Path(args.out), out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
