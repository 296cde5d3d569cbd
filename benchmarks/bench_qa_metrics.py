"""Seconds to score a Q&A split with `chorus_qa.metrics.score_predictions`, with and without Java.

Predictions are drawn from a fixed vocabulary of short ScanQA-like answers
(half right, a quarter paraphrased, a quarter wrong) over a few question types.
Writes ``benchmarks/results/bench_qa_metrics.json``.

    python benchmarks/bench_qa_metrics.py [--questions 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chorus_qa.metrics import score_predictions  # noqa: E402

ANSWERS = ["brown wooden chair", "two", "on the left of the bed", "white table", "lamp", "three chairs",
           "next to the window", "black", "under the desk", "kitchen cabinet", "four", "blue sofa"]
TYPES = ["what", "what color", "where", "how many", "which", "other"]


def make_split(n: int, seed: int = 0):
    rng = random.Random(seed)
    preds, gts, types = {}, {}, {}
    for i in range(n):
        qid = f"q{i}"
        answer = rng.choice(ANSWERS)
        gts[qid] = [answer] + ([rng.choice(ANSWERS)] if rng.random() < 0.3 else [])
        r = rng.random()
        preds[qid] = answer if r < 0.5 else (f"the {answer}." if r < 0.75 else rng.choice(ANSWERS))
        types[qid] = rng.choice(TYPES)
    return preds, gts, types


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", type=int, default=2000)
    args = p.parse_args(argv)
    preds, gts, types = make_split(args.questions)
    results = {"questions": args.questions, "question_types": len(TYPES), "java": shutil.which("java") is not None,
               "machine": platform.machine(), "python": platform.python_version()}
    for label, use_java in (("python_fallback", False), ("java", True)):
        if use_java and not results["java"]:
            results[label] = "skipped: no java runtime"
            continue
        start = time.perf_counter()
        scores = score_predictions(preds, gts, types, use_java=use_java)
        seconds = time.perf_counter() - start
        overall = scores["overall"]
        results[label] = {"seconds": round(seconds, 3), "tokenizer": scores["tokenizer"], "meteor": scores["meteor"],
                          "overall": {k: (None if v is None else round(v, 3)) for k, v in overall.items()}}
        print(f"{label}: {seconds:.2f} s for {args.questions} questions", file=sys.stderr)
    out = ROOT / "benchmarks" / "results" / "bench_qa_metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
