"""Quality of the zero-shot segments that become object tokens, for several ``min_points`` / ``radius`` /
``smooth_iters`` settings.

    python benchmarks/segment_quality.py --data runs/qa1k/qa_data --checkpoint checkpoints/demo \
        [--rooms 20] [--min-points 10 30 60 100] [--radius 0.12] [--smooth 0 2] \
        [--out benchmarks/results/segment_quality.json]

On the first ``--rooms`` val rooms of a synthetic Q&A data folder (ground-truth instances and counting questions
needed), with the checkpoint's encoder and language head (``chorus_qa.segments``), per setting:

- segments a room (against ground-truth objects a room);
- object recall: the share of ground-truth objects whose best-overlapping segment has IoU >= 0.5 / 0.25;
- per class: the share of ground-truth objects of that class that one of the ``--tokens`` largest segments
  overlaps with IoU >= 0.25 (whether the object has a token at all), to see which classes a threshold drops;
- token counting: for each counting question ("how many X"), the number of the 64 largest segments whose
  majority class is X, exactly right / within one of the answer. This is what the object tokens offer the LLM
  for counting, before it learns anything;
- token colour: for each colour question ("what color is the X?"), whether one of the tokens of class X carries
  the right colour word (``any``), and whether the largest of them does (``largest``): the colour questions the
  object tokens can answer, before the LLM learns anything.

The encoder runs once per room, the labels once per ``--smooth`` value; only the segmentation is redone per setting.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.atomic import write_json  # noqa: E402

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402


def best_iou(instance: torch.Tensor, segments: torch.Tensor) -> list[float]:
    """Per ground-truth object (instance id >= 0): the best IoU of any segment (id >= 0) with it."""
    valid = (instance >= 0) & (segments >= 0)
    obj_ids, obj_inv = torch.unique(instance[instance >= 0], return_inverse=True)
    obj_size = torch.bincount(obj_inv, minlength=len(obj_ids)).float()
    seg_ids, seg_inv = torch.unique(segments[segments >= 0], return_inverse=True)
    seg_size = torch.bincount(seg_inv, minlength=len(seg_ids)).float()
    # intersections from the joint (object, segment) histogram
    o = torch.searchsorted(obj_ids, instance[valid])
    s = torch.searchsorted(seg_ids, segments[valid])
    inter = torch.zeros(len(obj_ids), max(len(seg_ids), 1)).index_put_((o, s), torch.ones(len(o)), accumulate=True)
    if not len(seg_ids):
        return [0.0] * len(obj_ids)
    iou = inter / (obj_size[:, None] + seg_size[None, :] - inter)
    return iou.max(1).values.tolist()


def largest_segments(segments: torch.Tensor, k: int) -> torch.Tensor:
    """``segments`` with every segment but the ``k`` largest set to -1 (the ones ``pool_objects`` keeps)."""
    ids, inverse, counts = torch.unique(segments[segments >= 0], return_inverse=True, return_counts=True)
    keep = torch.zeros(len(ids), dtype=torch.bool)
    keep[torch.sort(counts, descending=True, stable=True).indices[:k]] = True
    out = torch.full_like(segments, -1)
    out[segments >= 0] = torch.where(keep[inverse], segments[segments >= 0], -1)
    return out


def object_classes(instance: torch.Tensor, semantic: torch.Tensor) -> list[int]:
    """Majority semantic class of each ground-truth object, in ``best_iou``'s order (sorted instance ids)."""
    from chorus_qa.scene_tokens import group_majority

    obj_ids, obj_inv = torch.unique(instance[instance >= 0], return_inverse=True)
    return group_majority(semantic[instance >= 0].long(), obj_inv, len(obj_ids)).tolist()


def token_counts(labels: torch.Tensor, segments: torch.Tensor, k: int = 64) -> dict[int, int]:
    """Class id -> number of the ``k`` largest segments whose majority label it is (the object tokens' classes:
    ``pool_objects`` at inference keeps the same segments and gives them the same majority labels)."""
    from chorus_qa.scene_tokens import group_majority

    kept = largest_segments(segments, k)
    ids, assign = torch.unique(kept[kept >= 0], return_inverse=True)
    return dict(Counter(group_majority(labels[kept >= 0], assign, len(ids)).tolist()))


