#!/usr/bin/env bash
# An 8B-shaped model on this machine, weights as stored: bench/make-synthetic-gguf.py writes
# Llama-3-8B's shape with random Q4_0 weights (its outputs mean nothing; its memory and time
# are real), then act-dump (every token of chat-templated prompts, exact and fast) and
# generate (decode) run against llama.cpp (llama-cpp-python, same file, same token ids, 2
# threads). Peak RSS from /usr/bin/time. Usage: bash bench/weights-8b.sh  (RUNS=3 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
N=${N:-4}
OUT=bench/out
MODEL=$OUT/llama3-8b-shape.Q4_0.gguf
py=$(bash bench/setup-oracle.sh)
"$py" -c 'import llama_cpp' 2>/dev/null || "$py" -m pip install -q llama-cpp-python
cargo build --release --locked -q --bin act-dump --bin generate
mkdir -p "$OUT"
[ -f "$MODEL" ] || "$py" bench/make-synthetic-gguf.py --tokenizer models/SmolLM2-135M-Instruct.Q4_1.gguf --out "$MODEL"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
head -n $((N + 1)) bench/prompts64.csv > "$tmp/p.csv"
# the token ids act-dump computes (its rows CSV has n_tokens; ids from a --positions all dump)
target/release/act-dump --model "$MODEL" --prompts "$tmp/p.csv" --out "$tmp/ids.safetensors" \
  --positions all --layers 0 -q
"$py" - "$tmp" <<'PY'
import json, sys
from safetensors.numpy import load_file
t = load_file(sys.argv[1] + "/ids.safetensors")
off, ids = t["offsets"], t["token_ids"]
json.dump([ids[off[i]:off[i + 1]].tolist() for i in range(len(off) - 1)], open(sys.argv[1] + "/ids.json", "w"))
print("prompt tokens:", int(off[-1]))
PY
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GB, $(date -u +%F)"
for i in $(seq "$RUNS"); do
  for c in exact fast; do
    /usr/bin/time -f "%e %M" -o "$tmp/dump-$c.$i" target/release/act-dump --model "$MODEL" \
      --prompts "$tmp/p.csv" --out "$tmp/a.safetensors" --no-share-prefix --compute $c -q
  done
  "$py" bench/llama_cpp_run.py prefill "$MODEL" "$tmp/ids.json" > "$tmp/lc-prefill.$i"
  for b in 1 "$N"; do
    /usr/bin/time -f "%e %M" -o "$tmp/gen-$b.$i" target/release/generate --model "$MODEL" \
      --prompts "$tmp/p.csv" --out "$tmp/g.csv" --max-new-tokens 16 \
      --batch-size "$b" --compute fast -q
  done
  "$py" bench/llama_cpp_run.py decode "$MODEL" "$tmp/ids.json" 16 > "$tmp/lc-decode.$i"
done
"$py" - "$tmp" "$RUNS" <<'PY'
import sys, statistics as st, json
d, n = sys.argv[1], int(sys.argv[2])
tokens = sum(len(x) for x in json.load(open(d + "/ids.json")))
kv = lambda f: dict(x.split("=") for x in open(f).read().split())
lc = [kv(f"{d}/lc-prefill.{i}") for i in range(1, n + 1)]
lc_tps = [float(x["tokens_per_s"]) for x in lc]
print(f"prefill, {tokens} prompt tokens, every token computed, {n} runs:")
print(f"  llama.cpp (eval only, load {st.median(float(x['load_s']) for x in lc):.1f} s): median {st.median(lc_tps):.2f} tokens/s")
for c in ["exact", "fast"]:
    runs = [open(f"{d}/dump-{c}.{i}").read().split() for i in range(1, n + 1)]
    tps = [tokens / float(w) for w, _ in runs]
    peak = max(int(m) for _, m in runs) / 1024 / 1024
    print(f"  act-dump --compute {c} (whole process, load included): median {st.median(tps):.2f} tokens/s,"
          f" ratio {st.median(a / b for a, b in zip(tps, lc_tps)):.2f}x, peak RSS {peak:.2f} GB")
ld = [kv(f"{d}/lc-decode.{i}") for i in range(1, n + 1)]
print(f"decode: llama.cpp batch 1 median {st.median(float(x['tokens_per_s']) for x in ld):.2f} tokens/s (decode only)")
PY
