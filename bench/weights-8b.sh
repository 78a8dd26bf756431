#!/usr/bin/env bash
# An 8B-shaped model on this machine, weights as stored: bench/make-synthetic-gguf.py writes
# Llama-3-8B's shape with random Q4_0 weights (its outputs mean nothing; its memory and time
# are real), then act-dump (every token of chat-templated prompts, exact and fast) and
# generate (decode at batch 1, fast) run against llama.cpp (llama-cpp-python, same file, same
# token ids, 2 threads), runs interleaved. Peak RSS from /usr/bin/time.
# Then decode at batch DECODE_BATCH (16; 0 skips it): DECODE_BATCH prompts decoded together,
# generate --batch-size against llama.cpp's parallel sequences (llama_cpp_run.py decode-batch).
# Usage: bash bench/weights-8b.sh  (RUNS=3, N=4 prompts, QUANT=q4_0 by default; QUANT=q4_k_m
# writes llama.cpp's Q4_K_M layout; LAYERS=32 blocks, fewer for a quicker file of the same
# matrix shapes)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
N=${N:-4}
QUANT=${QUANT:-q4_0}
DECODE_BATCH=${DECODE_BATCH:-16}
LAYERS=${LAYERS:-32}
OUT=bench/out
MODEL=$OUT/llama3-8b-shape$([ "$LAYERS" = 32 ] || echo "-$LAYERS").${QUANT^^}.gguf
py=$(bash bench/setup-oracle.sh)
"$py" -c 'import llama_cpp' 2>/dev/null || "$py" -m pip install -q llama-cpp-python
cargo build --release --locked -q --bin act-dump --bin generate
mkdir -p "$OUT"
[ -f "$MODEL" ] || "$py" bench/make-synthetic-gguf.py --tokenizer models/SmolLM2-135M-Instruct.Q4_1.gguf \
  --out "$MODEL" --quant "$QUANT" --layers "$LAYERS"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
head -n $((N + 1)) bench/prompts64.csv > "$tmp/p.csv"
# the token ids act-dump computes for a prompt CSV (its rows CSV has n_tokens; ids from a
# --positions all dump), as JSON for llama_cpp_run.py
token_ids() { # prompts.csv out.json
  target/release/act-dump --model "$MODEL" --prompts "$1" --out "$tmp/ids.safetensors" \
    --positions all --layers 0 -q
  "$py" - "$tmp/ids.safetensors" "$2" <<'PY'
import json, sys
from safetensors.numpy import load_file
t = load_file(sys.argv[1])
off, ids = t["offsets"], t["token_ids"]
json.dump([ids[off[i]:off[i + 1]].tolist() for i in range(len(off) - 1)], open(sys.argv[2], "w"))
print("prompt tokens:", int(off[-1]))
PY
}
token_ids "$tmp/p.csv" "$tmp/ids.json"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GB, $(date -u +%F)"
# llama.cpp once first, so neither side's first run reads the file from disk
"$py" bench/llama_cpp_run.py prefill "$MODEL" "$tmp/ids.json" > /dev/null
for i in $(seq "$RUNS"); do
  for c in exact fast; do
    /usr/bin/time -f "%e %M" -o "$tmp/dump-$c.$i" target/release/act-dump --model "$MODEL" \
      --prompts "$tmp/p.csv" --out "$tmp/a.safetensors" --no-share-prefix --compute $c -v \
      2> "$tmp/dump-$c.$i.log"
  done
  "$py" bench/llama_cpp_run.py prefill "$MODEL" "$tmp/ids.json" > "$tmp/lc-prefill.$i"
  # decode alone: the generation time of 17 new tokens less that of 1 (prefill + 1 token)
  for n in 1 17; do
    target/release/generate --model "$MODEL" --prompts "$tmp/p.csv" --out "$tmp/g.csv" \
      --max-new-tokens $n --batch-size 1 --compute fast 2> "$tmp/gen-$n.$i.log"
  done
  "$py" bench/llama_cpp_run.py decode "$MODEL" "$tmp/ids.json" 16 > "$tmp/lc-decode.$i"
