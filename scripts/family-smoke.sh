#!/usr/bin/env bash
# Every tool that runs a model, on the small random model of each family
# (testdata/families/*: Mistral, Qwen3, Gemma 2, Gemma 3, Phi-3 and the two SentencePiece
# fixtures). First, from its Hugging Face directory and its GGUF file, at a handful of prompts:
# act-dump, generate, shift-svd --contrast (one model's harmful − harmless components: the
# fixtures have no tuned twin), dir-label classify and tokens, dir-interact relevance and sweep,
# token-prune (which finds no refused prompt to prune in a random model, and must say so). The
# models are random, so the numbers mean nothing; checked: every stage runs on every family and
# writes its output. Then the study in miniature: safety-tune (full fine-tuning, 8 epochs on 24
# harmful rows, so the random model learns to refuse at the first token) from the directory
# (from a GGUF file of a family other than Llama it is refused by name: no config to carry
# over; llama.cpp writes Mistral as Llama, which exports as Llama), and `make pair` on the
# fixture and its tuned twin, report included. `make smoke` runs it.
#   family-smoke.sh DATA_DIR   (prompt-set's output: analysis.csv and test.csv)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
data=${1:?usage: family-smoke.sh DATA_DIR}
out=runs/family-smoke
rm -rf "$out"
for fam in mistral qwen3 gemma2 gemma3 phi3 mistral-spm gemma2-spm; do
  for kind in hf model.gguf; do
    m=testdata/families/$fam/$kind
    o=$out/$fam-${kind%%.*}
    mkdir -p "$o"
    log=$o/log.txt
    # lxt defines no AttnLRP rule for a soft-capped softmax: Gemma 2's attribution runs the
    # exact gradient × input (the AttnLRP request is refused by name, tested elsewhere)
    rules=attnlrp
    case $fam in gemma2*) rules=grad-x-input ;; esac
    step() { "$@" >> "$log" 2>&1 || { tail -n 5 "$log" >&2; echo "family-smoke: $fam $kind: ${1##*/} failed ($log)" >&2; exit 1; }; }
    step "$BIN/act-dump" --model "$m" --prompts "$data/analysis.csv" --per-category 2 \
      --out "$o/acts.safetensors" --rows "$o/rows.csv"
    step "$BIN/shift-svd" --contrast "$o/acts.safetensors" --rows "$o/rows.csv" --by label \
      --out "$o/svd.safetensors"
    step "$BIN/generate" --model "$m" --prompts "$data/test.csv" --per-category 1 \
      --max-new-tokens 4 --out "$o/answers.csv"
    step "$BIN/dir-label" classify --acts "$o/acts.safetensors" --components "$o/svd.safetensors" \
      --rows "$o/rows.csv" --out-dir "$o/classify"
    step "$BIN/dir-label" tokens --model "$m" --components "$o/svd.safetensors" \
      --prompts "$data/test.csv" --per-category 1 --layer 1 --comps 1-2 --rules $rules \
      --out-dir "$o/tokens"
    step "$BIN/dir-interact" relevance --model "$m" --components "$o/svd.safetensors" \
      --prompts "$data/test.csv" --categories raw --per-category 1 --all-adjacent --rules $rules \
      --out-dir "$o/interact"
    step "$BIN/dir-interact" sweep --model "$m" --components "$o/svd.safetensors" \
      --prompts "$data/test.csv" --categories raw,roleplay --per-category 1 --rank-top 2 --rank-k 2 \
      --dim "$o/svd.safetensors" --dim-layers 1 --benign-answers "$o/answers.csv" \
      --generate-top 1 --benign-limit 2 --out-dir "$o/interact"
    # token-prune starts from refused prompts; a random model refuses none (its refusal
    # log-odds stay below 0), so it must say exactly that after scoring every row, or prune
    if ! "$BIN/token-prune" --model "$m" --prompts "$data/test.csv" \
        --categories raw,roleplay,suffix,flip --per-category 3 --methods attribution,random --rules $rules \
        --out "$o/pruned.csv" --summary "$o/prune.csv" >> "$log" 2>&1; then
      grep -q "no prompt refused: none of the 12 selected rows" "$log" \
        || { tail -n 5 "$log" >&2; echo "family-smoke: $fam $kind: token-prune failed ($log)" >&2; exit 1; }
      : > "$o/prune.csv.none"
    fi
    for f in acts.safetensors svd.safetensors answers.csv classify/layers.csv tokens/labels.csv \
             interact/relevance.csv interact/sweep.csv; do
      [ -s "$o/$f" ] || { echo "family-smoke: $fam $kind left no $o/$f" >&2; exit 1; }
    done
    [ -s "$o/prune.csv" ] || [ -e "$o/prune.csv.none" ] \
      || { echo "family-smoke: $fam $kind: token-prune left no summary" >&2; exit 1; }
  done
done
python3 scripts/mini-train.py "$data/train.csv" "$out/mini_train.csv"
size=(ACTS_PER_CATEGORY=3 EVAL_PER_CATEGORY=2 PER_CATEGORY=1 GEN_TOKENS=8 LABEL_PER_CATEGORY=1 SWEEP_K=2
      SWEEP_TOP=2 SWEEP_GENERATE=1 SWEEP_DIM_LAYERS=1 BENIGN_LIMIT=4 PRUNE_CATEGORIES=raw,roleplay
      LABEL_LAYER=1 REPORT_LAYER=1)
for fam in mistral qwen3 gemma2 gemma3 phi3 mistral-spm gemma2-spm; do
  tuned=$out/$fam-tuned run=$out/$fam-pair
  "$BIN/safety-tune" --model testdata/families/$fam/hf --train "$out/mini_train.csv" --method full \
    --lr 5e-2 --epochs 8 --batch-size 8 --out "$tuned" --save-every 0 -q \
    || { echo "family-smoke: $fam: safety-tune failed" >&2; exit 1; }
  # llama.cpp writes Mistral as a Llama (no window): that exports as Llama; the others cannot
  if "$BIN/safety-tune" --model testdata/families/$fam/model.gguf --train "$out/mini_train.csv" \
      --epochs 1 --out "$out/$fam-gguf-tuned" -q 2> "$out/$fam-gguf-tune.err"; then
    case $fam in mistral*) ;; *)
      echo "family-smoke: $fam: safety-tune exported a GGUF model it has no config for" >&2; exit 1 ;;
    esac
  else
    grep -q "run it from its Hugging Face directory" "$out/$fam-gguf-tune.err" \
      || { cat "$out/$fam-gguf-tune.err" >&2; echo "family-smoke: $fam: unexpected GGUF refusal" >&2; exit 1; }
  fi
  mkdir -p "$run" && cp -r "$data" "$run/data"
  rules=; case $fam in gemma2*) rules=grad-x-input ;; esac
  make --no-print-directory pair BASE=testdata/families/$fam/hf TUNED="$tuned" RUN="$run" "${size[@]}" RULES=$rules \
    > "$run/make.log" 2>&1 \
    || { tail -n 8 "$run/make.log" >&2; echo "family-smoke: $fam: make pair failed ($run/make.log)" >&2; exit 1; }
  for f in shift-tuned/svd.safetensors label/tokens/labels.csv interact/relevance.csv \
           interact/sweep.csv prune/summary.csv report/index.html; do
    [ -s "$run/$f" ] || { echo "family-smoke: $fam: make pair left no $run/$f" >&2; exit 1; }
  done
done
echo "family-smoke: ok (7 families: every model-running tool from HF and GGUF; safety-tune and make pair)"
