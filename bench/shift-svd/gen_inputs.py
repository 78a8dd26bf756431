#!/usr/bin/env python3
"""Benchmark inputs for shift-svd: two act-dump-like safetensors files, LAYERS layers of
N x D float32 activations (default 8 x 700 x 4096, the paper's n and d), written to OUTDIR.

The shift tuned - base is shaped like a real one: a common offset (the mean shift), a
decaying low-rank part (rank 64) and small full-rank noise, so the spectrum is realistic.

Usage: gen_inputs.py OUTDIR [--layers 8] [--n 700] [--d 4096] [--seed 0]
Needs numpy only (safetensors is written by hand: 8-byte header length, JSON, raw data).
"""
import argparse
import json
import os
import struct

import numpy as np


def write_safetensors(path, tensors):
    tensors = {k: np.ascontiguousarray(v, dtype="<f4") for k, v in tensors.items()}
    header = {}
    offset = 0
    for name in sorted(tensors):
        a = tensors[name]
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in sorted(tensors):
            f.write(tensors[name].tobytes())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--n", type=int, default=700)
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    base, tuned = {}, {}
    r = 64
    for i in range(a.layers):
        x = rng.standard_normal((a.n, a.d), dtype=np.float32)
        sig = (20.0 * 0.9 ** np.arange(r)).astype(np.float32)
        u = rng.standard_normal((a.n, r), dtype=np.float32)
        v = rng.standard_normal((r, a.d), dtype=np.float32) / np.sqrt(a.d)
        mean = rng.standard_normal(a.d, dtype=np.float32) * 0.5
        shift = (u * sig) @ v + mean + 0.05 * rng.standard_normal((a.n, a.d), dtype=np.float32)
        base[f"resid.{i}"] = x
        tuned[f"resid.{i}"] = x + shift
    write_safetensors(os.path.join(a.outdir, "base.safetensors"), base)
    write_safetensors(os.path.join(a.outdir, "tuned.safetensors"), tuned)


if __name__ == "__main__":
    main()
