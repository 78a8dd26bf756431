#!/usr/bin/env python3
"""The numpy baseline for shift-svd: load base/tuned safetensors (made by gen_inputs.py),
form the shifts, and time numpy.linalg.svd(D, full_matrices=False) over all layers.

Only the SVD calls are timed ("numpy's compute alone"); reading and subtracting are not.
Prints one JSON line: {"dtype": ..., "runs": [...seconds...], "median": ...,
"cpu_median": ... (process CPU time, all threads)}.

Usage: numpy_svd.py DIR [--runs 5] [--dtype float32|float64]
  float32: the shifts as stored (LAPACK sgesdd);
  float64: as the paper's scripts hold them (dgesdd).
"""
import argparse
import json
import os
import struct
import statistics
import time

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(h["shape"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    a = ap.parse_args()
    base = read_safetensors(os.path.join(a.dir, "base.safetensors"))
    tuned = read_safetensors(os.path.join(a.dir, "tuned.safetensors"))
    names = sorted(base, key=lambda s: int(s.split(".")[1]))
    shifts = [tuned[k].astype(a.dtype) - base[k].astype(a.dtype) for k in names]
    runs, cpu = [], []
    for _ in range(a.runs):
        c = time.process_time()
        t = time.perf_counter()
        for d in shifts:
            np.linalg.svd(d, full_matrices=False)
        runs.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    print(json.dumps({"dtype": a.dtype, "layers": len(shifts), "shape": list(shifts[0].shape),
                      "runs": runs, "median": statistics.median(runs),
                      "cpu_median": statistics.median(cpu)}))


if __name__ == "__main__":
    main()
