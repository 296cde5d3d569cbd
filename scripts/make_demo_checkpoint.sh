#!/usr/bin/env bash
# The recipe behind checkpoints/demo/ (run by `make demo-checkpoint`). Every step is resumable:
# re-running skips finished work. WORK holds data and runs (not committed); OUT is the release folder.
#
#   1. encoder: benchmarks/pretrain_probe.py = 60 synthetic rooms (density 0.3), offline-teacher lifting,
#      1500 steps of multi-teacher pretraining of the `small` encoder, zero-shot + linear-probe evaluation;
#   2. the encoder (fp16) + its teacher projectors are exported into OUT;
#   3. Q&A data: 1000 more synthetic rooms with questions (another seed: no overlap with step 1's rooms);
#   4. Q&A training (QA_CONFIG, default configs/qa_synth.yaml: object tokens with class names, colour-word and
#      relation tokens, projector + LoRA on SmolLM2-135M over QA_EXAMPLES training questions once (default 50000 =
#      all ~40k), 6 questions per multi-turn sequence) on the frozen encoder. QA_CONFIG=configs/qa_synth_situated.yaml
#      adds the pose-aware situated tokens and the residual cap (runs E/F/G in the README: on the release encoder with
#      QA_EXAMPLES=18000 it scored 53.9 % against this default's 57.5; run F's 70.9 was on the 228-room encoder);
#   5. benchmark on val: with scene tokens, without (blind), with another room's tokens (shuffled), and the model card.
# ENCODER=228 swaps step 1 for scripts/pretrain_228.sh (the 228-room encoder: ~6 h on 2 cores instead of ~1 h);
# ENCODER=228 QA_CONFIG=configs/qa_synth_situated.yaml is run F's recipe (~3.5 h of Q&A training on an AVX2 host).
# QA_CONTINUE_LR=2.5e-4 (a stage-2 peak lr, written with a '.') adds step 4b: a second Q&A run that starts from the
# first one's weights (init_from) over the training questions it did not see (exclude_seen_by), so a QA_EXAMPLES
# subset run can be finished in a second sitting; the release is then exported from that run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=${WORK:-runs/demo}
OUT=${OUT:-checkpoints/demo}
QA_SCENES=${QA_SCENES:-1000}
QA_CONFIG=${QA_CONFIG:-configs/qa_synth.yaml}
QA_EXAMPLES=${QA_EXAMPLES:-50000}
QA_CONTINUE_LR=${QA_CONTINUE_LR:-}
ENCODER=${ENCODER:-release}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1   # pretraining/lifting pin one torch thread themselves
mkdir -p "$WORK" "$OUT"
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

case "$ENCODER" in
  release)
    stamp "1/5 pretraining the encoder (benchmarks/pretrain_probe.py)"
    "$PY" benchmarks/pretrain_probe.py --work "$WORK/pretrain" --vocab none   # the released encoder predates the vocabulary term
    ENC_RUN="$WORK/pretrain/pretrain"; PRETRAIN_JSON=benchmarks/results/pretrain_probe.json ;;
  228)
    stamp "1/5 pretraining the 228-room encoder (scripts/pretrain_228.sh)"
    WORK="$WORK/enc228" bash scripts/pretrain_228.sh
    ENC_RUN="$WORK/enc228/s4/pretrain"; PRETRAIN_JSON=benchmarks/results/pretrain_probe_228_warm.json ;;
  *) echo "ENCODER must be release or 228, not '$ENCODER'" >&2; exit 2 ;;
esac

stamp "2/5 exporting the encoder and its teacher heads to $OUT"
"$PY" scripts/export_demo.py encoder --run "$ENC_RUN" --out "$OUT"

stamp "3/5 Q&A data: $QA_SCENES rooms"
if [ ! -f "$WORK/qa_data/splits/val.txt" ]; then
  "$PY" -m data.synth --scenes "$QA_SCENES" --out "$WORK/qa_data" --seed 2 --density 0.3 --workers 2  # data.synth.dataset.QA_WORLD_SEED
fi

stamp "4/5 Q&A training"
"$PY" chorus_qa/train_qa.py --config "$QA_CONFIG" --set max_train_examples="$QA_EXAMPLES" \
  --set data_dir="$WORK/qa_data" --set encoder="$OUT/encoder" --set out_dir="$WORK/qa"
QA_RUN="$WORK/qa"
if [ -n "$QA_CONTINUE_LR" ]; then
  stamp "4b/5 Q&A training continued over the questions step 4 did not see (peak lr $QA_CONTINUE_LR)"
  "$PY" chorus_qa/train_qa.py --config "$QA_CONFIG" --set max_train_examples=null --set init_from="$WORK/qa/last" \
    --set exclude_seen_by="$WORK/qa" --set stage2.lr="$QA_CONTINUE_LR" \
    --set data_dir="$WORK/qa_data" --set encoder="$OUT/encoder" --set out_dir="$WORK/qa_rest"
  QA_RUN="$WORK/qa_rest"
fi

stamp "5/5 benchmark (scene tokens and blind) + export"
"$PY" scripts/export_demo.py qa --run "$QA_RUN" --out "$OUT"
"$PY" -m chorus_qa.benchmark --checkpoint "$OUT" --data "$WORK/qa_data" --split val --out "$WORK/bench/blind" --blind
"$PY" -m chorus_qa.benchmark --checkpoint "$OUT" --data "$WORK/qa_data" --split val --out "$WORK/bench/scene" --feature-cache none
"$PY" -m chorus_qa.benchmark --checkpoint "$OUT" --data "$WORK/qa_data" --split val --out "$WORK/bench/shuffled" --shuffle-scenes --feature-cache none
"$PY" scripts/export_demo.py card --out "$OUT" --bench "$WORK/bench" --run "$QA_RUN" --pretrain-results "$PRETRAIN_JSON" \
  --seconds $(( $(date +%s) - start ))
stamp "done: $OUT"
