"""Scripted Q&A benchmark: answer every question of a split, write predictions and metrics.

    python -m chorus_qa.benchmark --checkpoint checkpoints/qa_demo --data DATA --split val --out results/demo
    python -m chorus_qa.benchmark --checkpoint checkpoints/qa_demo --data DATA --split val --out results/demo_blind --blind

Writes into ``--out``:

* ``predictions.jsonl``: one line per question (question_id, scene_id, question,
  prediction, answers, type, source, and situation for SQA3D);
* ``metrics.json``: the run's settings and `chorus_qa.metrics.score_predictions`
  (overall and per question type, in percent; per dataset when several are read);
* ``metrics.md``: the same as markdown tables. The blind run (same LLM, no scene
  tokens) is the baseline every result is shown against: when a blind run of the
  same checkpoint, data and split lies beside ``--out`` (or ``--compare DIR``
  names a run), the tables get its numbers and the gain. A blind run refreshes
  the tables of its sibling scene runs.

Generation is greedy and grouped by scene, so each scene is encoded once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .datasets import QAExample, load_qa_split, scene_dir
from .metrics import METRIC_NAMES, score_predictions
from .situated import example_pose

# metric -> label in the markdown tables
MARKDOWN_METRICS = {
    "EM@1": "EM@1",
    "refined_EM": "refined EM",
    "BLEU-1": "BLEU-1",
    "BLEU-4": "BLEU-4",
    "CIDEr": "CIDEr",
    "ROUGE-L": "ROUGE-L",
    "METEOR": "METEOR",
}
# metrics whose per-type / per-dataset cells also show the baseline and the gain
BASELINE_METRICS = ("EM@1", "refined_EM", "CIDEr")
Predictor = Callable[..., dict]


# ----------------------------------------------------------------------------- model calls


def load_model(checkpoint, device: str = "cpu", llm_dtype: str | None = None):
    """The Q&A model of a checkpoint folder (imported lazily: torch/transformers are heavy); ``llm_dtype`` None = the
    checkpoint's, in fp32 where bf16 is not native (``ChorusQAModel.from_pretrained``)."""
    from .model import ChorusQAModel

    return ChorusQAModel.from_pretrained(checkpoint, device=device, llm_dtype=llm_dtype)


def group_by_scene(examples: Sequence[QAExample]) -> dict[str, list[QAExample]]:
    """Examples per scene_id, scenes in first-appearance order, questions in file order."""
    groups: dict[str, list[QAExample]] = defaultdict(list)
    for ex in examples:
        groups[ex.scene_id].append(ex)
    return dict(groups)


def _batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SceneFeatureLoader:
    """(features [N, C], means [N, 3]) per scene id: the frozen encoder (or raw Gaussian attributes)
    applied to ``DATA/scenes/<scene_id>``, through the per-scene feature cache when `cache_root` is set.
    For a model with "objects" pooling (``model_config``), also the segments [N] and colours [N, 3]."""

    def __init__(self, data_dir, encoder_ref: str | None, cache_root=None, expected_hash: str | None = None,
                 checkpoint=None, device: str = "cpu", model_config=None):
        from .feature_cache import RAW_FEATURES, FeatureCache, SceneFeatureSource

        encoder_ref = encoder_ref or RAW_FEATURES
        if encoder_ref != RAW_FEATURES and checkpoint is not None and not Path(encoder_ref).is_absolute():
            # a relative reference is resolved beside the Q&A checkpoint first ("encoder" must not mean ./encoder,
            # the package folder, when run from the repository root)
            beside = Path(checkpoint) / encoder_ref
            encoder_ref = str(beside) if (beside / "config.json").is_file() else encoder_ref
        self.data_dir = Path(data_dir)
        self.source = SceneFeatureSource(encoder_ref, device=device)
        if expected_hash is not None and expected_hash != self.source.encoder_hash:
            warnings.warn(
                f"encoder {encoder_ref}: hash {self.source.encoder_hash} differs from {expected_hash}, the one the "
                f"Q&A checkpoint was trained with; answers may be meaningless",
                stacklevel=2,
            )
        self.cache = FeatureCache(cache_root, self.source.encoder_hash) if cache_root is not None else None
        self.segmenter = None
        if model_config is not None:
            from .segments import make_segmenter

            self.segmenter = make_segmenter(model_config, encoder_ref)

    @classmethod
    def for_model(cls, model, data_dir, cache_root=None, checkpoint=None) -> "SceneFeatureLoader":
        config = model.config
        return cls(data_dir, config.encoder_ref, cache_root, config.encoder_hash, checkpoint, model_config=config)

    def __call__(self, scene_id: str) -> tuple:
        from data import load_scene

        loaded = []

        def scene():
            if not loaded:
                loaded.append(load_scene(scene_dir(self.data_dir, scene_id)))
            return loaded[0]

        def compute():
            return self.source(scene())

        features, means = compute() if self.cache is None else self.cache.get_or_compute(scene_id, compute)
        if self.segmenter is None:
            return features, means
        extra = self.segmenter.object_inputs(scene(), features)
        return features, means, extra["segments"], extra["colors"], extra["labels"]


