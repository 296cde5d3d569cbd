"""Q&A training throughput of packing settings: seconds a step and questions a second, on the real recipe.

    python benchmarks/bench_qa_train.py --config configs/qa_synth.yaml --set data_dir=runs/qa1k/qa_data \
        --settings 8x6 4x12 [--steps 12] [--warmup 2] [--out benchmarks/results/bench_qa_train.json]

A setting ``BxQ`` is ``batch_size`` B sequences of ``questions_per_sequence`` Q questions each. Every setting
trains (stage 2: projector + relation layers + LoRA, AdamW, the config's bf16) on batches packed from the full
training split exactly as ``chorus_qa/train_qa.py`` packs them, on the cached pooled scenes (run the trainer's
pooling first, or this script pools what is missing). Settings take turns step by step, so a machine whose speed
drifts (shared hosts) slows all of them alike. Reported per setting: median and mean seconds a step, questions and
padded tokens a step, questions a second, and the steps and minutes one epoch over the training split would take.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.atomic import write_json  # noqa: E402

import torch  # noqa: E402


def parse_setting(text: str) -> tuple[int, int]:
    try:
        b, q = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"setting {text!r}: expected BxQ, e.g. 8x6") from None
    if b < 1 or q < 1:
        raise argparse.ArgumentTypeError(f"setting {text!r}: B and Q must be >= 1")
    return b, q


def cpu_name() -> str:
    """The CPU's model name (hosts differ between runs: a step took 3.7 s on one and 6.7 s on another)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/qa_synth.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument("--settings", type=parse_setting, nargs="+", default=[(8, 6), (4, 12)])
    ap.add_argument("--steps", type=int, default=12, help="timed steps per setting")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per setting first")
    ap.add_argument("--out", default="benchmarks/results/bench_qa_train.json")
    args = ap.parse_args(argv)

    from tqdm import tqdm

    from chorus_qa.datasets import load_qa_split
    from chorus_qa.feature_cache import SceneFeatureSource
    from chorus_qa.model import ChorusQAModel, QAModelConfig
    from chorus_qa.train_qa import load_config, make_packed_batch, make_scene_store, pack_by_scene

    cfg = load_config(args.config, args.set)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_ex = [e for e in load_qa_split(cfg.data_dir, cfg.train_split, cfg.qa_kind) if e.answers]
    if not train_ex:
        ap.error(f"{cfg.data_dir}: no answered questions in split {cfg.train_split!r}")
    source = SceneFeatureSource(cfg.encoder)
    model_cfg = QAModelConfig.from_dict({**cfg.model, "feature_dim": source.out_dim, "encoder_ref": cfg.encoder,
                                         "encoder_hash": source.encoder_hash,
                                         "llm_dtype": "bfloat16" if cfg.bf16 else "float32"})
    store = make_scene_store(cfg, source, model_cfg)
    model = ChorusQAModel.build(model_cfg)
    model.train()
    model.set_trainable(2)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    plans = {}
    for b, q in args.settings:
        groups = pack_by_scene(train_ex, q, random.Random(0))
        batches = [groups[i:i + b] for i in range(0, len(groups), b)][: args.warmup + args.steps]
        store.precompute([train_ex[i].scene_id for batch in batches for g in batch for i in g], progress=False)
        plans[f"{b}x{q}"] = {"batch_size": b, "questions_per_sequence": q, "sequences": len(groups),
                             "batches": batches, "seconds": [], "questions": [], "tokens": []}
    rng = random.Random(0)
    seen = {}  # the decoder's input [B, T, H] of the last step: every position, situated scene tokens included
    model.causal_lm.get_decoder().register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(shape=tuple(kwargs["inputs_embeds"].shape)), with_kwargs=True)
    rounds = args.warmup + args.steps
    for r in tqdm(range(rounds), desc="rounds (one step of every setting)", unit="round"):
        for plan in plans.values():
            if r >= len(plan["batches"]):
                continue
            groups = [[train_ex[i] for i in g] for g in plan["batches"][r]]
            batch = make_packed_batch(groups, store, rng)
            t0 = time.perf_counter()
            loss = model(batch)
            loss.backward()
            opt.step()
            opt.zero_grad()
            dt = time.perf_counter() - t0
            if r >= args.warmup:
                plan["seconds"].append(dt)
                plan["questions"].append(sum(len(g) for g in groups))
                plan["tokens"].append(seen["shape"][0] * seen["shape"][1])

    results = {}
    for name, p in plans.items():
        if not p["seconds"]:
            continue
        med = statistics.median(p["seconds"])
        q_step = statistics.mean(p["questions"])
        steps = -(-p["sequences"] // p["batch_size"])
        results[name] = {"batch_size": p["batch_size"], "questions_per_sequence": p["questions_per_sequence"],
                         "median_s_per_step": round(med, 3), "mean_s_per_step": round(statistics.mean(p["seconds"]), 3),
                         "questions_per_step": round(q_step, 1), "padded_tokens_per_step": round(statistics.mean(p["tokens"])),
                         "questions_per_s": round(sum(p["questions"]) / sum(p["seconds"]), 2),
                         "epoch_steps": steps, "epoch_minutes": round(steps * statistics.mean(p["seconds"]) / 60, 1),
                         "timed_steps": len(p["seconds"])}
    out = {"config": args.config, "overrides": args.set, "train_questions": len(train_ex),
           "threads": torch.get_num_threads(), "machine": cpu_name(),
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "settings": results}
    write_json(Path(args.out), out)
    for name, r in results.items():
        print(f"{name}: {r['median_s_per_step']} s/step (mean {r['mean_s_per_step']}), {r['questions_per_step']} questions "
              f"and {r['padded_tokens_per_step']} tokens a step, {r['questions_per_s']} questions/s; an epoch: "
              f"{r['epoch_steps']} steps, ~{r['epoch_minutes']} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
