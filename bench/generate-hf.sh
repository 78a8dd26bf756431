#!/usr/bin/env bash
# Generation throughput: our generate against transformers' generate (bench/hf_generate.py),
# greedy, batch 16 in CSV order (transformers: left padding), at most 64 new tokens, the same
# stopping rule (EOS or an end-of-turn token, not counted), the same chat-templated prompts
# (the first N of bench/prompts64.csv), runs interleaved (ours, theirs, ours, ...), medians.
# Ours: the whole process (model load included), as it runs by default (the template's common
# prefix prefilled once); its own log line with the generate calls alone is shown beside it.
# transformers: its generate calls only (no model load, tokenisation or decoding).
# Rate = answer tokens (stop tokens excluded, each side its own count) per second; ratio per
# pair. Also counts the answers identical to ours (greedy ties may flip between the two).
# THREADS: threads of both (default: all cores; ours --threads, transformers
# torch.set_num_threads). On a busy machine transformers' OpenMP threads wait on each other
# (2 threads on 2 cores with one core taken ran ~5x slower than 1 thread): measure on an idle
# machine, or compare at THREADS=1 when it is not.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
N=${N:-48}
MAX_NEW=${MAX_NEW:-64}
THREADS=${THREADS:-$(nproc)}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
py=$(bash bench/setup-oracle.sh)
cargo build --release --locked -q --bin generate
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
head -n $((N + 1)) bench/prompts64.csv > "$tmp/p.csv"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F), load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$RUNS"); do
  /usr/bin/time -f "%e %M" -o "$tmp/ours.$i" target/release/generate --model "$MODEL" \
    --prompts "$tmp/p.csv" --out "$tmp/ours.$i.csv" --batch-size 16 --max-new-tokens "$MAX_NEW" \
    --threads "$THREADS" 2> "$tmp/ours.$i.log"
  grep -o 'generation: .*' "$tmp/ours.$i.log" > "$tmp/gen.$i" || true
  "$py" bench/hf_generate.py --gguf "$MODEL" --prompts "$tmp/p.csv" --batch-size 16 \
    --max-new-tokens "$MAX_NEW" --threads "$THREADS" --compare "$tmp/ours.$i.csv" 2>/dev/null \
    | grep -E 'tokens_per_s|identical' | tr '\n' ' ' > "$tmp/hf.$i"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" - "$tmp" "$RUNS" "$N" "$MAX_NEW" "$THREADS" <<'PY'
import sys, csv, re, statistics as st
d, n, p, m, th = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
hf = [dict(kv.split("=") for kv in open(f"{d}/hf.{i}").read().split()) for i in range(1, n + 1)]
hf_tps = [float(h["tokens_per_s"]) for h in hf]
ours_tok = [sum(int(r["n_new_tokens"]) for r in csv.DictReader(open(f"{d}/ours.{i}.csv", newline="", encoding="utf-8")))
            for i in range(1, n + 1)]
runs = [open(f"{d}/ours.{i}").read().split() for i in range(1, n + 1)]
ours_tps = [t / float(w) for t, (w, _) in zip(ours_tok, runs)]
peak = max(int(mm) for _, mm in runs) / 1024
gen = [re.search(r"in ([0-9.]+) s", open(f"{d}/gen.{i}").read()) for i in range(1, n + 1)]
gen_pairs = [(t / float(g.group(1)), h) for t, g, h in zip(ours_tok, gen, hf_tps) if g]
gen_tps = [a for a, _ in gen_pairs]
ratios = [a / b for a, b in zip(ours_tps, hf_tps)]
print(f"generate, {p} prompts, batch 16, greedy, <= {m} new tokens, {th} threads each, {n} runs each;"
      f" answer tokens: ours {ours_tok[0]}, transformers {hf[0]['tokens']}; identical answers {hf[0]['identical_answers']}")
print(f"  {'transformers (generate calls only):':38s} median {st.median(hf_tps):6.1f} tokens/s (min {min(hf_tps):.1f}, max {max(hf_tps):.1f})")
print(f"  {'ours (whole process):':38s} median {st.median(ours_tps):6.1f} tokens/s (min {min(ours_tps):.1f}, max {max(ours_tps):.1f}), peak RSS {peak:.0f} MiB;"
      f" ratio {st.median(ratios):.2f}x (median of pairs)")
if gen_tps:
    gr = [a / b for a, b in gen_pairs]
    print(f"  {'ours (generate calls only, its log):':38s} median {st.median(gen_tps):6.1f} tokens/s; ratio {st.median(gr):.2f}x")
PY