def shuffled_scenes(scene_ids: Iterable[str]) -> dict[str, str]:
    """A derangement of the scene ids (each scene -> the next one in sorted order): the ``--shuffle-scenes`` control."""
    order = sorted(set(scene_ids))
    if len(order) < 2:
        raise ValueError(f"shuffling scenes needs at least two scenes, got {len(order)}")
    return dict(zip(order, order[1:] + order[:1]))


def predict_split(model, examples: Sequence[QAExample], data_dir, blind: bool, batch_size: int, max_new_tokens: int = 32,
                  features: Callable[[str], tuple] | None = None) -> dict[str, str]:
    """Greedy answers {question_id: text}: per scene, the scene tokens and the prompt prefix are
    computed once (``model.prepare_scene``) and its questions are answered in batches.

    features: scene_id -> (features [N, C], means [N, 3][, segments, colors, labels]); default `SceneFeatureLoader.for_model`
              without a cache. In blind mode no scene is loaded: the LLM answers from the
              question (and situation) alone.
    """
    from tqdm import tqdm

    if features is None and not blind:
        features = SceneFeatureLoader.for_model(model, data_dir)

    predictions: dict[str, str] = {}
    groups = group_by_scene(examples)
    with tqdm(total=len(examples), desc="blind Q&A" if blind else "scene Q&A", unit="q") as bar:
        for scene_id, scene_examples in groups.items():
            bar.set_postfix_str(scene_id)
            context = None if blind else model.prepare_scene(*features(scene_id))
            for batch in _batches(scene_examples, batch_size):
                situations = [ex.situation for ex in batch]
                answers = model.generate(
                    context,
                    [ex.question for ex in batch],
                    situations=situations if any(s is not None for s in situations) else None,
                    max_new_tokens=max_new_tokens,
                    blind=blind,
                    poses=[example_pose(ex) for ex in batch],
                )
                if len(answers) != len(batch):
                    raise RuntimeError(f"model.generate returned {len(answers)} answers for {len(batch)} questions")
                predictions.update({ex.question_id: str(a) for ex, a in zip(batch, answers)})
                bar.update(len(batch))
    return predictions


# ----------------------------------------------------------------------------- scoring and files


def score_examples(examples: Sequence[QAExample], predictions: dict[str, str], use_java: bool | None = None) -> dict:
    """`score_predictions` on examples, plus a per-dataset split when several sources are mixed."""
    gts = {ex.question_id: ex.answers for ex in examples}
    types = {ex.question_id: ex.type for ex in examples}
    scores = score_predictions(predictions, gts, types, use_java=use_java)
    sources = sorted({ex.source for ex in examples})
    if len(sources) > 1:
        scores["per_source"] = {}
        for source in sources:
            subset = [ex for ex in examples if ex.source == source]
            sub = score_predictions(
                {ex.question_id: predictions.get(ex.question_id, "") for ex in subset},
                {ex.question_id: ex.answers for ex in subset},
                use_java=use_java,
            )
            scores["per_source"][source] = sub["overall"]
    return scores


