"""Writes a GGUF file with the shape of a real chat model and random weights, for memory and
speed measurements only (its outputs mean nothing): by default Llama-3-8B's shape (32 blocks,
d 4096, ff 14336, 32 query / 8 key-value heads, vocabulary 128256) in llama.cpp's Q4_0
layout (every matrix Q4_0, the output head Q6_K, norms F32), or with `--quant q4_k_m` in
llama.cpp's Q4_K_M layout (every matrix Q4_K but attn_v and ffn_down Q6_K in the first and
last eighth of the blocks and every third block between, as llama.cpp's `use_more_bits`
picks them; the output head Q6_K), with the default model's tokenizer padded to the
vocabulary with reserved control tokens, as Llama 3's own are.

Weights of real 8B models cannot be fetched here; a user with one runs the same code path.
Random block bytes are written straight (no quantisation pass), with half-float scales chosen
so every value is finite and a block's values centre on zero.

Usage (oracle environment: `make oracle`):
  python bench/make-synthetic-gguf.py --tokenizer models/SmolLM2-135M-Instruct.Q4_1.gguf \
      --out bench/out/llama3-8b-shape.Q4_0.gguf [--quant q4_0|q4_k_m] [--layers 32] [--seed 1]
"""
import argparse
import os

import numpy as np
from gguf import GGMLQuantizationType as T, GGML_QUANT_SIZES, GGUFReader, GGUFValueType, GGUFWriter

ap = argparse.ArgumentParser()
ap.add_argument("--tokenizer", required=True, help="a GGUF file whose tokenizer.* metadata to copy")
ap.add_argument("--out", required=True)
ap.add_argument("--layers", type=int, default=32)
ap.add_argument("--hidden", type=int, default=4096)
ap.add_argument("--ff", type=int, default=14336)
ap.add_argument("--heads", type=int, default=32)
ap.add_argument("--kv-heads", type=int, default=8)
ap.add_argument("--vocab", type=int, default=128256)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--quant", choices=["q4_0", "q4_k_m"], default="q4_0")
a = ap.parse_args()
rng = np.random.default_rng(a.seed)

src = GGUFReader(a.tokenizer)


def field(name):
    f = src.fields[name]
    if f.types[0] == GGUFValueType.ARRAY:
        if f.types[1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [int(f.parts[i][0]) for i in f.data]
    if f.types[0] == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]][0].item()


tokens = field("tokenizer.ggml.tokens")
types = field("tokenizer.ggml.token_type")
if a.vocab < len(tokens):
    raise SystemExit(f"--vocab {a.vocab} is below the tokenizer's {len(tokens)} tokens")
pad = a.vocab - len(tokens)
tokens += [f"<|reserved_special_token_{i}|>" for i in range(pad)]
types += [3] * pad  # control

tmp = a.out + ".part"
w = GGUFWriter(tmp, "llama")
w.add_name("synthetic Llama-3-8B shape (random weights)")
w.add_block_count(a.layers)
w.add_context_length(8192)
w.add_embedding_length(a.hidden)
w.add_feed_forward_length(a.ff)
w.add_head_count(a.heads)
w.add_head_count_kv(a.kv_heads)
w.add_rope_freq_base(500000.0)
w.add_layer_norm_rms_eps(1e-5)
w.add_vocab_size(a.vocab)
w.add_rope_dimension_count(a.hidden // a.heads)
w.add_file_type(2 if a.quant == "q4_0" else 15)  # MOSTLY_Q4_0 / MOSTLY_Q4_K_M
w.add_tokenizer_model(field("tokenizer.ggml.model"))
w.add_tokenizer_pre(field("tokenizer.ggml.pre"))
w.add_token_list(tokens)
w.add_token_types(types)
w.add_token_merges(field("tokenizer.ggml.merges"))
w.add_bos_token_id(field("tokenizer.ggml.bos_token_id"))
w.add_eos_token_id(field("tokenizer.ggml.eos_token_id"))
w.add_add_bos_token(bool(field("tokenizer.ggml.add_bos_token")))
w.add_chat_template(field("tokenizer.chat_template"))

d, ff, hd = a.hidden, a.ff, a.hidden // a.heads
kv = a.kv_heads * hd
Q = T.Q4_0 if a.quant == "q4_0" else T.Q4_K


def more_bits(i):  # llama.cpp's use_more_bits(i_layer, n_layers)
    n = a.layers
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def wide(i):  # attn_v and ffn_down: Q6_K where Q4_K_M gives them more bits
    return T.Q6_K if a.quant == "q4_k_m" and more_bits(i) else Q


specs = [("token_embd.weight", (a.vocab, d), Q)]
for i in range(a.layers):
    p = f"blk.{i}."
    specs += [
        (p + "attn_norm.weight", (d,), T.F32),
        (p + "attn_q.weight", (d, d), Q),
        (p + "attn_k.weight", (kv, d), Q),
        (p + "attn_v.weight", (kv, d), wide(i)),
        (p + "attn_output.weight", (d, d), Q),
        (p + "ffn_norm.weight", (d,), T.F32),
        (p + "ffn_gate.weight", (ff, d), Q),
        (p + "ffn_up.weight", (ff, d), Q),
        (p + "ffn_down.weight", (d, ff), wide(i)),
    ]
specs += [("output_norm.weight", (d,), T.F32), ("output.weight", (a.vocab, d), T.Q6_K)]


def nbytes(shape, t):
    bs, ts = GGML_QUANT_SIZES[t]
    return int(np.prod(shape)) // bs * ts


for name, shape, t in specs:
    if t == T.F32:
        w.add_tensor_info(name, list(shape), np.dtype(np.float32), nbytes(shape, t), raw_dtype=t)
    else:  # numpy-order byte shape: rows, bytes per row
        bs, ts = GGML_QUANT_SIZES[t]
        byte_shape = [*shape[:-1], shape[-1] // bs * ts]
        w.add_tensor_info(name, byte_shape, np.dtype(np.uint8), nbytes(shape, t), raw_dtype=t)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_ti_data_to_file()


def half(v, n):
    return np.full(n, v, dtype=np.float16).view(np.uint8).reshape(n, 2)


def blocks(shape, t):
    n = int(np.prod(shape))
    if t == T.F32:
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)
    bs, ts = GGML_QUANT_SIZES[t]
    nb = n // bs
    raw = rng.integers(0, 256, (nb, ts), dtype=np.uint8)
    if t == T.Q4_0:  # d, then 16 bytes of nibbles: values d·(q − 8)
        raw[:, 0:2] = half(0.004, nb)
    elif t == T.Q4_K:  # d, dmin, 6-bit scales and minimums, nibbles: d·sc·q − dmin·m
        # random scales and minimums average 31.5, q 7.5: dmin = 7.5·d centres the values
        raw[:, 0:2] = half(0.004 / 31.5, nb)
        raw[:, 2:4] = half(7.5 * 0.004 / 31.5, nb)
    elif t == T.Q6_K:  # ql[128] qh[64] scales[16] (int8) d: values d·scale·(q − 32)
        raw[:, 192:208] = rng.integers(1, 64, (nb, 16), dtype=np.uint8)
        raw[:, 208:210] = half(1e-5, nb)
    return raw.reshape(-1)


for name, shape, t in specs:
    w.write_tensor_data(blocks(shape, t))
w.close()
os.replace(tmp, a.out)
print(f"wrote {a.out}: {os.path.getsize(a.out) / 1e9:.2f} GB")
