#!/usr/bin/env bash
# dir-interact sweep on the default study, the issue's speed target (<= 10 minutes on 2
# cores): the first-order estimate of C1..C10 of every layer, real interventions for the top
# 20 on the jailbreak test prompts with the first-token judge, generation (48 tokens) and the
# benign perplexity for the top 5 (plus the none and random baselines). Whole process, RUNS
# times (default 1: one run is minutes); wall and user time, peak RSS. Needs `make tuned`
# and the tuned shift SVD. Wall time is only meaningful on an otherwise idle machine: user
# time is printed beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1}
RUN=${RUN:-runs/default}
CATS=${CATS:-raw,roleplay,suffix,hypothetical,prefix_injection,flip,past_tense}
SVD=$RUN/shift-tuned/svd.safetensors
make -s "$SVD" "$RUN/base/test_responses.csv" >&2
cargo build --release --locked -q --bin dir-interact
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%F)"
for i in $(seq "$RUNS"); do
  /usr/bin/time -f "%e %U %M" -o "$tmp/t.$i" target/release/dir-interact sweep --model "$RUN/tuned" \
    --components "$SVD" --prompts "$RUN/data/test.csv" --categories "$CATS" \
    --rank-top 20 --rank-k 10 --generate-top 5 --max-new-tokens 48 \
    --benign-answers "$RUN/base/test_responses.csv" --out-dir "$tmp/out" 2> "$tmp/log.$i"
done
n=$(($(wc -l < "$tmp/out/estimates.csv") - 1))
sort -n "$tmp"/t.* | awk -v n="$RUNS" -v c="$n" '
  { w[NR] = $1; u[NR] = $2; if ($3 > m) m = $3 }
  END {
    mid = int((n + 1) / 2)
    printf "dir-interact sweep, %d candidates estimated, top 20 run, top 5 generated, %d run(s):\n", c, n
    printf "  whole process: median %.1f s wall (min %.1f, max %.1f), user %.1f s, peak RSS %.0f MiB\n", w[mid], w[1], w[n], u[mid], m / 1024
  }'
