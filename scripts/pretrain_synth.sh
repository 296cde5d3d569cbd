#!/usr/bin/env bash
# Synthetic world -> lifted offline teachers -> multi-teacher pretraining of the `small` encoder.
# Usage: scripts/pretrain_synth.sh [SCENES=90] [OUT=DATA/synth90] [extra pretrain args...]
# One thread per process: on our shared 2-core CPUs two OpenMP threads per process were several times slower.
set -euo pipefail
cd "$(dirname "$0")/.."
SCENES=${1:-90}
OUT=${2:-DATA/synth${SCENES}}
shift $(( $# > 2 ? 2 : $# )) || true
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[ -f "$OUT/classes.json" ] || $PY -m data.synth --scenes "$SCENES" --out "$OUT" --seed 0 --density 0.3
# lift the train rooms only (held-out rooms need labels, not teacher features)
mkdir -p "$OUT/lift_train"
while read -r id; do [ -n "$id" ] && ln -sfn "../scenes/$id" "$OUT/lift_train/$id"; done < "$OUT/splits/train.txt"
$PY -m encoder.lift --scenes "$OUT/lift_train" --teachers offline --views 8 --width 192 --height 144
$PY encoder/pretrain.py --config configs/pretrain_synth.yaml --data-root "$OUT" "$@"
