#!/usr/bin/env bash
# The recipe behind checkpoints/demo/ (release L) (run by `make demo-checkpoint`). Every step is resumable:
# re-running skips finished work. WORK holds data and runs (not committed); OUT is the release folder.
#
#   1. encoder: scripts/pretrain_228.sh = the 228-room encoder (four warm-started pretraining stages, 4500 steps, of
#      the `small` encoder over 108 -> 228 synthetic rooms with offline-teacher lifting, zero-shot + linear-probe evaluation;
#      ~5 h on 2 cores). ENCODER=release runs benchmarks/pretrain_probe.py instead (60 rooms, 1500 steps, ~1 h: the
#      encoder of releases D-H);
#   2. the encoder (fp16) + its teacher projectors are exported into OUT;
#   3. Q&A data: 1000 more synthetic rooms with questions (another seed: no overlap with step 1's rooms);
#   4. Q&A training, the release (L) in two runs: configs/qa_synth_situated.yaml (object tokens with class names,
#      colour, size-word and relation tokens, pose-aware situated tokens listed leftmost first for left/right
#      questions and the asked quarter first for posed ones, the size word before its object, metric box sizes, the
#      projector residual capped; projector + LoRA on SmolLM2-135M, 6 questions per multi-turn sequence) on the
#      frozen encoder over a seeded QA_EXAMPLES=18000 of the ~40k training questions (417 steps), then
#   4b. the same recipe started from step 4's weights (init_from) over the 22,298 questions step 4 did not see
#      (exclude_seen_by) at stage-2 peak lr QA_CONTINUE_LR=2.5e-4 (half; written with a '.'), 505 steps, with
#      QA_CONTINUE_SET="model.comparison_order=true" (size comparisons listed largest / tallest first); the release
#      is exported from it. Two runs so that each fits a sitting; QA_CONTINUE_LR= (empty) skips 4b.
#   5. export with QA_EXPORT_SET="color_shading=0.6 size_group=true" (settings that change no weights, for
#      inference: colour words that allow for shading; a size question sees its class's size words after the names),
#      benchmark on val: with scene tokens, without (blind), with another room's tokens (shuffled), and the model card.
# Earlier releases and runs (README, Scene Q&A): release I = QA_SET="model.size_first=false
# model.sector_order=false" QA_CONTINUE_SET= QA_EXPORT_SET= (72.8 % EM@1); release H = ENCODER=release
# QA_SET="model.lateral_order=false model.size_words=false model.size_first=false model.sector_order=false"
# QA_CONTINUE_SET= QA_EXPORT_SET= (61.8 %); release D = ENCODER=release QA_CONFIG=configs/qa_synth.yaml
# QA_EXAMPLES=50000 QA_CONTINUE_LR= QA_EXPORT_SET= (57.5 %); run G = release H's step 4 alone (53.9 %);
# QA_EXAMPLES=50000 QA_CONTINUE_LR= QA_EXPORT_SET= QA_SET="model.lateral_order=false model.size_words=false
# model.size_first=false model.sector_order=false" is run F's recipe (70.9 % at step 709 of 883). QA_SET="key=value ..." adds config settings to both Q&A runs, QA_CONTINUE_SET to step 4b only (options
# in chorus_qa.train_state.WARM_START_FREE, e.g. model.comparison_order=true, can be switched on there).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=${WORK:-runs/demo}
OUT=${OUT:-checkpoints/demo}
QA_SCENES=${QA_SCENES:-1000}
QA_CONFIG=${QA_CONFIG:-configs/qa_synth_situated.yaml}
QA_EXAMPLES=${QA_EXAMPLES:-18000}
QA_CONTINUE_LR=${QA_CONTINUE_LR-2.5e-4}
ENCODER=${ENCODER:-228}
QA_SET=${QA_SET:-}   # more config settings for both Q&A runs, space-separated key=value (e.g. model.size_words=true)
QA_CONTINUE_SET=${QA_CONTINUE_SET-model.comparison_order=true}   # ... and for step 4b only
QA_EXPORT_SET=${QA_EXPORT_SET-color_shading=0.6 size_group=true}   # model settings without weights, set in the release
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
    ENC_RUN="$WORK/enc228/s4/pretrain"; PRETRAIN_JSON="$WORK/enc228/pretrain_probe_228.json" ;;   # this build's own scores
  *) echo "ENCODER must be release or 228, not '$ENCODER'" >&2; exit 2 ;;
esac

stamp "2/5 exporting the encoder and its teacher heads to $OUT"
"$PY" scripts/export_demo.py encoder --run "$ENC_RUN" --out "$OUT"

stamp "3/5 Q&A data: $QA_SCENES rooms"
if [ ! -f "$WORK/qa_data/splits/val.txt" ]; then
  "$PY" -m data.synth --scenes "$QA_SCENES" --out "$WORK/qa_data" --seed 2 --density 0.3 --workers 2  # data.synth.dataset.QA_WORLD_SEED
fi

stamp "4/5 Q&A training"
qa_set=()
for kv in $QA_SET; do qa_set+=(--set "$kv"); done
"$PY" chorus_qa/train_qa.py --config "$QA_CONFIG" ${qa_set[@]+"${qa_set[@]}"} --set max_train_examples="$QA_EXAMPLES" \
  --set data_dir="$WORK/qa_data" --set encoder="$OUT/encoder" --set out_dir="$WORK/qa"
QA_RUN="$WORK/qa"
if [ -n "$QA_CONTINUE_LR" ]; then
  stamp "4b/5 Q&A training continued over the questions step 4 did not see (peak lr $QA_CONTINUE_LR)"
  rest_set=()
  for kv in $QA_CONTINUE_SET; do rest_set+=(--set "$kv"); done
  "$PY" chorus_qa/train_qa.py --config "$QA_CONFIG" ${qa_set[@]+"${qa_set[@]}"} ${rest_set[@]+"${rest_set[@]}"} \
    --set max_train_examples=null \
    --set init_from="$WORK/qa/last" \
    --set exclude_seen_by="$WORK/qa" --set stage2.lr="$QA_CONTINUE_LR" \
    --set data_dir="$WORK/qa_data" --set encoder="$OUT/encoder" --set out_dir="$WORK/qa_rest"
  QA_RUN="$WORK/qa_rest"
fi

stamp "5/5 benchmark (scene tokens and blind) + export"
export_set=()
for kv in $QA_EXPORT_SET; do export_set+=(--set "$kv"); done
"$PY" scripts/export_demo.py qa --run "$QA_RUN" --out "$OUT" ${export_set[@]+"${export_set[@]}"}
"$PY" -m chorus_qa.benchmark --checkpoint "$OUT" --data "$WORK/qa_data" --split val --out "$WORK/bench/blind" --blind
"$PY" -m chorus_qa.benchmark --checkpoint "$OUT" --data "$WORK/qa_data" --split val --out "$WORK/bench/scene" --feature-cache none
"$PY" -m chorus_qa.benchmark --checkpoint "$OUT" --data "$WORK/qa_data" --split val --out "$WORK/bench/shuffled" --shuffle-scenes --feature-cache none
"$PY" scripts/export_demo.py card --out "$OUT" --bench "$WORK/bench" --run "$QA_RUN" --pretrain-results "$PRETRAIN_JSON" \
  --seconds $(( $(date +%s) - start ))
stamp "done: $OUT"
