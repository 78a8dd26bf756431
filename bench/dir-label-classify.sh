#!/usr/bin/env bash
# dir-label classify on the default study: make demo's base-model activations (about 700
# prompts, every layer) and the contrast SVD's components, k = 100, both probes. Whole
# process (reading the files included), RUNS times (default 3); median wall time, user
# time and peak RSS. The issue's target: <= 30 s.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
RUN=${RUN:-runs/default}
ACTS=$RUN/base/analysis.safetensors
SVD=$RUN/contrast/svd.safetensors
ROWS=$RUN/data/analysis.csv
make -s "$SVD" >&2
cargo build --release --locked -q --bin dir-label
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
for i in $(seq "$RUNS"); do
  /usr/bin/time -f "%e %U %M" -o "$tmp/t.$i" target/release/dir-label classify --acts "$ACTS" \
    --components "$SVD" --rows "$ROWS" --out-dir "$tmp/out" --k 100 2> "$tmp/log.$i"
done
# The tool's own summary line: "31 layer(s) x 100 component(s), 700 rows, ..." (a CSV
# line count would count multi-line prompts twice).
rows=$(grep -o '[0-9]* rows' "$tmp/log.1" | cut -d' ' -f1)
layers=$(grep -o '[0-9]* layer(s)' "$tmp/log.1" | cut -d' ' -f1)
sort -n "$tmp"/t.* | awk -v n="$RUNS" -v rows="$rows" -v layers="$layers" '
  { w[NR] = $1; u[NR] = $2; if ($3 > m) m = $3 }
  END {
    mid = int((n + 1) / 2)
    printf "dir-label classify, %d prompts x %d layers, k = 100, both probes, %d runs:\n", rows, layers, n
    printf "  whole process: median %.2f s wall (min %.2f, max %.2f), user %.2f s, peak RSS %.0f MiB\n", w[mid], w[1], w[n], u[mid], m / 1024
  }'
