"""Paired comparison of Q&A benchmark runs on the same questions: EM@1 per run and question type, and the
difference of each run to a reference with its paired standard error.

    python benchmarks/qa_paired.py --run cell=runs/qa1k/bench/scene --run objects=runs/qa_obj_bench/scene \
        --reference cell --out benchmarks/results/qa_paired.json

Each run folder holds the ``predictions.jsonl`` of ``python -m chorus_qa.benchmark``. Runs are compared on the
questions they share (an error if there are none). A paired difference is the mean over questions of
EM(run) - EM(reference); its standard error is the standard deviation of those per-question differences over
sqrt(n), far smaller than the unpaired one when two models get most questions equally right or wrong.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.atomic import write_json  # noqa: E402

from chorus_qa.metrics import exact_match  # noqa: E402


def load_predictions(folder: str | Path) -> dict[str, dict]:
    path = Path(folder) / "predictions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run `python -m chorus_qa.benchmark --out {folder}` first")
    with open(path) as f:
        return {row["question_id"]: row for row in map(json.loads, f)}


def paired_difference(a: list[float], b: list[float]) -> tuple[float, float]:
    """(mean of a - b, its standard error) over paired samples."""
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1) / n) if n > 1 else float("nan")
    return mean, se


def compare(runs: dict[str, str | Path], reference: str) -> dict:
    if reference not in runs:
        raise ValueError(f"--reference {reference!r} is not among the runs {sorted(runs)}")
    preds = {name: load_predictions(folder) for name, folder in runs.items()}
    shared = sorted(set.intersection(*(set(p) for p in preds.values())))
    if not shared:
        raise ValueError("the runs share no question ids: were they benchmarked on the same split?")
    em = {name: {q: float(exact_match(p[q]["prediction"], p[q]["answers"])) for q in shared} for name, p in preds.items()}
    by_type = defaultdict(list)
    for q in shared:
        by_type[preds[reference][q].get("type") or "all"].append(q)
    groups = {"overall": shared, **dict(sorted(by_type.items()))}
    out = {"runs": {k: str(v) for k, v in runs.items()}, "reference": reference, "questions": len(shared), "groups": {}}
    for group, qs in groups.items():
        row = {"n": len(qs)}
        for name in runs:
            row[name] = 100 * sum(em[name][q] for q in qs) / len(qs)
            if name != reference:
                mean, se = paired_difference([em[name][q] for q in qs], [em[reference][q] for q in qs])
                row[f"{name}_minus_{reference}"] = {"diff": 100 * mean, "se": 100 * se}
        out["groups"][group] = row
    return out


def markdown(result: dict) -> str:
    names = list(result["runs"])
    ref = result["reference"]
    others = [n for n in names if n != ref]
    head = "| | n | " + " | ".join(names) + " | " + " | ".join(f"{n} - {ref}" for n in others) + " |"
    lines = [head, "|---|---:|" + "---:|" * (len(names) + len(others))]
    for group, row in result["groups"].items():
        diffs = [f"{row[f'{n}_minus_{ref}']['diff']:+.1f} ± {row[f'{n}_minus_{ref}']['se']:.1f}" for n in others]
        lines.append(f"| {group} | {row['n']} | " + " | ".join(f"{row[n]:.1f}" for n in names) + " | " + " | ".join(diffs) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="append", required=True, help="NAME=FOLDER with predictions.jsonl (repeat)")
    p.add_argument("--reference", default=None, help="run the others are compared to (default: the first)")
    p.add_argument("--out", default=None, help="JSON file to write")
    args = p.parse_args(argv)
    runs = {}
    for item in args.run:
        if "=" not in item:
            p.error(f"--run {item!r}: expected NAME=FOLDER")
        name, folder = item.split("=", 1)
        runs[name] = folder
    result = compare(runs, args.reference or next(iter(runs)))
    print(markdown(result))
    if args.out:
        write_json(Path(args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
