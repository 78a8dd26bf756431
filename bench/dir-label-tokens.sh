#!/usr/bin/env bash
# Attribution throughput: dir-label tokens (AttnLRP, 10 components of one layer, batch 16)
# against lxt 2.1 on transformers (the same rules, one forward per prompt and one backward per
# component on the kept graph), same prompts, runs interleaved, medians.
# Ours: the whole process (model load included). lxt: its attribution loop only.
# POSITIONS=user (the default, what dir-label reports) runs the template prefix once per batch;
# POSITIONS=all traces every token of every prompt, as lxt does.
# Rate = prompts x components per second.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
N=${N:-32}
LAYER=${LAYER:-14}
POSITIONS=${POSITIONS:-user}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
py=$(bash bench/setup-oracle.sh)
cargo build --release --locked -q --bin dir-label
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
head -n $((N + 1)) bench/prompts64.csv > "$tmp/p.csv"
"$py" - "$tmp/c.safetensors" "$LAYER" <<'PY'
import sys, numpy as np
from safetensors.numpy import save_file
rng = np.random.default_rng(3)
c = rng.standard_normal((10, 576)).astype(np.float32)
save_file({f"components.{sys.argv[2]}": c / np.linalg.norm(c, axis=1, keepdims=True)}, sys.argv[1])
PY
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F), load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$RUNS"); do
  /usr/bin/time -f "%e %M" -o "$tmp/ours.$i" target/release/dir-label tokens --model "$MODEL" \
    --components "$tmp/c.safetensors" --prompts "$tmp/p.csv" --layer "$LAYER" --comps 1-10 \
    --batch-size 16 --positions "$POSITIONS" --out-dir "$tmp/out" -q
  "$py" testdata/dir-label/lxt_ref.py --gguf "$MODEL" --prompts "$tmp/p.csv" \
    --components "$tmp/c.safetensors" --layers "$LAYER" --bench --threads "$(nproc)" 2>/dev/null \
    | grep -o '= [0-9.]* prompt' | cut -d' ' -f2 > "$tmp/lxt.$i"
done
"$py" - "$tmp" "$RUNS" "$N" "$POSITIONS" <<'PY'
import sys, statistics as st
d, n, p = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lxt = [float(open(f"{d}/lxt.{i}").read()) for i in range(1, n + 1)]
ours = [p * 10 / float(open(f"{d}/ours.{i}").read().split()[0]) for i in range(1, n + 1)]
peak = max(int(open(f"{d}/ours.{i}").read().split()[1]) for i in range(1, n + 1)) / 1024
ratios = [a / b for a, b in zip(ours, lxt)]
print(f"dir-label tokens, {p} prompts x 10 components, AttnLRP, {n} runs each, ours with --positions {sys.argv[4]}")
print(f"  lxt 2.1 on transformers (loop only): median {st.median(lxt):6.2f} prompt-components/s (min {min(lxt):.2f}, max {max(lxt):.2f})")
print(f"  ours (whole process):                median {st.median(ours):6.2f} prompt-components/s (min {min(ours):.2f}, max {max(ours):.2f}), peak RSS {peak:.0f} MiB;"
      f" ratio {st.median(ratios):.2f}x (median of pairs)")
PY
