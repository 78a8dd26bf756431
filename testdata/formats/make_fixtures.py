#!/usr/bin/env python3
"""Writes the numpy-made fixtures that crates/formats/tests/numpy_fixtures.rs reads.

Run from anywhere: python3 testdata/formats/make_fixtures.py (numpy >= 1.17).
Values are small integers/halves so the Rust test can state them exactly.
"""
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def out(name):
    return os.path.join(HERE, name)


# 2-D f32 -> read as resid.0; values i / 4.
np.save(out("f32_2d.npy"), (np.arange(12, dtype=np.float32) / 4).reshape(3, 4))
# 3-D [L, n, d] -> resid.0 .. resid.1, each [3, 4]; values 0..23.
np.save(out("layers_3d.npy"), np.arange(24, dtype=np.float32).reshape(2, 3, 4))
# f16 -> widened to f32; values i / 2 (exact in f16).
np.save(out("f16_2d.npy"), (np.arange(6, dtype=np.float16) / 2).reshape(2, 3))
# big-endian int32, 1-D -> arr_0 as i64; values -2..2.
np.save(out("i32_be_1d.npy"), np.arange(-2, 3, dtype=">i4"))
# Fortran order on disk; logically [[0, 1, 2], [3, 4, 5]] f64.
f = np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
assert f.flags.f_contiguous and not f.flags.c_contiguous
np.save(out("fortran_f64.npy"), f)

# npz with our metadata convention: a uint8 array "__metadata__" holding JSON bytes.
meta = {"tool": "numpy", "prompt_ids_hash": "sha256:abc"}
arrays = {
    "resid.0": (np.arange(12, dtype=np.float32) / 4).reshape(3, 4),
    "offsets": np.array([0, 2, 5, 9], dtype=np.int64),
    "__metadata__": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
}
np.savez(out("arrays.npz"), **arrays)
np.savez_compressed(out("arrays_compressed.npz"), **arrays)
