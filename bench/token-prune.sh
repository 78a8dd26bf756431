#!/usr/bin/env bash
# token-prune on the default study: the tuned model, every refused jailbreak and raw test
# prompt (the seven harmful categories of test.csv), all four methods (random with its 5
# repeats), the default budget (0.25, at most 8 tokens, one per step), confirmation by 48
# greedy tokens. Whole process, RUNS times (default 1: one run is minutes); wall time, user
# time, peak RSS and each method's own time from the tool's log. The issue's target: <= 5 min
# on 2 cores.
#   TUNED=dir  the attacked model (default runs/default/tuned, from `make tuned`)
#   PROMPTS=csv  the prompt set (default runs/default/data/test.csv)
#   EXTRA="..."  more flags (e.g. --methods attribution,random)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1}
RUN=${RUN:-runs/default}
TUNED=${TUNED:-$RUN/tuned}
PROMPTS=${PROMPTS:-$RUN/data/test.csv}
CATS=raw,roleplay,suffix,hypothetical,prefix_injection,flip,past_tense
[ -e "$TUNED" ] || make -s tuned >&2
cargo build --release --locked -q --bin token-prune
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%F %H:%M')"
for i in $(seq "$RUNS"); do
  # shellcheck disable=SC2086
  /usr/bin/time -f "%e %U %M" -o "$tmp/t.$i" target/release/token-prune --model "$TUNED" \
    --prompts "$PROMPTS" --categories "$CATS" --out "$tmp/pruned.csv" --summary "$tmp/summary.csv" \
    -v ${EXTRA:-} 2> "$tmp/log.$i"
done
grep -E "refused|past the first-token judge|answered" "$tmp/log.1" | sed 's/^[^ ]* *INFO /  /'
sort -n "$tmp"/t.* | awk -v n="$RUNS" '
  { w[NR] = $1; u[NR] = $2; if ($3 > m) m = $3 }
  END {
    mid = int((n + 1) / 2)
    printf "token-prune, all methods, %d run(s): median %.1f s wall (min %.1f, max %.1f), user %.1f s, peak RSS %.0f MiB\n", n, w[mid], w[1], w[n], u[mid], m / 1024
  }'
