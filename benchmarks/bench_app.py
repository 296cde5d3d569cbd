"""App timings: start-up, scene encoding, time to first token and to the full answer, per demo room.

    python benchmarks/bench_app.py                      # checkpoints/demo (or says it is missing)
    python benchmarks/bench_app.py --checkpoint DIR     # any Q&A checkpoint folder
    python benchmarks/bench_app.py --tiny               # a tiny random-weight checkpoint (plumbing only)

Writes benchmarks/results/bench_app.json. Uses the same service object app.py wires (no browser, no HTTP):
start-up = demo rooms ready + models loaded; encode = the first open of a room (encoder + scene tokens +
prefix KV cache + language features), measured with an empty feature cache; questions = each room's example
questions, asked after the room is open.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from data.atomic import write_json  # noqa: E402


def build_stand_in_checkpoint(root: Path) -> Path:
    """Random weights with the demo recipe's shapes (small encoder, SmolLM2-135M, 64 scene tokens, LoRA r16):
    the timings of the real demo checkpoint, none of its answers. Never used by the app itself."""
    import torch

    from chorus_qa.feature_cache import encoder_checkpoint_hash
    from chorus_qa.model import ChorusQAModel, QAModelConfig
    from encoder import ChorusEncoder, EncoderConfig
    from encoder.heads import HeadsConfig, MultiTeacherHeads

    torch.manual_seed(0)
    parts = root.parent / "parts"
    enc = ChorusEncoder(EncoderConfig.small())
    enc.save_pretrained(parts / "encoder")
    config = QAModelConfig(feature_dim=enc.out_dim, llm="smollm2-135m", num_scene_tokens=64, token_dim=256,
                           num_neighbors=32, max_points=16384, encoder_ref=str(root / "encoder"),
                           encoder_hash=encoder_checkpoint_hash(parts / "encoder"))
    ChorusQAModel.build(config).save_pretrained(root)
    os.replace(parts / "encoder", root / "encoder")
    MultiTeacherHeads(HeadsConfig(in_dim=enc.out_dim, teacher_dims={"caption_minilm": 384})).save_pretrained(root / "heads")
    return root


def time_answer(service, key: str, question: str) -> dict:
    t0 = time.perf_counter()
    first, text = None, ""
    for text in service.ask(key, question):
        if first is None:
            first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return {"question": question, "answer": text, "first_token_s": round(first or total, 4), "full_answer_s": round(total, 4)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/demo")
    p.add_argument("--tiny", action="store_true", help="benchmark a tiny random-weight checkpoint built in a temp folder")
    p.add_argument("--stand-in", action="store_true",
                   help="random weights with the demo checkpoint's shapes (small encoder + SmolLM2): timings only")
    p.add_argument("--questions", type=int, default=3, help="example questions per room")
    p.add_argument("--rooms", type=int, default=None, help="demo rooms to time (default all)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_app.json"))
    args = p.parse_args(argv)

    import torch

    from adapters.llm import cpu_bf16_facts
    from chorus_qa.app_service import AppConfig, ChorusAppService
    from chorus_qa.demo import DEMO_SEEDS

    scratch = Path(tempfile.mkdtemp(prefix="bench-app-"))
    checkpoint = args.checkpoint
    if args.tiny:
        sys.path.insert(0, str(ROOT / "tests"))
        from test_app import build_tiny_checkpoint

        checkpoint = str(build_tiny_checkpoint(scratch / "tiny" / "demo"))
    elif args.stand_in:
        checkpoint = str(build_stand_in_checkpoint(scratch / "stand_in" / "demo"))
    seeds = DEMO_SEEDS[: args.rooms] if args.rooms else DEMO_SEEDS
    # a fresh cache for features and viewer files (the demo rooms themselves are generated there too)
    config = AppConfig(checkpoint=checkpoint, demo_seeds=seeds, cache_dir=str(scratch / "cache"))
    t0 = time.perf_counter()
    service = ChorusAppService(config)
    startup = time.perf_counter() - t0
    result = {
        "benchmark": "bench_app",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, **cpu_bf16_facts()},
        "llm_dtype": service.models.session.model.config.llm_dtype if service.models else None,
        "checkpoint": ("tiny random-weight checkpoint (tests/test_app.py): plumbing only" if args.tiny else
                       "stand-in: random weights, demo shapes (small encoder, SmolLM2-135M, 64 scene tokens, LoRA r16): "
                       "timings only" if args.stand_in else checkpoint),
        "checkpoint_loaded": service.ready,
        "status": service.status_markdown(),
        "startup_s": round(startup, 3),
        "startup_parts_s": {k: round(v, 3) for k, v in service.timings.items()},
        "rooms": [],
    }
    if service.ready:
        for room in service.demo_rooms:
            t0 = time.perf_counter()
            view = service.open_demo(room.key)
            encode = time.perf_counter() - t0
            t0 = time.perf_counter()
            service.open_demo(room.key)
            reopen = time.perf_counter() - t0
            answers = [time_answer(service, view.key, q) for q in room.example_questions[: args.questions]]
            search = None
            if service.models.search is not None:
                t0 = time.perf_counter()
                hit = service.search(view.key, "lamp")
                search = {"query": "lamp", "seconds": round(time.perf_counter() - t0, 3), "matches": hit.num_matches}
            row = {"room": room.title, "gaussians": room.num_gaussians, "encode_s": round(encode, 3),
                   "reopen_s": round(reopen, 4), "questions": answers,
                   "first_token_s_mean": round(sum(a["first_token_s"] for a in answers) / len(answers), 4),
                   "full_answer_s_mean": round(sum(a["full_answer_s"] for a in answers) / len(answers), 4),
                   "search": search}
            result["rooms"].append(row)
            print(f"{room.title}: encode {encode:.2f} s, first token {row['first_token_s_mean']:.3f} s, "
                  f"answer {row['full_answer_s_mean']:.3f} s", flush=True)
    else:
        print(f"no model: {service.load_error}", flush=True)
    out = Path(args.out)
    write_json(out, result)
    print(f"startup {startup:.2f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
