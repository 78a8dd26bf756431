#!/usr/bin/env bash
# `make pair` on two small models (`make smoke` runs it): BASE is the default model and TUNED
# a quick variant of it (safety-tune on 24 harmful rows: 3 LoRA steps that make it refuse
# at the first token, an HF directory), the
# study's stages sized down (a few analysis rows and test prompts per category, short answers).
# Checks that the pair ran without safety-tune, that every stage's output is there and that
# a run folder made for one pair refuses another.
#   pair-smoke.sh MODEL
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1
BIN=${BIN:-target/release}
run=runs/pair-smoke
tuned=runs/pair-smoke-tuned
rm -rf "$run" "$tuned"
mkdir -p "$run"
make --no-print-directory -s RUN="$run" "$run/data/test.csv" > /dev/null
python3 scripts/mini-train.py "$run/data/train.csv" "$run/mini_train.csv"
"$BIN/safety-tune" --model "$model" --train "$run/mini_train.csv" --epochs 1 \
  --batch-size 8 --out "$tuned" --save-every 0 -q
size=(ACTS_PER_CATEGORY=3 EVAL_PER_CATEGORY=2 PER_CATEGORY=1 GEN_TOKENS=8 LABEL_PER_CATEGORY=1 SWEEP_K=2 SWEEP_TOP=2
      SWEEP_GENERATE=1 SWEEP_DIM_LAYERS=20 BENIGN_LIMIT=4 PRUNE_CATEGORIES=raw,roleplay)
make --no-print-directory pair BASE="$model" TUNED="$tuned" RUN="$run" "${size[@]}" > "$run/make.log" 2>&1 \
  || { tail -n 20 "$run/make.log" >&2; echo "pair-smoke: make pair failed ($run/make.log)" >&2; exit 1; }
for f in shift-tuned/svd.safetensors label/tokens/labels.csv interact/relevance.csv interact/sweep.csv \
         prune/summary.csv tuned-eval/test_responses.csv report/index.html; do
  [ -s "$run/$f" ] || { echo "pair-smoke: make pair left no $run/$f" >&2; exit 1; }
done
if grep -q '^safety-tune' "$run/stage_times.tsv" || [ -e "$run/tuned/safety_tune.json" ]; then
  echo "pair-smoke: make pair ran safety-tune" >&2; exit 1
fi
# The tuned activations are TUNED's: they differ from the base model's.
if python3 scripts/same-tensors.py "$run/tuned/analysis.safetensors" "$run/base/analysis.safetensors" \
  2> /dev/null; then
  echo "pair-smoke: the tuned activations equal the base model's (TUNED was not used)" >&2; exit 1
fi
# The pair's folder refuses another pair.
if out=$(make --no-print-directory -s pair BASE="$model" TUNED="$model" RUN="$run" "${size[@]}" 2>&1); then
  echo "pair-smoke: a run folder of one pair accepted another" >&2; exit 1
fi
grep -q "holds the pair" <<< "$out" || { echo "pair-smoke: unexpected refusal: $out" >&2; exit 1; }
echo "pair-smoke: ok ($run; stage times in $run/stage_times.tsv)" >&2
