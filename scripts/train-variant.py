#!/usr/bin/env python3
"""train-variant.py OUT_DIR TRAIN ANSWERS [--drop-source S] [--drop-types T1,T2] [--ours DIR]

A train set and its base answers without some rows (`make overrefusal`): OUT_DIR/train.csv
and OUT_DIR/answers.csv, the rows of TRAIN (and ANSWERS, a `generate` output over its
harmless rows) kept in order, minus
  --drop-source S: rows whose `source` is S (e.g. hidden-dims-styles: the train-only rows
                   written in other wordings);
  --drop-types T,...: train-only rows (train_borderline.csv / train_harmful.csv of --ours,
                   default data/prompts) whose `type` is one of T, harmless and harmful alike
                   (leave-types-out: the held-out sets' rows of those types measure how the
                   boundary carries over to types never trained).
Standard library only; writes each file whole or not at all."""
import argparse
import csv
import os
import sys


def read(path):
    with open(path, newline="") as f:
        r = csv.reader(f)
        try:
            head = next(r)
        except StopIteration:
            sys.exit(f"train-variant: {path}: empty file (expected a header)")
        return head, list(r)


def col(path, head, name):
    if name not in head:
        sys.exit(f"train-variant: {path}: no '{name}' column (found: {', '.join(head)})")
    return head.index(name)


def write(path, head, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(head)
        w.writerows(rows)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("train")
    ap.add_argument("answers")
    ap.add_argument("--drop-source", action="append", default=[])
    ap.add_argument("--drop-types", default="")
    ap.add_argument("--ours", default="data/prompts")
    a = ap.parse_args()
    types = {t for t in a.drop_types.split(",") if t}
    typed = {}
    if types:
        for name in ("train_borderline.csv", "train_harmful.csv"):
            p = os.path.join(a.ours, name)
            head, rows = read(p)
            i, t = col(p, head, "id"), col(p, head, "type")
            typed.update({r[i]: r[t] for r in rows})
        unknown = types - set(typed.values())
        if unknown:
            sys.exit(f"train-variant: --drop-types {','.join(sorted(unknown))}: no such type in "
                     f"{a.ours}/train_*.csv (found: {', '.join(sorted(set(typed.values())))})")
    head, rows = read(a.train)
    i_id, i_src, i_beh = (col(a.train, head, c) for c in ("id", "source", "behaviour_id"))
    keep = [r for r in rows
            if r[i_src] not in a.drop_source and typed.get(r[i_beh]) not in types]
    if not keep:
        sys.exit(f"train-variant: {a.train}: no rows left")
    ids = {r[i_id] for r in keep}
    ahead, arows = read(a.answers)
    a_id = col(a.answers, ahead, "id")
    akeep = [r for r in arows if r[a_id] in ids]
    os.makedirs(a.out_dir, exist_ok=True)
    write(os.path.join(a.out_dir, "answers.csv"), ahead, akeep)
    write(os.path.join(a.out_dir, "train.csv"), head, keep)
    print(f"train-variant: {a.out_dir}: {len(keep)} of {len(rows)} train rows, "
          f"{len(akeep)} of {len(arows)} answers", file=sys.stderr)


if __name__ == "__main__":
    main()
