#!/usr/bin/env bash
# Makes the committed Hugging Face references for the parity tests: token ids of the tricky
# prompts and last-position hidden states of layers 0, 10, 20, 30, from transformers (f32) on
# the default GGUF model. Needs the oracle environment (bench/setup-oracle.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=$("$root/bench/setup-oracle.sh")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" "$root/bench/hf_acts.py" --gguf "$root/models/SmolLM2-135M-Instruct.Q4_1.gguf" \
  --prompts "$here/tricky.csv" --batch-size 4 --dump "$tmp/ref.npz" >&2
"$py" - "$tmp/ref.npz" "$here/hf_ref.npz" <<'PY'
import sys, numpy as np
r = np.load(sys.argv[1])
keep = {k: r[k] for k in ["offsets", "token_ids"]}
for l in (0, 10, 20, 30):
    keep[f"resid.{l}"] = r[f"resid.{l}"].astype(np.float32)
np.savez(sys.argv[2], **keep)
PY
