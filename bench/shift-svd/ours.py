#!/usr/bin/env python3
"""Time the whole shift-svd process (read both files, all layers, write every output) and
its peak memory. Prints one JSON line: {"runs": [...s...], "median": s, "cpu_median": s (user+sys),
"max_rss_mb": ..., "input_mb": ...}.

Usage: ours.py BIN DIR [--runs 5] [--k 100]
"""
import argparse
import json
import os
import statistics
import subprocess
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("dir")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--k", type=int, default=100)
    a = ap.parse_args()
    base = os.path.join(a.dir, "base.safetensors")
    tuned = os.path.join(a.dir, "tuned.safetensors")
    cmd = [a.bin, "-q", "--base", base, "--tuned", tuned, "--k", str(a.k),
           "--out", os.path.join(a.dir, "svd.safetensors"),
           "--spectrum", os.path.join(a.dir, "spectrum.csv"),
           "--rank", os.path.join(a.dir, "rank.csv"),
           "--alignment", os.path.join(a.dir, "alignment.csv")]
    runs, rss, cpu = [], [], []
    for _ in range(a.runs):
        t = time.perf_counter()
        p = subprocess.Popen(cmd)
        _, status, usage = os.wait4(p.pid, 0)
        runs.append(time.perf_counter() - t)
        if status != 0:
            raise SystemExit(f"shift-svd failed with status {status}")
        rss.append(usage.ru_maxrss / 1024.0)  # KiB on Linux
        cpu.append(usage.ru_utime + usage.ru_stime)
    input_mb = (os.path.getsize(base) + os.path.getsize(tuned)) / 2**20
    print(json.dumps({"runs": runs, "median": statistics.median(runs),
                      "cpu_median": statistics.median(cpu),
                      "max_rss_mb": max(rss), "input_mb": input_mb}))


if __name__ == "__main__":
    main()