done
"$py" - "$tmp" "$RUNS" "$N" <<'PY'
import re, sys, statistics as st, json
d, n, prompts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tokens = sum(len(x) for x in json.load(open(d + "/ids.json")))
kv = lambda f: dict(x.split("=") for x in open(f).read().split())
med = st.median
lc = [kv(f"{d}/lc-prefill.{i}") for i in range(1, n + 1)]
lc_tps = [float(x["tokens_per_s"]) for x in lc]
print(f"prefill, {tokens} prompt tokens, every token computed, {n} runs (medians):")
print(f"  llama.cpp: {med(lc_tps):.2f} tokens/s (evaluation; load {med(float(x['load_s']) for x in lc):.1f} s)")
for c in ["exact", "fast"]:
    runs = [open(f"{d}/dump-{c}.{i}").read().split() for i in range(1, n + 1)]
    whole = [tokens / float(w) for w, _ in runs]
    fwd = [float(re.search(r"in ([0-9.]+) s", [l for l in open(f"{d}/dump-{c}.{i}.log") if "forward:" in l][0]).group(1))
           for i in range(1, n + 1)]
    fwd_tps = [tokens / s for s in fwd]
    peak = max(int(m) for _, m in runs) / 1024 / 1024
    print(f"  act-dump --compute {c}: forward {med(fwd_tps):.2f} tokens/s, ratio {med(a / b for a, b in zip(fwd_tps, lc_tps)):.2f}x;"
          f" whole process (load, hashing, writing) {med(whole):.2f} tokens/s; peak RSS {peak:.2f} GB")
gen = lambda k, i: float(re.search(r"in ([0-9.]+) s", [l for l in open(f"{d}/gen-{k}.{i}.log") if "generation:" in l][0]).group(1))
ours = [16 * prompts / (gen(17, i) - gen(1, i)) for i in range(1, n + 1)]
ld = [float(kv(f"{d}/lc-decode.{i}")["tokens_per_s"]) for i in range(1, n + 1)]
print(f"decode, batch 1, 16 tokens after each of {prompts} prompts:")
print(f"  llama.cpp {med(ld):.2f} tokens/s; generate --compute fast {med(ours):.2f} tokens/s, ratio {med(a / b for a, b in zip(ours, ld)):.2f}x")
PY
[ "$DECODE_BATCH" -gt 0 ] || exit 0
# Decode at batch DECODE_BATCH: the time of 17 new tokens less that of 1, all sequences at once.
B=$DECODE_BATCH
head -n $((B + 1)) bench/prompts64.csv > "$tmp/pb.csv"
token_ids "$tmp/pb.csv" "$tmp/idsb.json"
for i in $(seq "$RUNS"); do
  for n in 1 17; do
    target/release/generate --model "$MODEL" --prompts "$tmp/pb.csv" --out "$tmp/g.csv" \
      --max-new-tokens $n --batch-size "$B" --compute fast 2> "$tmp/genb-$n.$i.log"
  done
  "$py" bench/llama_cpp_run.py decode-batch "$MODEL" "$tmp/idsb.json" 16 > "$tmp/lc-decodeb.$i"
done
"$py" - "$tmp" "$RUNS" "$B" <<'PY'
import re, sys, statistics as st
d, n, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gen = lambda k, i: float(re.search(r"in ([0-9.]+) s", [l for l in open(f"{d}/genb-{k}.{i}.log") if "generation:" in l][0]).group(1))
ours = [16 * b / (gen(17, i) - gen(1, i)) for i in range(1, n + 1)]
lc = [float(dict(x.split("=") for x in open(f"{d}/lc-decodeb.{i}").read().split())["tokens_per_s"]) for i in range(1, n + 1)]
print(f"decode, batch {b}, 16 tokens after each of {b} prompts ({n} runs, medians):")
print(f"  llama.cpp {st.median(lc):.2f} tokens/s; generate --compute fast {st.median(ours):.2f} tokens/s, ratio {st.median(a / c for a, c in zip(ours, lc)):.2f}x")
PY
