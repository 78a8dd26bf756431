#!/usr/bin/env python3
"""Rewrites one tensor or metadata key of a safetensors file (Python stdlib only), for the
bad-input sweep (scripts/bad-inputs.sh): a components file with a zero or x1000 row, a
mean_shift of zeros, a NaN, another 'shift' in the metadata.

  tensor-edit.py IN OUT TENSOR ROW OP [VALUE]   OP: zero | scale | nan (ROW -1: every row)
  tensor-edit.py IN OUT --meta KEY VALUE
  tensor-edit.py IN OUT --meta-del KEY...
"""
import json
import math
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    return header, bytearray(data[8 + n :])


def write(path, header, body):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + bytes(body))


def main(argv):
    src, dst = argv[1], argv[2]
    header, body = read(src)
    if argv[3] == "--meta-del":
        for k in argv[4:]:
            header.get("__metadata__", {}).pop(k, None)
        write(dst, header, body)
        return
    if argv[3] == "--meta":
        header.setdefault("__metadata__", {})[argv[4]] = argv[5]
        write(dst, header, body)
        return
    name, row, op = argv[3], int(argv[4]), argv[5]
    t = header[name]
    assert t["dtype"] == "F32", t["dtype"]
    width = t["shape"][-1]
    rows = 1 if len(t["shape"]) == 1 else t["shape"][0]
    start = t["data_offsets"][0]
    for r in range(rows) if row < 0 else [row]:
        for c in range(width):
            at = start + 4 * (r * width + c)
            (v,) = struct.unpack_from("<f", body, at)
            v = {"zero": 0.0, "scale": v * float(argv[6]) if len(argv) > 6 else v, "nan": math.nan}[op]
            struct.pack_into("<f", body, at, v)
    write(dst, header, body)


if __name__ == "__main__":
    main(sys.argv)
