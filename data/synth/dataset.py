"""Write a whole synthetic world to disk: scenes, scene.json, questions, splits, classes.

Layout of ``out_dir``::

    scenes/<scene_id>/             SceneSplat folder (data.save_scene) + scene.json
    scenes/<scene_id>.ply          INRIA .ply (only with ply=True)
    qa/ScanQA_v1.0_{train,val,test}.json
    qa/SQA3D/v1_balanced_questions_{split}_scannetv2.json, v1_balanced_sqa_annotations_{split}_scannetv2.json
    splits/{train,val,test}.txt
    classes.json                   {"class_names": [...], "colors": {name: [r, g, b]}}
    qa/blind_baseline.json         most-common-answer-per-type baseline (train -> val)

Scene ids are ``synth{seed:02d}_{i:04d}``; room i of world ``seed`` uses room seed ``seed * 1_000_003 + i``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .classes import CLASS_DISPLAY_COLORS, CLASS_NAMES
from .qa import balance, blind_baseline, generate_questions, to_scanqa, to_sqa3d
from .room import generate_room

SPLITS = ("train", "val", "test")
# The world of the Q&A rooms (scripts/make_demo_checkpoint.sh, configs/qa_synth.yaml). Encoder pretraining rooms come
# from other seeds, so no Q&A room is ever seen by the encoder (benchmarks/pretrain_probe.py skips it).
QA_WORLD_SEED = 2


def scene_id_for(seed: int, i: int) -> str:
    return f"synth{int(seed):02d}_{int(i):04d}"


def split_scene_ids(scene_ids: list[str], seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> dict[str, list[str]]:
    """Disjoint train/val/test lists of scene ids (each non-empty when there are >= 3 scenes)."""
    ids = list(scene_ids)
    order = np.random.default_rng([int(seed), 99]).permutation(len(ids))
    n = len(ids)
    n_val = max(1, int(round(fractions[1] * n))) if n >= 3 else 0
    n_test = max(1, int(round(fractions[2] * n))) if n >= 3 else 0
    n_train = n - n_val - n_test
    sel = [ids[k] for k in order]
    return {"train": sorted(sel[:n_train]), "val": sorted(sel[n_train:n_train + n_val]), "test": sorted(sel[n_train + n_val:])}


def _write_one(args) -> tuple[str, int, dict]:
    out_dir, seed, i, density, ply, ceiling = args
    import data

    sid = scene_id_for(seed, i)
    folder = Path(out_dir) / "scenes" / sid
    scene, meta = generate_room(int(seed) * 1_000_003 + int(i), density=density, ceiling=ceiling, scene_id=sid)
    data.save_scene(scene, folder)
    (folder / "scene.json").write_text(json.dumps(meta, indent=1))
    if ply:
        data.save_scene(scene, folder.parent / f"{sid}.ply")
    return sid, len(scene), meta


def _dump(path: Path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def write_questions(out_dir, metas: dict[str, dict], splits: dict[str, list[str]], seed: int = 0) -> dict:
    """Generate, balance (per split) and write the ScanQA / SQA3D files; returns the blind baseline."""
    out_dir = Path(out_dir)
    per_split = {}
    id_base = 0
    for split in SPLITS:
        qs = [q for sid in splits[split] for q in generate_questions(metas[sid], seed)]
        plain = balance([q for q in qs if "situation" not in q], seed)
        situated = balance([q for q in qs if "situation" in q], seed + 1)
        per_split[split] = (plain, situated)
        _dump(out_dir / "qa" / f"ScanQA_v1.0_{split}.json", to_scanqa(plain, split))
        qfile, afile = to_sqa3d(situated, split, id_base)
        id_base += len(situated)
        _dump(out_dir / "qa" / "SQA3D" / f"v1_balanced_questions_{split}_scannetv2.json", qfile)
        _dump(out_dir / "qa" / "SQA3D" / f"v1_balanced_sqa_annotations_{split}_scannetv2.json", afile)
    base = {"scanqa": blind_baseline(per_split["train"][0], per_split["val"][0]),
            "sqa3d": blind_baseline(per_split["train"][1], per_split["val"][1]),
            "all": blind_baseline(per_split["train"][0] + per_split["train"][1], per_split["val"][0] + per_split["val"][1])}
    _dump(out_dir / "qa" / "blind_baseline.json", base)
    return base


def generate_dataset(out_dir, n_scenes: int, seed: int = 0, density: float = 1.0, ply: bool = False,
                     workers: int = 1, ceiling: bool = False, progress: bool = True) -> dict:
    """Generate ``n_scenes`` rooms and their questions under ``out_dir`` (layout in the module docstring).

    Returns a summary: {"scene_ids", "splits", "gaussians": {sid: n}, "blind_baseline"}.
    """
    from tqdm import tqdm

    if n_scenes < 1:
        raise ValueError(f"generate_dataset: n_scenes must be >= 1, got {n_scenes}")
    if workers < 1:
        raise ValueError(f"generate_dataset: workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    (out_dir / "scenes").mkdir(parents=True, exist_ok=True)
    jobs = [(str(out_dir), seed, i, density, ply, ceiling) for i in range(n_scenes)]
    results = []
    bar = tqdm(total=n_scenes, desc="synth rooms", unit="room", disable=not progress)
    if workers == 1:
        for j in jobs:
            results.append(_write_one(j))
            bar.update()
    else:
        import multiprocessing as mp

        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with mp.get_context("spawn").Pool(workers) as pool:
            for r in pool.imap(_write_one, jobs, chunksize=1):
                results.append(r)
                bar.update()
    bar.close()
    metas = {sid: meta for sid, _, meta in results}
    splits = split_scene_ids(sorted(metas), seed)
    for split, ids in splits.items():
        (out_dir / "splits").mkdir(parents=True, exist_ok=True)
        (out_dir / "splits" / f"{split}.txt").write_text("".join(f"{s}\n" for s in ids))
    _dump(out_dir / "classes.json", {"class_names": list(CLASS_NAMES),
                                     "colors": {k: list(v) for k, v in CLASS_DISPLAY_COLORS.items()}})
    base = write_questions(out_dir, metas, splits, seed)
    return {"scene_ids": sorted(metas), "splits": splits, "gaussians": {sid: n for sid, n, _ in results},
            "blind_baseline": base}