def write_predictions(path: Path, examples: Sequence[QAExample], predictions: dict[str, str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for ex in examples:
            row = {
                "question_id": ex.question_id,
                "scene_id": ex.scene_id,
                "question": ex.question,
                "prediction": predictions.get(ex.question_id, ""),
                "answers": ex.answers,
                "type": ex.type,
                "source": ex.source,
            }
            if ex.situation is not None:
                row["situation"] = ex.situation
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_predictions(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _gain(value, base) -> str:
    if value is None or base is None:
        return "n/a"
    diff = round(value - base, 2)
    return f"{diff + 0.0:+.2f}"  # + 0.0 turns -0.0 into 0.0


def render_markdown(metrics: dict, baseline: dict | None = None, baseline_label: str = "blind") -> str:
    """Markdown tables (overall, per type, per dataset) of a metrics.json dict, with a baseline when given."""
    run, scores = metrics["run"], metrics["scores"]
    mode = ("blind (no scene tokens)" if run.get("blind") else
            "another room's scene tokens (shuffled-scene control)" if run.get("shuffled_scenes") else "scene tokens")
    lines = [
        f"# Q&A benchmark: {run.get('split')} split, {mode}",
        "",
        f"- checkpoint: `{run.get('checkpoint')}`",
        f"- data: `{run.get('data')}` (kind {run.get('kind')}), {scores['n_scored']} questions scored"
        + (f", {scores['n_without_answers']} without answers skipped" if scores["n_without_answers"] else ""),
        f"- tokenizer: {scores['tokenizer']}; METEOR: {scores['meteor']}; scores in percent",
    ]
    if baseline is not None:
        lines.append(f"- baseline ({baseline_label}): `{baseline['run'].get('out')}`")
    base_scores = baseline["scores"] if baseline is not None else None

    lines += ["", "## Overall", ""]
    if base_scores is None:
        lines += ["| metric | value |", "|---|---:|"]
        lines += [f"| {label} | {_fmt(scores['overall'].get(m))} |" for m, label in MARKDOWN_METRICS.items()]
    else:
        lines += [f"| metric | this run | {baseline_label} | gain |", "|---|---:|---:|---:|"]
        for m, label in MARKDOWN_METRICS.items():
            v, b = scores["overall"].get(m), base_scores["overall"].get(m)
            lines.append(f"| {label} | {_fmt(v)} | {_fmt(b)} | {_gain(v, b)} |")

    def table(title: str, blocks: dict, base_blocks: dict | None):
        out = ["", f"## {title}", ""]
        header = "| | n | " + " | ".join(MARKDOWN_METRICS.values()) + " |"
        out += [header, "|---|---:|" + "---:|" * len(MARKDOWN_METRICS)]
        for name, block in blocks.items():
            cells = []
            for m in MARKDOWN_METRICS:
                cell = _fmt(block.get(m))
                base = (base_blocks or {}).get(name)
                if m in BASELINE_METRICS and base is not None and base.get(m) is not None and block.get(m) is not None:
                    cell += f" ({baseline_label} {_fmt(base[m])}, {_gain(block[m], base[m])})"
                cells.append(cell)
            out.append(f"| {name} | {block.get('n', 0)} | " + " | ".join(cells) + " |")
        return out

    lines += table("Per question type", scores["per_type"], base_scores["per_type"] if base_scores else None)
    if "per_source" in scores:
        lines += table("Per dataset", scores["per_source"], base_scores.get("per_source") if base_scores else None)
    run_line = f"{run.get('n_questions')} questions in {run.get('seconds', 0):.1f} s"
    lines += ["", f"_{run_line}, batch size {run.get('batch_size')}, created {run.get('created')}._", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- baselines


def _load_metrics(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _same_setting(a: dict, b: dict) -> bool:
    keys = ("checkpoint", "data", "split", "kind", "limit", "types")
    return all(a["run"].get(k) == b["run"].get(k) for k in keys)


def find_sibling_runs(out_dir: Path, metrics: dict, blind: bool) -> list[tuple[Path, dict]]:
    """Runs in the folders beside `out_dir` with the same checkpoint, data, split, kind, limit and types
    and the given blind flag, newest first."""
    found = []
    parent = Path(out_dir).resolve().parent
    if not parent.is_dir():
        return found
    for d in parent.iterdir():
        if not d.is_dir() or d.resolve() == Path(out_dir).resolve():
            continue
        other = _load_metrics(d)
        if other and "run" in other and bool(other["run"].get("blind")) == blind and _same_setting(other, metrics):
            found.append((d, other))
    found.sort(key=lambda item: (item[0] / "metrics.json").stat().st_mtime, reverse=True)
    return found


# ----------------------------------------------------------------------------- entry point


def select_types(examples: Sequence[QAExample], types: str) -> list[QAExample]:
    """The questions whose type is one of the comma-separated ``types`` (``--types``); unknown types are an error."""
    wanted = {t.strip() for t in types.split(",") if t.strip()}
    present = {ex.type for ex in examples}
    unknown = sorted(wanted - present)
    if not wanted or unknown:
        raise SystemExit(f"--types {types!r}: {'unknown ' + ', '.join(unknown) if unknown else 'no type given'}; "
                         f"this split has {', '.join(sorted(t for t in present if t))}")
    return [ex for ex in examples if ex.type in wanted]


def run_benchmark(
    model,
    examples: Sequence[QAExample],
    data_dir,
    out_dir,
    *,
    blind: bool = False,
    batch_size: int = 16,
    max_new_tokens: int = 32,
    compare: str | Path | None = None,
    run_info: dict | None = None,
    predictor: Predictor = predict_split,
    use_java: bool | None = None,
    features: Callable[[str], tuple] | None = None,
) -> dict:
    """Predict, score and write the three files into `out_dir`; return the metrics.json dict.

    features: scene_id -> (features, means) for `predict_split` (default: the model's encoder, uncached).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    kwargs = {"features": features} if features is not None else {}
    predictions = predictor(model, examples, data_dir, blind, batch_size, max_new_tokens=max_new_tokens, **kwargs)
    seconds = time.perf_counter() - start
    write_predictions(out_dir / "predictions.jsonl", examples, predictions)
    metrics = {
        "run": {
            **(run_info or {}),
            "data": str(Path(data_dir).resolve()),
            "blind": blind,
            "batch_size": batch_size,
            "max_new_tokens": max_new_tokens,
            "n_questions": len(examples),
            "n_scenes": len({ex.scene_id for ex in examples}),
            "seconds": round(seconds, 3),
            "questions_per_second": round(len(examples) / seconds, 3) if seconds > 0 else None,
            "out": str(out_dir),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        "scores": score_examples(examples, predictions, use_java=use_java),
    }

    baseline, label = None, "blind"
    if compare is not None:
        baseline = _load_metrics(Path(compare))
        if baseline is None:
            raise FileNotFoundError(f"--compare {compare}: no metrics.json there")
        label = "blind" if baseline["run"].get("blind") else f"compare ({Path(compare).name})"
    elif not blind:
        siblings = find_sibling_runs(out_dir, metrics, blind=True)
        baseline = siblings[0][1] if siblings else None
    if baseline is not None:
        metrics["baseline"] = {"out": baseline["run"].get("out"), "overall": baseline["scores"]["overall"]}
    with open(out_dir / "metrics.json", "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    (out_dir / "metrics.md").write_text(render_markdown(metrics, baseline, label), encoding="utf-8")

    if blind:  # a new blind baseline: refresh the tables of the scene runs it belongs to
        for run_dir, other in find_sibling_runs(out_dir, metrics, blind=False):
            other["baseline"] = {"out": str(out_dir), "overall": metrics["scores"]["overall"]}
            with open(run_dir / "metrics.json", "w", encoding="utf-8") as f:
                json.dump(other, f, indent=2)
            (run_dir / "metrics.md").write_text(render_markdown(other, metrics), encoding="utf-8")
    return metrics


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m chorus_qa.benchmark",
        description="Answer every question of a Q&A split with a checkpoint and write predictions.jsonl, "
        "metrics.json and metrics.md (EM@1, refined EM, BLEU, CIDEr, ROUGE-L, METEOR; overall and per type).",
    )
    p.add_argument("--checkpoint", required=True, help="Q&A checkpoint folder (ChorusQAModel.save_pretrained)")
    p.add_argument("--data", required=True, help="data folder with qa/ (ScanQA / SQA3D / synthetic files) and scenes/<scene_id>")
    p.add_argument("--split", default="val", help="split name in the file names, e.g. val, test_w_obj (default: val)")
    p.add_argument("--out", required=True, help="output folder for predictions.jsonl, metrics.json, metrics.md")
    p.add_argument("--kind", default="auto", choices=["auto", "synth", "scanqa", "sqa3d"], help="which Q&A files to read (default: every format present)")
    p.add_argument("--blind", action="store_true", help="answer without scene tokens (the baseline of every result)")
    p.add_argument("--shuffle-scenes", action="store_true",
                   help="control: answer each question with another scene's tokens. A model that uses the scene "
                   "falls towards its blind score; one that ignores it keeps its score")
    p.add_argument("--batch-size", type=int, default=16, help="questions per generate call (default: 16)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="answer length limit (default: 32)")
    p.add_argument("--limit", type=int, default=None, help="only the first N questions of the split (after --types)")
    p.add_argument("--types", default=None, help="only these question types, comma-separated (e.g. size,material)")
    p.add_argument("--compare", default=None, help="a run folder to show as the baseline (default: a blind run beside --out)")
    p.add_argument("--feature-cache", default=None,
                   help="folder of cached per-scene encoder features (default: DATA/feature_cache); 'none' disables it")
    p.add_argument("--device", default="cpu", help="device for the encoder and the model (default: cpu)")
    p.add_argument("--llm-dtype", default=None, choices=("float32", "bfloat16", "float16"),
                   help="the frozen LLM's dtype (default: the checkpoint's; a bf16 one runs in fp32 on a CPU without "
                   "native bf16, ~6x faster there)")
    p.add_argument("--no-java", action="store_true", help="skip Java even if present (python tokeniser, METEOR unavailable)")
    p.add_argument("--seed", type=int, default=0, help="torch seed (generation is greedy; this fixes any sampling in scene loading)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size <= 0:
        raise SystemExit(f"--batch-size {args.batch_size}: expected a positive integer")
    if args.blind and args.shuffle_scenes:
        raise SystemExit("--blind and --shuffle-scenes exclude each other (a blind run has no scene to shuffle)")
    if args.limit is not None and args.limit <= 0:
        raise SystemExit(f"--limit {args.limit}: expected a positive integer")
    examples = load_qa_split(args.data, args.split, args.kind)
    if args.types is not None:
        examples = select_types(examples, args.types)
    if args.limit is not None:
        examples = examples[: args.limit]
    if not examples:
        raise SystemExit(f"no questions in split {args.split!r} under {args.data}")

    import torch

    torch.manual_seed(args.seed)
    model = load_model(args.checkpoint, device=args.device, llm_dtype=args.llm_dtype)
    if hasattr(model, "eval"):
        model.eval()
    features = None
    if not args.blind:
        cache_root = None if args.feature_cache == "none" else Path(args.feature_cache or Path(args.data) / "feature_cache")
        features = SceneFeatureLoader(args.data, model.config.encoder_ref, cache_root, model.config.encoder_hash,
                                      checkpoint=args.checkpoint, device=args.device, model_config=model.config)
    run_info = {"checkpoint": str(Path(args.checkpoint).resolve()), "split": args.split, "kind": args.kind,
                "limit": args.limit, "types": args.types, "seed": args.seed, "llm_dtype": getattr(getattr(model, "config", None), "llm_dtype", None),
                "encoder_hash": None if features is None else features.source.encoder_hash}
    if args.shuffle_scenes:
        try:
            swap = shuffled_scenes(ex.scene_id for ex in examples)
        except ValueError as e:
            raise SystemExit(f"--shuffle-scenes: {e}") from None
        loader = features
        features = lambda scene_id: loader(swap[scene_id])  # noqa: E731
        run_info["shuffled_scenes"] = swap
    with torch.inference_mode():
        metrics = run_benchmark(
            model,
            examples,
            args.data,
            args.out,
            blind=args.blind,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            compare=args.compare,
            run_info=run_info,
            use_java=False if args.no_java else None,
            features=features,
        )
    overall = metrics["scores"]["overall"]
    summary = ", ".join(f"{m} {_fmt(overall.get(m))}" for m in ("EM@1", "refined_EM", "CIDEr", "METEOR"))
    print(f"{args.out}: {metrics['scores']['n_scored']} questions scored: {summary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
