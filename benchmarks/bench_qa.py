"""Scene Q&A speed on the real SmolLM2-135M-Instruct (CPU by default).

Measures: training step time (stage 2: projector + scene tokenizer + LoRA) for fp32 and
bf16 LLM weights; greedy generation tokens/s; time to first token of a follow-up
question with the scene's prefix KV cache reused vs recomputed; scene preparation time.

    python benchmarks/bench_qa.py [--tokens 128] [--gaussians 50000] [--out benchmarks/results/bench_qa.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.atomic import write_json  # noqa: E402

import torch  # noqa: E402

from adapters.llm import cpu_bf16_facts  # noqa: E402

QUESTIONS = ["what colour is the chair next to the bed?", "how many lamps are in the room?",
             "what is on top of the desk?", "where is the plant?", "is the door open or closed?",
             "what is the largest object in the room?", "which object is closest to the window?",
             "what colour are the curtains?"]
ANSWERS = ["red", "two", "a laptop", "next to the sofa", "closed", "bed", "desk", "blue"]


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def build(dtype: str, k: int, feature_dim: int):
    from chorus_qa.model import ChorusQAModel, QAModelConfig

    cfg = QAModelConfig(feature_dim=feature_dim, llm="smollm2-135m", llm_dtype=dtype, num_scene_tokens=k)
    return ChorusQAModel.build(cfg)


def bench_train(model, feats, means, batch_size: int, repeats: int) -> dict:
    from chorus_qa.model import QABatch

    model.train()
    model.set_trainable(2)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    n = len(means)
    batch = QABatch(feats.repeat(batch_size, 1), means.repeat(batch_size, 1),
                    torch.arange(1, batch_size + 1) * n, QUESTIONS[:batch_size], ANSWERS[:batch_size])
    ids, _ = model.build_token_ids(batch.questions, batch.answers)

    def step():
        loss = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()

    times = timed(step, repeats)
    model.eval()
    return {"batch_size": batch_size, "seq_len": int(ids.shape[1]), "step_s": round(statistics.median(times), 3),
            "all_s": [round(t, 3) for t in times]}


def bench_generation(model, feats, means, repeats: int, new_tokens: int = 16) -> dict:
    """Decode speed (forced length: stop tokens ignored) and follow-up TTFT with/without prefix reuse."""
    res = {}
    with torch.inference_mode():
        t0 = time.perf_counter()
        scene = model.scene_embeddings(feats, means)
        res["scene_tokens_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        context = model.prepare_scenes(scene)
        res["prefix_prefill_s"] = round(time.perf_counter() - t0, 3)
        res["prefix_len"] = context.length
        rows1 = torch.zeros(1, dtype=torch.long)

        def first_token_reuse():
            next(iter(model.decode_steps(context, rows1, QUESTIONS[1:2], max_new_tokens=1)))

        def first_token_no_reuse():
            fresh = model.prepare_scenes(scene)
            next(iter(model.decode_steps(fresh, rows1, QUESTIONS[1:2], max_new_tokens=1)))

        reuse = timed(first_token_reuse, repeats)
        no_reuse = timed(first_token_no_reuse, repeats)
        res["ttft_followup_reuse_s"] = round(statistics.median(reuse), 4)
        res["ttft_followup_no_reuse_s"] = round(statistics.median(no_reuse), 4)
        res["ttft_speedup"] = round(statistics.median(no_reuse) / statistics.median(reuse), 2)

        stops = model.stop_token_ids
        model.stop_token_ids = []  # force exactly new_tokens steps for a clean tokens/s
        try:
            for b in (1, 8):
                rows = torch.zeros(b, dtype=torch.long)

                def run():
                    steps = model.decode_steps(context, rows, QUESTIONS[:b], max_new_tokens=new_tokens)
                    next(steps)
                    t_first = time.perf_counter()
                    count = sum(1 for _ in steps)
                    return count, time.perf_counter() - t_first

                run()
                count, secs = run()
                res[f"decode_tokens_per_s_batch{b}"] = round(b * count / secs, 1)
                res[f"decode_ms_per_step_batch{b}"] = round(1000 * secs / count, 1)
        finally:
            model.stop_token_ids = stops
        t0 = time.perf_counter()
        answers = model.generate(context, QUESTIONS, max_new_tokens=8)
        res["generate_8q_s"] = round(time.perf_counter() - t0, 3)
        res["sample_answers_untrained"] = answers[:3]
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=128, help="scene tokens K (default 128)")
    p.add_argument("--gaussians", type=int, default=50000, help="Gaussians in the random scene (default 50000)")
    p.add_argument("--feature-dim", type=int, default=512, help="per-Gaussian feature width (default 512)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", default="benchmarks/results/bench_qa.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    feats, means = torch.randn(args.gaussians, args.feature_dim), torch.rand(args.gaussians, 3) * 6

    t0 = time.perf_counter()
    from adapters.llm import load_llm

    load_llm("smollm2-135m")
    load_s = time.perf_counter() - t0
    results = {
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_avg_1min_at_start": round(os.getloadavg()[0], 2), "torch": torch.__version__,
                    "python": platform.python_version(), **cpu_bf16_facts()},
        "llm": "SmolLM2-135M-Instruct (dequantized Q4_1 GGUF, cached safetensors)",
        "llm_load_s_cached": round(load_s, 2),
        "scene": {"gaussians": args.gaussians, "feature_dim": args.feature_dim, "scene_tokens": args.tokens},
        "lora": {"r": 16, "alpha": 32, "targets": "q,k,v,o,gate,up,down"},
    }
    for dtype in ("float32", "bfloat16"):
        model = build(dtype, args.tokens, args.feature_dim)
        entry = {"train": [bench_train(model, feats, means, b, args.repeats) for b in (4, 8)]}
        entry["inference"] = bench_generation(model, feats, means, max(args.repeats, 5))
        results[dtype] = entry
        print(json.dumps({dtype: entry}, indent=1), flush=True)
        del model
    results["machine"]["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    out = Path(args.out)
    write_json(out, results)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
