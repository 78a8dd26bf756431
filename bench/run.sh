#!/usr/bin/env bash
# make bench: act-dump against Hugging Face transformers on the same 64 chat-templated prompts
# at batch 16, runs interleaved (ours, theirs, ours, ...) so drift hits both; medians.
# Ours: the whole process (model load included), as run by default (the prompts' common
# prefix computed once) and with --no-share-prefix (every token computed, as the reference
# does). Theirs: hf_acts.py --mode hidden, its best configuration for this job (decoder body
# only, length-sorted batches), forward pass only.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
PROMPTS=bench/prompts64.csv
py=$(bash bench/setup-oracle.sh)
cargo build --release --locked -q --bin act-dump
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
for i in $(seq "$RUNS"); do
  /usr/bin/time -f "%e %M" -o "$tmp/ours.$i" target/release/act-dump --model "$MODEL" --prompts "$PROMPTS" \
    --out "$tmp/a.safetensors" --batch-size 16 -q
  /usr/bin/time -f "%e %M" -o "$tmp/full.$i" target/release/act-dump --model "$MODEL" --prompts "$PROMPTS" \
    --out "$tmp/b.safetensors" --batch-size 16 -q --no-share-prefix
  "$py" bench/hf_acts.py --gguf "$MODEL" --prompts "$PROMPTS" --batch-size 16 --mode hidden 2>/dev/null \
    | grep tokens_per_s > "$tmp/hf.$i"
done
"$py" - "$tmp" "$RUNS" <<'PY'
import sys, statistics as st, re
d, n = sys.argv[1], int(sys.argv[2])
hf = [dict(kv.split("=") for kv in open(f"{d}/hf.{i}").read().split()) for i in range(1, n + 1)]
tokens = int(hf[0]["tokens"])
hf_tps = [float(h["tokens_per_s"]) for h in hf]
print(f"act-dump, 64 prompts, {tokens} tokens, batch 16, {n} runs each")
print(f"  transformers (forward only):  median {st.median(hf_tps):7.1f} tokens/s  (min {min(hf_tps):.1f}, max {max(hf_tps):.1f})")
for name, label in [("ours", "ours (default)"), ("full", "ours --no-share-prefix")]:
    runs = [open(f"{d}/{name}.{i}").read().split() for i in range(1, n + 1)]
    tps = [tokens / float(w) for w, _ in runs]
    ratios = [a / b for a, b in zip(tps, hf_tps)]
    peak = max(int(m) for _, m in runs) / 1024
    print(f"  {label + ':':29s} median {st.median(tps):7.1f} tokens/s  (min {min(tps):.1f}, max {max(tps):.1f}), whole process, peak RSS {peak:.0f} MiB;"
          f" ratio {st.median(ratios):.2f}x (median of pairs)")
PY
if [ "${ONLY:-}" != act-dump ] && [ -f bench/shift-svd/run.sh ]; then bash bench/shift-svd/run.sh; fi
if [ "${ONLY:-}" != act-dump ] && [ -f bench/dir-label-classify.sh ]; then bash bench/dir-label-classify.sh; fi
if [ "${ONLY:-}" != act-dump ] && [ -f bench/dir-label-tokens.sh ]; then bash bench/dir-label-tokens.sh; fi
if [ "${ONLY:-}" != act-dump ] && [ -f bench/token-prune.sh ]; then bash bench/token-prune.sh; fi
if [ "${ONLY:-}" != act-dump ] && [ -f bench/generate-hf.sh ]; then bash bench/generate-hf.sh; fi
