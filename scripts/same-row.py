#!/usr/bin/env python3
"""same-row.py ONE ALL TENSOR ROW: exit 0 when the [1, d] tensor TENSOR of safetensors file ONE
equals row ROW of TENSOR in ALL byte for byte, else say what differs and exit 1. `make smoke`
uses it to check the examples/dump-layer crate against act-dump. Standard library only."""
import json
import struct
import sys


def tensor(path, name):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    if name not in header:
        sys.exit(f"same-row: {path}: no tensor {name}")
    t = header[name]
    start, end = t["data_offsets"]
    return t["shape"], data[start:end]


def main():
    one, all_, name, row = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    (shape1, b1), (shape2, b2) = tensor(one, name), tensor(all_, name)
    width = len(b1)
    if shape1[0] != 1 or shape1[1:] != shape2[1:]:
        sys.exit(f"same-row: {name}: {one} is {shape1}, {all_} is {shape2}")
    if b1 != b2[row * width:(row + 1) * width]:
        sys.exit(f"same-row: {name}: {one} differs from row {row} of {all_}")


main()
