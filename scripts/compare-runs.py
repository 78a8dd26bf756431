"""Two run folders of the same study side by side (e.g. `make demo` and `make demo
RUN=runs/fast COMPUTE=fast`): the report's headline numbers, the refusal summaries, the
effective rank of the shift per layer, C1 and the probe per layer, the sweep's pass rates and
token-prune's success, and the stage times. Markdown on stdout (BENCHMARKS.md's tables).
Usage: python3 scripts/compare-runs.py RUN_A RUN_B [NAME_A NAME_B]
"""
import csv
import os
import sys

a, b = sys.argv[1:3]
na, nb = (sys.argv[3:5] if len(sys.argv) >= 5 else (a, b))


def rows(run, rel):
    path = os.path.join(run, rel)
    if not os.path.exists(path):
        sys.exit(f"compare-runs: {path}: missing (run the stage first)")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def table(head, body):
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in body:
        print("| " + " | ".join(str(c) for c in r) + " |")
    print()


# The report's numbers: one row per number, both runs' values.
def numbers(run):
    out = {}
    for line in open(os.path.join(run, "report", "numbers.md")):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] not in ("number", "---"):
            out[cells[0]] = cells[1]
    return out


A, B = numbers(a), numbers(b)
print(f"### Headline numbers ({na} | {nb})\n")
table(["number", na, nb], [[k, A[k], B.get(k, "—")] for k in A])

# Refusal summaries: refused / n over the rows of each set (test.csv split into its harmful
# categories and its benign and borderline ones).
HARMLESS = ("benign", "borderline")


def refused(run, model, s, pick):
    path = os.path.join(run, model, f"{s}_summary.txt")
    if not os.path.exists(path):
        return "—"
    n = k = 0
    for line in list(open(path))[1:]:
        f = line.split()
        if len(f) >= 3 and pick(f[0]):
            n, k = n + int(f[1]), k + int(f[2])
    return f"{k}/{n} = {100 * k / n:.1f}%" if n else "—"


print("### Refusal rates (generate's summaries)\n")
body = []
sets = [("test", "test harmful", lambda c: c not in HARMLESS), ("test", "test benign+borderline", lambda c: c in HARMLESS)]
sets += [(s, s, lambda c: True) for s in ("heldout_safe", "heldout_harmful", "alarming_safe", "alarming_harmful")]
for model in ("base", "tuned-eval"):
    for s, name, pick in sets:
        body.append([model, name, refused(a, model, s, pick), refused(b, model, s, pick)])
table(["model", "set", na, nb], body)

# Effective rank of tuned − base at tau = 0.9, and C1 / probe accuracy, per layer.
ra = {r["layer"]: r["effective_rank"] for r in rows(a, "shift-tuned/rank.csv") if r["tau"] == "0.9"}
rb = {r["layer"]: r["effective_rank"] for r in rows(b, "shift-tuned/rank.csv") if r["tau"] == "0.9"}
ca = {r["layer"]: r for r in rows(a, "label/classify/layers.csv")}
cb = {r["layer"]: r for r in rows(b, "label/classify/layers.csv")}
print("### Per layer: effective rank of the shift (tau 0.9), C1 accuracy, probe accuracy\n")
body = []
for l in sorted(ra, key=int):
    f = lambda d, k: f"{float(d[l][k]):.3f}"
    body.append([l, ra[l], rb[l], f(ca, "c1_acc"), f(cb, "c1_acc"), f(ca, "probe_acc"), f(cb, "probe_acc")])
table(["layer", f"rank {na}", f"rank {nb}", f"C1 {na}", f"C1 {nb}", f"probe {na}", f"probe {nb}"], body)
diff = lambda k: max(abs(float(ca[l][k]) - float(cb[l][k])) for l in ca)
print(f"Largest per-layer difference: C1 {diff('c1_acc'):.3f}, probe {diff('probe_acc'):.3f}; "
      f"effective rank differs at {sum(ra[l] != rb[l] for l in ra)} of {len(ra)} layers.\n")

# The sweep: every run's pass rate over all its prompts.
sa = {r["spec"]: r for r in rows(a, "interact/sweep.csv") if r["category"] == "all"}
sb = {r["spec"]: r for r in rows(b, "interact/sweep.csv") if r["category"] == "all"}
print("### The sweep (all swept prompts): first-token pass rate, generated pass rate\n")
pct = lambda v: f"{100 * float(v):.1f}%" if v not in ("", None) else "—"
body = [[s, pct(sa[s]["pass_first_token"]), pct(sb[s]["pass_first_token"]) if s in sb else "not run",
         pct(sa[s]["pass_generated"]), pct(sb[s]["pass_generated"]) if s in sb else "not run"] for s in sa]
body += [[s, "not run", pct(sb[s]["pass_first_token"]), "not run", pct(sb[s]["pass_generated"])] for s in sb if s not in sa]
table(["run", f"first token {na}", f"first token {nb}", f"generated {na}", f"generated {nb}"], body)

# token-prune: success per method over all categories.
def prune(run):
    out = {}
    for r in rows(run, "prune/summary.csv"):
        m = out.setdefault(r["method"], [0.0, 0])
        m[0] += float(r["success_first_token"]) * int(r["n"])
        m[1] += int(r["n"])
    return {k: f"{100 * s / n:.1f}% (n = {n})" for k, (s, n) in out.items()}


pa, pb = prune(a), prune(b)
print("### token-prune: first-token success per method\n")
table(["method", na, nb], [[m, pa[m], pb.get(m, "—")] for m in pa])

# Stage times.
ta = {r["stage"]: r["seconds"] for r in csv.DictReader(open(os.path.join(a, "stage_times.tsv")), delimiter="\t")}
tb = {r["stage"]: r["seconds"] for r in csv.DictReader(open(os.path.join(b, "stage_times.tsv")), delimiter="\t")}
print("### Stage times (s)\n")
table(["stage", na, nb], [[s, ta[s], tb.get(s, "—")] for s in ta])
