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
#
# BENCH_THREADS=1 pins both sides to one thread (RAYON_NUM_THREADS, OPENBLAS_NUM_THREADS,
# OMP_NUM_THREADS): a fairer comparison on a machine that other work keeps busy, where
# OpenBLAS's spinning threads lose far more time than rayon's.
set -euo pipefail
if [ -n "${BENCH_THREADS:-}" ]; then
  export RAYON_NUM_THREADS="$BENCH_THREADS" OPENBLAS_NUM_THREADS="$BENCH_THREADS" OMP_NUM_THREADS="$BENCH_THREADS"
fi
cd "$(dirname "$0")/../.."
RUNS="${1:-5}"
HERE=bench/shift-svd
DIR="${BENCH_DIR:-$(mktemp -d)}"
[ -z "${BENCH_DIR:-}" ] && trap 'rm -rf "$DIR"' EXIT

cargo build --release -q -p shift-svd
BIN="${CARGO_TARGET_DIR:-target}/release/shift-svd"
python3 "$HERE/gen_inputs.py" "$DIR"

load_before=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")
ours=$(python3 "$HERE/ours.py" "$BIN" "$DIR" --runs "$RUNS")
np32=$(python3 "$HERE/numpy_svd.py" "$DIR" --runs "$RUNS" --dtype float32)
np64=$(python3 "$HERE/numpy_svd.py" "$DIR" --runs "$RUNS" --dtype float64)

load_after=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?")

python3 - "$ours" "$np32" "$np64" "$(getconf _NPROCESSORS_ONLN)" "$load_before" "$load_after" <<'PY'
import json, sys
ours, n32, n64 = (json.loads(s) for s in sys.argv[1:4])
import os
threads = os.environ.get("BENCH_THREADS", "all")
print(f"machine: {sys.argv[4]} cores, threads: {threads} (load average {sys.argv[5]} before, {sys.argv[6]} after: "
      "other work on the machine skews both sides, numpy's threads most)")
print(f"8 layers x 700 x 4096 f32; medians of {len(ours['runs'])} runs")
print(f"                                        wall (ratio)        CPU user+sys (ratio)")
print(f"shift-svd (whole process, k=100):   {ours['median']:8.3f} s           {ours['cpu_median']:8.3f} s")
for name, r in (("float32", n32), ("float64", n64)):
    print(f"numpy svd {name} (compute only):   {r['median']:8.3f} s ({r['median'] / ours['median']:5.1f}x)  "
          f"{r['cpu_median']:8.3f} s ({r['cpu_median'] / ours['cpu_median']:5.1f}x)")
print(f"shift-svd peak RSS: {ours['max_rss_mb']:.0f} MiB for {ours['input_mb']:.0f} MiB of input "
      f"({ours['max_rss_mb'] / ours['input_mb']:.2f}x)")
PY
