#!/usr/bin/env python3
"""same-tensors.py A B: exit 0 when two safetensors files hold the same tensors byte for byte
and the same metadata except the recorded command line (`argv`), else say what differs and
exit 1. `make shards` uses it to check a merged sharded act-dump against the unsharded run.
Standard library only."""
import json
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {}) or {}
    return header, meta, data


def main():
    if len(sys.argv) != 3:
        print("usage: same-tensors.py A.safetensors B.safetensors", file=sys.stderr)
        return 2
    a, b = sys.argv[1], sys.argv[2]
    ha, ma, da = read(a)
    hb, mb, db = read(b)
    bad = []
    if sorted(ha) != sorted(hb):
        bad.append(f"tensor names differ: {sorted(set(ha) ^ set(hb))}")
    for name in sorted(set(ha) & set(hb)):
        ta, tb = ha[name], hb[name]
        if ta["dtype"] != tb["dtype"] or ta["shape"] != tb["shape"]:
            bad.append(f"{name}: {ta['dtype']}{ta['shape']} vs {tb['dtype']}{tb['shape']}")
            continue
        sa = da[ta["data_offsets"][0]:ta["data_offsets"][1]]
        sb = db[tb["data_offsets"][0]:tb["data_offsets"][1]]
        if sa != sb:
            bad.append(f"{name}: bytes differ")
    for key in sorted((set(ma) | set(mb)) - {"argv"}):
        if ma.get(key) != mb.get(key):
            bad.append(f"metadata '{key}': {str(ma.get(key))[:80]!r} vs {str(mb.get(key))[:80]!r}")
    if bad:
        print(f"{a} and {b} differ:", file=sys.stderr)
        for line in bad[:20]:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"same tensors and metadata (argv aside): {a} = {b} ({len(ha)} tensors)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
