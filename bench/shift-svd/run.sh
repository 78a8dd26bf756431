#!/usr/bin/env bash
# shift-svd vs numpy.linalg.svd(full_matrices=False) on 8 layers of 700 x 4096 f32 shifts.
#
#   bench/shift-svd/run.sh [RUNS]        (from the repository root; needs python3 + numpy)
#
# Generates the inputs at run time (never committed) under $BENCH_DIR (default: a temp dir),
# builds the release binary, then prints medians over RUNS runs (default 5) and the ratio:
# ours = the whole process (read both files, every layer, write all outputs);
# numpy = its SVD calls alone, on the same shifts, same cores, float32 (as stored) and
# float64 (as the paper's scripts hold them). Peak RSS of ours is compared with the input size.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS="${1:-5}"
HERE=bench/shift-svd
DIR="${BENCH_DIR:-$(mktemp -d)}"
[ -z "${BENCH_DIR:-}" ] && trap 'rm -rf "$DIR"' EXIT

cargo build --release -q -p shift-svd
BIN="${CARGO_TARGET_DIR:-target}/release/shift-svd"
python3 "$HERE/gen_inputs.py" "$DIR"

ours=$(python3 "$HERE/ours.py" "$BIN" "$DIR" --runs "$RUNS")
np32=$(python3 "$HERE/numpy_svd.py" "$DIR" --runs "$RUNS" --dtype float32)
np64=$(python3 "$HERE/numpy_svd.py" "$DIR" --runs "$RUNS" --dtype float64)

python3 - "$ours" "$np32" "$np64" "$(nproc)" <<'PY'
import json, sys
ours, n32, n64 = (json.loads(s) for s in sys.argv[1:4])
print(f"machine: {sys.argv[4]} cores; 8 layers x 700 x 4096 f32; medians of {len(ours['runs'])} runs")
print(f"shift-svd (whole process, k=100):      {ours['median']:8.3f} s")
print(f"numpy svd float32 (compute only):      {n32['median']:8.3f} s   ratio {n32['median'] / ours['median']:5.1f}x")
print(f"numpy svd float64 (compute only):      {n64['median']:8.3f} s   ratio {n64['median'] / ours['median']:5.1f}x")
print(f"shift-svd peak RSS: {ours['max_rss_mb']:.0f} MiB for {ours['input_mb']:.0f} MiB of input "
      f"({ours['max_rss_mb'] / ours['input_mb']:.2f}x)")
PY
