"""Makes blocks.safetensors: for each GGUF weight type hidden-dims runs as stored, a [12, 512]
matrix's raw block bytes (`{type}.bytes`, U8) and gguf-py's own dequantisation of them
(`{type}.f32`, F32), the independent reference the Rust tests check `Matrix` against.

Legacy types are quantised from seeded normal values with gguf-py; k-quants (which gguf-py
only dequantises) are seeded random bytes with finite half-float scales. Run with the oracle
environment (`make oracle`): python testdata/quant/make_blocks.py
"""
import numpy as np
from gguf import GGMLQuantizationType as T, GGML_QUANT_SIZES, quants
from safetensors.numpy import save_file

ROWS, COLS = 12, 512
rng = np.random.default_rng(19)
out = {}
for t in [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]:
    x = rng.normal(0, 0.05, (ROWS, COLS)).astype(np.float32)
    if t == T.F16:
        raw = x.astype(np.float16).view(np.uint8)
    else:
        raw = quants.quantize(x, t)
    out[f"{t.name}.bytes"] = np.ascontiguousarray(raw).reshape(-1)
    out[f"{t.name}.f32"] = quants.dequantize(raw, t).astype(np.float32).reshape(ROWS, COLS)
# (offsets of the f16 scale fields in each k-quant block)
halfs = {T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}
for t, offs in halfs.items():
    bs, ts = GGML_QUANT_SIZES[t]
    nb = ROWS * COLS // bs
    raw = rng.integers(0, 256, (nb, ts), dtype=np.uint8)
    for o in offs:
        h = rng.uniform(-0.01, 0.01, nb).astype(np.float16).view(np.uint8).reshape(nb, 2)
        raw[:, o:o + 2] = h
    raw = raw.reshape(ROWS, COLS // bs * ts)
    out[f"{t.name}.bytes"] = raw.reshape(-1)
    out[f"{t.name}.f32"] = quants.dequantize(raw, t).astype(np.float32).reshape(ROWS, COLS)
save_file(out, "testdata/quant/blocks.safetensors")
print("wrote testdata/quant/blocks.safetensors:", sorted({k.split('.')[0] for k in out}))
