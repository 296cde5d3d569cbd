"""How loud each part of a Q&A checkpoint's object tokens is: does the learned residual drown the words?

    python benchmarks/token_norms.py --run C=runs/qa_ctok_release --run rel=runs/qa_rel_release \
        --pooled runs/qa1k/qa_data/feature_cache/<encoder>_objects-<segments>_k32_m16384_s0_v4_r0 \
        [--scenes 40] [--out benchmarks/results/token_norms.json]

With ``object_names`` an object token is its class name's word embedding plus the projector's output (a residual
with the box, colour and features; the projector's last layer starts at zero). The LLM reads the name only while
the residual stays small next to it. Per checkpoint, averaged over the real (non-empty) object slots of the
inference pooling (variant 0) of ``--scenes`` scenes of the trainer's pooled cache: the L2 norm of the scene
tokenizer's output, of the projector residual, of the class-name word, and the ratio residual / name word.
(Release C: 1.21 / 2.62 = 0.46; with the relation layers of ``chorus_qa.relations``: 3.29 / 2.62 = 1.26;
release D, relation tokens: 1.17 / 2.62 = 0.44; benchmarks/results/token_norms.json.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.atomic import write_json  # noqa: E402

import torch  # noqa: E402


@torch.no_grad()
def token_norms(model, pooled_scenes) -> dict:
    """Mean L2 norms over the non-empty object slots of ``pooled_scenes`` (see the module docstring)."""
    from chorus_qa.scene_tokens import pooled_valid

    if not model.config.object_names:
        raise ValueError("token_norms: the checkpoint has no object_names (no class-name word to compare with)")
    parts = {"tokenizer_output": [], "projector_residual": [], "projector_output_uncapped": [], "name_word": []}
    for p in pooled_scenes:
        valid = pooled_valid(p)
        tokens, _ = model.scene_tokenizer.embed_pooled(p)
        parts["tokenizer_output"].append(tokens[valid].float().norm(dim=-1))
        parts["projector_residual"].append(model.object_residual(tokens)[valid].float().norm(dim=-1))  # after any residual_cap
        parts["projector_output_uncapped"].append(model.projector(tokens)[valid].float().norm(dim=-1))
        names = model._lookup(model.name_embeds, [p.labels], "object_names", "class labels")[0]  # -1: the zero row
        parts["name_word"].append(names[valid].float().norm(dim=-1))
    out = {k: float(torch.cat(v).mean()) for k, v in parts.items()}
    out["residual_over_name"] = out["projector_residual"] / out["name_word"]
    out["object_slots"] = int(sum(len(v) for v in parts["name_word"]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="NAME=CHECKPOINT_DIR (repeatable)")
    ap.add_argument("--pooled", required=True, help="a pooled feature-cache folder of the trainer (*.safetensors)")
    ap.add_argument("--scenes", type=int, default=40)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from chorus_qa.model import ChorusQAModel

    files = sorted(Path(args.pooled).glob("*.safetensors"))[: args.scenes]
    if not files:
        raise SystemExit(f"{args.pooled}: no cached pooled scenes (*.safetensors)")
    from safetensors.torch import load_file

    from chorus_qa.scene_tokens import pooled_from_tensors

    scenes = [pooled_from_tensors(load_file(str(f))) for f in files]  # the inference pooling (variant 0)
    result = {"pooled": args.pooled, "scenes": len(scenes), "runs": {}}
    for spec in args.run:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--run {spec!r}: expected NAME=CHECKPOINT_DIR")
        model = ChorusQAModel.from_pretrained(path).eval()
        result["runs"][name] = {"checkpoint": path, **token_norms(model, scenes)}
        r = result["runs"][name]
        print(f"{name}: residual {r['projector_residual']:.2f}, name word {r['name_word']:.2f}, "
              f"ratio {r['residual_over_name']:.2f} ({r['object_slots']} object slots)")
    if args.out:
        write_json(Path(args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
