#!/usr/bin/env bash
# The 228-room encoder (benchmarks/results/pretrain_probe_228_warm.md: held-out zero-shot mIoU 68.2, linear probe
# 66.4), from nothing, as four benchmarks/pretrain_probe.py runs over one growing data folder. Each run starts
# from the weights of the one before (new optimizer and OneCycle schedule) and every stage is resumable:
# re-running skips finished work.
#
#   1. 60 base rooms (world seed 0: 48 train, 12 held out) + 60 of seed 1; 1500 steps  (pretrain_probe_more.md)
#   2. the same 108 train rooms, 500 more steps                                         (pretrain_probe_more_warm.md)
#   3. + 60 rooms of seed 3 (168 train rooms), 1000 more steps                          (pretrain_probe_168_warm.md)
#   4. + 60 rooms of seed 4 (228 train rooms), 1500 more steps; held-out evaluation       (pretrain_probe_228_warm.md)
#
# World seed 2 is the Q&A world (data.synth.dataset.QA_WORLD_SEED): no Q&A room is ever pretrained on.
# Cost on a 2-core CPU: generating + lifting 228 rooms ~1.5 h, 4500 steps ~4 h, evaluation ~15 min.
# The encoder ends up in WORK/s4/pretrain (export: scripts/export_demo.py encoder --run WORK/s4/pretrain).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=${WORK:-runs/enc228}
OUT_JSON=${OUT_JSON:-$WORK/pretrain_probe_228.json}
DATA="$WORK/synth"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
pp() { "$PY" benchmarks/pretrain_probe.py --data-dir "$DATA" "$@"; }
last() { printf '%s/pretrain/checkpoints/step_%07d' "$1" "$2"; }

pp --work "$WORK/s1" --extra-train-rooms 60 --steps 1500 --stages data,lift,train --out "$WORK/s1.json"
pp --work "$WORK/s2" --extra-train-rooms 60 --steps 500 --init-from "$(last "$WORK/s1" 1500)" --stages train --out "$WORK/s2.json"
pp --work "$WORK/s3" --extra-train-rooms 120 --steps 1000 --init-from "$(last "$WORK/s2" 500)" --stages data,lift,train \
   --out "$WORK/s3.json"
pp --work "$WORK/s4" --extra-train-rooms 180 --steps 1500 --init-from "$(last "$WORK/s3" 1000)" \
   --stages data,lift,train,eval,fit --out "$OUT_JSON"
echo "encoder: $WORK/s4/pretrain (results: $OUT_JSON)"
