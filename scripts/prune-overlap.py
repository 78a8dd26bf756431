#!/usr/bin/env python3
"""Overlap between the tokens token-prune deleted and the top tokens dir-label found for
components (e.g. the tuned model's secondary components C2..C5).

Usage: prune-overlap.py PRUNED_CSV TOP_TOKENS_CSV [METHOD ...] > overlap.csv

Tokens are compared trimmed and lowercased (as a reader names them); whitespace-only tokens
are left out. For each method (default: every method in PRUNED_CSV) and each component of
TOP_TOKENS_CSV, and for the union of the components ("any"):
  share_in_top   fraction of the method's deleted-token occurrences whose token is among the
                 component's top tokens (`top` = 1, inside dir-label's greedy cut);
  jaccard        |deleted set & top set| / |deleted set | top set|;
  common         the shared tokens, most deleted first.
The random control's share is the chance level to read the others against.
Only the standard library; deterministic output.
"""
import csv
import json
import sys
from collections import Counter


def norm(t):
    return t.strip().lower()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    pruned, tops = sys.argv[1], sys.argv[2]
    deleted = {}
    with open(pruned, newline="") as f:
        for r in csv.DictReader(f):
            c = deleted.setdefault(r["method"], Counter())
            for t in json.loads(r["deleted"]):
                if norm(t):
                    c[norm(t)] += 1
    top = {}
    with open(tops, newline="") as f:
        for r in csv.DictReader(f):
            if r["top"] == "1" and norm(r["token"]):
                top.setdefault(r["component"], set()).add(norm(r["token"]))
    comps = sorted(top, key=lambda n: (len(n), n))
    top["any"] = set().union(*top.values()) if top else set()
    methods = sys.argv[3:] or sorted(deleted)
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["method", "component", "n_deleted", "n_top", "share_in_top", "jaccard", "common"])
    for m in methods:
        c = deleted.get(m, Counter())
        n = sum(c.values())
        for comp in comps + ["any"]:
            t = top[comp]
            inside = sum(v for k, v in c.items() if k in t)
            union = set(c) | t
            common = sorted((k for k in c if k in t), key=lambda k: (-c[k], k))
            w.writerow([
                m, comp, n, len(t),
                f"{inside / n:.4f}" if n else "",
                f"{len(set(c) & t) / len(union):.4f}" if union else "",
                " ".join(common[:15]),
            ])


if __name__ == "__main__":
    main()
