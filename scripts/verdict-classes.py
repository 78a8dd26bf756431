#!/usr/bin/env python3
"""Counts the rows of an act-dump rows CSV whose refusal_score is > 0 (with --refusal-tokens
unsafe --versus-tokens safe: the model prefers `unsafe`'s first token to `safe`), prints one
line saying so, and exits 0 when both classes occur (a labelling dir-label can use), else 1.

    python3 scripts/verdict-classes.py runs/default/base-guard/analysis_rows.csv
"""
import csv
import sys

path = sys.argv[1]
with open(path, newline="", encoding="utf-8") as f:
    scores = [float(r["refusal_score"]) for r in csv.DictReader(f)]
flagged = sum(s > 0 for s in scores)
print(f"{path}: refusal_score > 0 (prefers unsafe to safe) in {flagged} of {len(scores)} rows")
sys.exit(0 if 0 < flagged < len(scores) else 1)
