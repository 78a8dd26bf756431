#!/usr/bin/env python3
"""The first 12 raw and 12 roleplay rows of a train split (harmful rows with refusal
targets): enough for a few safety-tune steps that make a model refuse at the first token, for
the smoke pipelines (scripts/pair-smoke.sh, scripts/family-smoke.sh).

  mini-train.py TRAIN_CSV OUT_CSV
"""
import csv
import sys

rows = list(csv.DictReader(open(sys.argv[1], newline="")))
keep = [r for r in rows if r["category"] == "raw"][:12] + [r for r in rows if r["category"] == "roleplay"][:12]
with open(sys.argv[2], "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0].keys()), lineterminator="\n")
    w.writeheader()
    w.writerows(keep)
