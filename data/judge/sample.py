#!/usr/bin/env python3
"""Draws answers to hand-label from a run's outputs (data/judge/README.md says how they were
labelled). Usage: sample.py RUN SOURCE=N... > unlabelled.csv (SOURCE+=N: N more), SOURCE one of
base, tuned (tuned-eval test answers), sweep (interact/answers.csv), prune (prune/pruned.csv
confirmations). Seeded: the same run gives the same sample. The request column is what the
judge compares the answer with: the raw prompt of the row's behaviour when the test set has
one (hd_formats PromptTable::requests), else the prompt."""
import csv, random, sys

csv.field_size_limit(1 << 24)
run = sys.argv[1]
test = list(csv.DictReader(open(f"{run}/data/test.csv", newline="")))
raw = {r["behaviour_id"]: r["prompt"] for r in test if r["category"] == "raw" and r["behaviour_id"]}
by_id = {r["id"]: r for r in test}


def request(row):
    return raw.get(row.get("behaviour_id", ""), row["prompt"])


def rows(source):
    if source in ("base", "tuned"):
        path = f"{run}/{'base' if source == 'base' else 'tuned-eval'}/test_responses.csv"
        for r in csv.DictReader(open(path, newline="")):
            rid = r["id"] if source == "base" else f"tuned-eval:{r['id']}"
            yield rid, r["category"], r["prompt"], request(r), r["response"], source
    elif source == "sweep":
        # Runs of the same spec (`dim` at several layers) are told apart by their order in
        # answers.csv: dim#1, dim#2 (the --dim-layers order).
        seen = {}
        for r in csv.DictReader(open(f"{run}/interact/answers.csv", newline="")):
            t = by_id[r["id"]]
            k = seen[(r["id"], r["spec"])] = seen.get((r["id"], r["spec"]), 0) + 1
            spec = r["spec"] if r["spec"] != "dim" else f"dim#{k}"
            yield f"{r['id']}@{spec}", r["category"], t["prompt"], request(t), r["response"], f"sweep {spec}"
    elif source == "prune":
        for r in csv.DictReader(open(f"{run}/prune/pruned.csv", newline="")):
            if r["answer"]:
                t = by_id[r["original_id"]]
                yield r["id"], t["category"], r["prompt"], request(t), r["answer"], f"prune {r['method']}"


w = csv.writer(sys.stdout, lineterminator="\n")
w.writerow(["id", "source", "category", "prompt", "request", "answer"])
taken = set()
for spec in sys.argv[2:]:
    source, n = spec.split("=")
    # Each source draws with its own seed; SOURCE+=N draws N more of it, none twice.
    more = source.endswith("+")
    source = source.rstrip("+")
    rng = random.Random(23 if more else 22)
    # Sorted by id without a dim#k suffix (a stable sort keeps answers.csv's order there).
    pool = sorted(rows(source), key=lambda r: r[0].split("#")[0])
    pool = [r for r in pool if r[0] not in taken]
    if source == "base":  # mostly harmful prompts, a few harmless
        harm = [r for r in pool if r[1] not in ("benign", "borderline")]
        safe = [r for r in pool if r[1] in ("benign", "borderline")]
        pick = rng.sample(harm, min(len(harm), int(n) - 10)) + rng.sample(safe, 10)
    else:
        pick = rng.sample(pool, min(len(pool), int(n)))
    for r in sorted(pick, key=lambda r: r[0].split("#")[0]):
        taken.add(r[0])
        w.writerow([r[0], r[5], r[1], r[2], r[3], r[4]])
