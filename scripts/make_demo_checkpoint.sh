#!/usr/bin/env bash
# The recipe behind checkpoints/demo/ (run by `make demo-checkpoint`). Every step is resumable:
# re-running skips finished work. WORK holds data and runs (not committed); OUT is the release folder.
#
#   1. encoder: benchmarks/pretrain_probe.py = 60 synthetic rooms (density 0.3), offline-teacher lifting,
#      1500 steps of multi-teacher pretraining of the `small` encoder, zero-shot + linear-probe evaluation;
#   2. the encoder (fp16) + its teacher projectors are exported into OUT;
#   3. Q&A data: 1000 more synthetic rooms with questions (another seed: no overlap with step 1's rooms);
#   4. Q&A training (configs/qa_synth.yaml: object tokens with class names, colour-word and relation tokens, projector + LoRA on SmolLM2-135M over
#      all training questions once, 6 questions per multi-turn sequence) on the frozen encoder;
#   5. benchmark on val: with scene tokens, without (blind), with another room's tokens (shuffled), and the model card.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=${WORK:-runs/demo}
OUT=${OUT:-checkpoints/demo}
QA_SCENES=${QA_SCENES:-1000}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1   # pretraining/lifting pin one torch thread themselves
mkdir -p "$WORK" "$OUT"
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

stamp "1/5 pretraining the encoder (benchmarks/pretrain_probe.py)"
"$PY" benchmarks/pretrain_probe.py --work "$WORK/pretrain" --vocab none   # the released encoder predates the vocabulary term

stamp "2/5 exporting the encoder and its teacher heads to $OUT"
"$PY" scripts/export_demo.py encoder --run "$WORK/pretrain/pretrain" --out "$OUT"

stamp "3/5 Q&A data: $QA_SCENES rooms"
if [ ! -f "$WORK/qa_data/splits/val.txt" ]; then
  "$PY" -m data.synth --scenes "$QA_SCENES" --out "$WORK/qa_data" --seed 2 --density 0.3 --workers 2  # data.synth.dataset.QA_WORLD_SEED
fi

stamp "4/5 Q&A training"
"$PY" chorus_qa/train_qa.py --config configs/qa_synth.yaml \
  --set data_dir="$WORK/qa_data" --set encoder="$OUT/encoder" --set out_dir="$WORK/qa"

stamp "5/5 benchmark (scene tokens and blind) + export"
"$PY" scripts/export_demo.py qa --run "$WORK/qa" --out "$OUT"
"$PY" -m chorus_qa.benchmark --checkpoint "$OUT" --data "$WORK/qa_data" --split val --out "$WORK/bench/blind" --blind
"$PY" -m chorus_qa.benchmark --checkpoint "$OUT" --data "$WORK/qa_data" --split val --out "$WORK/bench/scene" --feature-cache none
"$PY" -m chorus_qa.benchmark --checkpoint "$OUT" --data "$WORK/qa_data" --split val --out "$WORK/bench/shuffled" --shuffle-scenes --feature-cache none
"$PY" scripts/export_demo.py card --out "$OUT" --bench "$WORK/bench" --run "$WORK/qa" --pretrain-results benchmarks/results/pretrain_probe.json \
  --seconds $(( $(date +%s) - start ))
stamp "done: $OUT"
