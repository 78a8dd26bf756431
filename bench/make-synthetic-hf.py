"""Writes a Hugging Face directory with the shape of a real chat model and random bf16
weights, sharded as transformers saves them (`model.safetensors.index.json` and 5 GB shards),
for memory and speed measurements only (its outputs mean nothing): by default Llama-3-8B's
shape (32 blocks, d 4096, ff 14336, 32 query / 8 key-value heads, vocabulary 128256), with the
tokenizer files of a small Hugging Face directory of the same tokenizer family (the vocabulary
rows past the tokenizer's are never looked up).

Values: a pool of random bf16 numbers (normal, σ 0.02) tiled over each tensor, so writing 16 GB
takes about a minute; norms are 1.

Usage (oracle environment):
  python bench/make-synthetic-hf.py --tokenizer-dir DIR --out bench/out/llama3-8b-shape-bf16
"""
import argparse
import json
import os
import shutil
import struct

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--tokenizer-dir", required=True,
                help="a Hugging Face directory whose tokenizer files to copy")
ap.add_argument("--out", required=True)
ap.add_argument("--layers", type=int, default=32)
ap.add_argument("--hidden", type=int, default=4096)
ap.add_argument("--ff", type=int, default=14336)
ap.add_argument("--heads", type=int, default=32)
ap.add_argument("--kv-heads", type=int, default=8)
ap.add_argument("--vocab", type=int, default=128256)
ap.add_argument("--shard-gb", type=float, default=5.0)
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()
rng = np.random.default_rng(a.seed)
pool = (rng.standard_normal(1 << 24, dtype=np.float32) * 0.02).view(np.uint32) >> 16
pool = pool.astype(np.uint16)
hd = a.hidden // a.heads

tensors = [("model.embed_tokens.weight", (a.vocab, a.hidden))]
for i in range(a.layers):
    p = f"model.layers.{i}"
    tensors += [
        (f"{p}.input_layernorm.weight", (a.hidden,)),
        (f"{p}.self_attn.q_proj.weight", (a.heads * hd, a.hidden)),
        (f"{p}.self_attn.k_proj.weight", (a.kv_heads * hd, a.hidden)),
        (f"{p}.self_attn.v_proj.weight", (a.kv_heads * hd, a.hidden)),
        (f"{p}.self_attn.o_proj.weight", (a.hidden, a.heads * hd)),
        (f"{p}.post_attention_layernorm.weight", (a.hidden,)),
        (f"{p}.mlp.gate_proj.weight", (a.ff, a.hidden)),
        (f"{p}.mlp.up_proj.weight", (a.ff, a.hidden)),
        (f"{p}.mlp.down_proj.weight", (a.hidden, a.ff)),
    ]
tensors += [("model.norm.weight", (a.hidden,)), ("lm_head.weight", (a.vocab, a.hidden))]

os.makedirs(a.out, exist_ok=True)
limit = int(a.shard_gb * 1e9)
shards, cur, size = [], [], 0
for name, shape in tensors:
    n = int(np.prod(shape)) * 2
    if cur and size + n > limit:
        shards.append(cur)
        cur, size = [], 0
    cur.append((name, shape))
    size += n
shards.append(cur)
ONE = np.uint16(0x3F80)  # bf16 1.0
weight_map, total = {}, 0
for k, shard in enumerate(shards):
    fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shard:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
        weight_map[name] = fname
    total += off
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(a.out, fname), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name, shape in shard:
            count = int(np.prod(shape))
            if len(shape) == 1:
                f.write(np.full(count, ONE, dtype=np.uint16).tobytes())
                continue
            start = 0
            while start < count:
                m = min(len(pool), count - start)
                f.write(pool[:m].tobytes())
                start += m
json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
          open(os.path.join(a.out, "model.safetensors.index.json"), "w"), indent=2)
cfg = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": a.hidden, "intermediate_size": a.ff, "num_hidden_layers": a.layers,
    "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "head_dim": hd,
    "vocab_size": a.vocab, "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "max_position_embeddings": 8192, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "attention_bias": False, "mlp_bias": False,
}
json.dump(cfg, open(os.path.join(a.out, "config.json"), "w"), indent=2)
for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json",
          "special_tokens_map.json", "chat_template.jinja"]:
    src = os.path.join(a.tokenizer_dir, f)
    if os.path.exists(src):
        shutil.copy(src, os.path.join(a.out, f))
print(f"{a.out}: {len(shards)} shards, {total / 1e9:.2f} GB")