def token_colors(labels: torch.Tensor, colors: torch.Tensor, segments: torch.Tensor, k: int = 64) -> list[tuple[int, int]]:
    """(majority class id, basic colour id) of each of the ``k`` largest segments, largest first: the class and
    colour words of the object tokens (``pool_objects`` votes both per segment the same way)."""
    from chorus_qa.scene_tokens import basic_color_ids, group_majority

    kept = largest_segments(segments, k)
    ids, assign, counts = torch.unique(kept[kept >= 0], return_inverse=True, return_counts=True)
    cls = group_majority(labels[kept >= 0], assign, len(ids))
    col = group_majority(basic_color_ids(colors[kept >= 0]), assign, len(ids))
    order = torch.sort(counts, descending=True, stable=True).indices
    return [(int(cls[i]), int(col[i])) for i in order]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="synthetic Q&A data folder (scenes/, splits/, qa/)")
    ap.add_argument("--checkpoint", default="checkpoints/demo", help="Q&A checkpoint folder (config.json, encoder/, heads/)")
    ap.add_argument("--rooms", type=int, default=20)
    ap.add_argument("--min-points", type=int, nargs="+", default=[10, 30, 60, 100])
    ap.add_argument("--radius", type=float, nargs="+", default=[0.12])
    ap.add_argument("--smooth", type=int, nargs="+", default=None,
                    help="smooth_iters values (language-feature neighbour averaging; default: the checkpoint's)")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--out", default="benchmarks/results/segment_quality.json")
    args = ap.parse_args(argv)

    from chorus_qa.datasets import load_qa_split
    from chorus_qa.feature_cache import SceneFeatureSource
    from chorus_qa.qa_config import QAModelConfig
    from chorus_qa.segments import label_segments, make_segmenter
    from data import load_scene

    ckpt = Path(args.checkpoint)
    cfg = QAModelConfig.from_dict(json.loads((ckpt / "config.json").read_text()))
    if cfg.pooling != "objects":
        ap.error(f"{ckpt}: pooling is {cfg.pooling!r}; segments belong to 'objects' pooling")
    encoder = ckpt / (cfg.encoder_ref or "encoder")
    source = SceneFeatureSource(str(encoder))
    segmenter = make_segmenter(cfg, str(encoder))
    names = cfg.class_names()
    split_file = Path(args.data) / "splits" / "val.txt"
    if not split_file.is_file():
        ap.error(f"{split_file} not found: --data must be a synthetic Q&A folder (python -m data.synth ...)")
    rooms = split_file.read_text().split()[: args.rooms]
    counting = defaultdict(list)
    for e in load_qa_split(args.data, "val", "synth"):
        if e.type == "counting" and e.answers and e.answers[0].isdigit() and e.object_names and e.object_names[0] in names:
            counting[e.scene_id].append((names.index(e.object_names[0]), int(e.answers[0])))

    from chorus_qa.scene_tokens import basic_color_names

    color_words = basic_color_names()
    color_qs = defaultdict(list)
    for e in load_qa_split(args.data, "val", "synth"):
        if e.type == "color" and e.answers and e.answers[0] in color_words and e.object_names and e.object_names[0] in names:
            color_qs[e.scene_id].append((names.index(e.object_names[0]), color_words.index(e.answers[0])))

    seg_cfg = segmenter.cfg
    smooths = args.smooth if args.smooth is not None else [seg_cfg.smooth_iters]
    settings = [(it, r, m) for it in smooths for r in args.radius for m in args.min_points]
    class_names = json.loads((Path(args.data) / "classes.json").read_text())["class_names"]
    per_class_hits = {s: defaultdict(lambda: [0, 0]) for s in settings}
    acc = {s: {"segments": 0, "objects": 0, "iou50": 0, "iou25": 0, "count_exact": 0, "count_within1": 0, "questions": 0,
                "color_questions": 0, "color_any": 0, "color_largest": 0}
           for s in settings}
    for sid in tqdm(rooms, desc="rooms", unit="room"):
        scene = load_scene(Path(args.data) / "scenes" / sid)
        if scene.instance is None:
            raise ValueError(f"{sid}: no ground-truth instances (instance.npy)")
        features, _ = source(scene)
        labels_by = {it: segmenter.labels(features, scene.means, smooth_iters=it) for it in smooths}
        classes = object_classes(scene.instance.long(), scene.semantic)
        for setting in settings:
            labels = labels_by[setting[0]]
            seg = label_segments(scene.means, labels, seg_cfg.knn_k, setting[1], setting[2])
            a = acc[setting]
            ious = best_iou(scene.instance.long(), seg)
            a["segments"] += int(seg[seg >= 0].unique().numel())
            a["objects"] += len(ious)
            a["iou50"] += sum(v >= 0.5 for v in ious)
            a["iou25"] += sum(v >= 0.25 for v in ious)
            for cls, v in zip(classes, best_iou(scene.instance.long(), largest_segments(seg, args.tokens))):
                hit = per_class_hits[setting][class_names[cls] if 0 <= cls < len(class_names) else "?"]
                hit[0] += v >= 0.25
                hit[1] += 1
            per_class = token_counts(labels, seg, args.tokens)
            for cls, truth in counting[sid]:
                a["questions"] += 1
                a["count_exact"] += per_class.get(cls, 0) == truth
                a["count_within1"] += abs(per_class.get(cls, 0) - truth) <= 1
            tokens = token_colors(labels, scene.colors.float(), seg, args.tokens)
            for cls, truth in color_qs[sid]:
                words = [col for c, col in tokens if c == cls]
                a["color_questions"] += 1
                a["color_any"] += truth in words
                a["color_largest"] += bool(words) and words[0] == truth
    rows = []
    for (smooth, radius, min_points), a in acc.items():
        n_q = max(a["questions"], 1)
        rows.append({"smooth_iters": smooth, "radius": radius, "min_points": min_points,
                     "segments_per_room": round(a["segments"] / len(rooms), 1),
                     "objects_per_room": round(a["objects"] / len(rooms), 1),
                     "recall_iou50": round(a["iou50"] / a["objects"], 4), "recall_iou25": round(a["iou25"] / a["objects"], 4),
                     "token_count_exact": round(a["count_exact"] / n_q, 4),
                     "token_count_within1": round(a["count_within1"] / n_q, 4), "counting_questions": a["questions"],
                     "token_color_any": round(a["color_any"] / max(a["color_questions"], 1), 4),
                     "token_color_largest": round(a["color_largest"] / max(a["color_questions"], 1), 4),
                     "color_questions": a["color_questions"],
                     "class_has_token_iou25": {c: [round(h / n, 4), n] for c, (h, n) in sorted(per_class_hits[smooth, radius, min_points].items())}})
    result = {"data": args.data, "checkpoint": str(ckpt), "rooms": len(rooms), "tokens": args.tokens,
              "knn_k": seg_cfg.knn_k, "settings": rows}
    write_json(Path(args.out), result)
    for r in rows:
        print(f"smooth {r['smooth_iters']} radius {r['radius']} min_points {r['min_points']}: {r['segments_per_room']} segments a room for "
              f"{r['objects_per_room']} objects; recall IoU>=0.5 {100 * r['recall_iou50']:.1f} %, >=0.25 "
              f"{100 * r['recall_iou25']:.1f} %; token count exact {100 * r['token_count_exact']:.1f} %, "
              f"within one {100 * r['token_count_within1']:.1f} % ({r['counting_questions']} questions); token colour "
              f"any {100 * r['token_color_any']:.1f} %, largest {100 * r['token_color_largest']:.1f} % "
              f"({r['color_questions']} questions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
