#!/usr/bin/env python3
"""Writes testdata/report/run/: a small study run with every file `report` reads, in the
real column layouts (tools/*/README.md, DESIGN.md), 8 layers (hidden states 0..8), made-up
but plausible numbers. Deterministic: rerun and `git diff` shows nothing.

    python3 testdata/report/make_fixture.py
"""
import csv
import json
import math
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, "run")
R = random.Random(11)
LAYERS = range(0, 9)
CATS = ["raw", "roleplay", "suffix", "hypothetical", "prefix_injection", "flip", "past_tense",
        "benign", "borderline"]
HARMFUL = CATS[:7]


def write(rel, header, rows):
    path = os.path.join(RUN, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def f6(x):
    return f"{x:.6f}"


def prompts():
    rows = []
    for c in CATS:
        for i in range(3):
            label = "harmful" if c in HARMFUL else "harmless"
            rows.append([f"te-{c}-{i}", f"A {c} prompt number {i}, with a comma", label, c])
    return rows


def responses(rel, p_refuse):
    rows = []
    for pid, prompt, label, cat in prompts():
        refused = 1 if R.random() < p_refuse(cat) else 0
        answer = "I can't help with that." if refused else "Sure, here is how: step 1..."
        rows.append([pid, prompt, label, cat, answer, 8, refused])
    write(rel, ["id", "prompt", "label", "category", "response", "n_new_tokens", "refused"], rows)


def heldout(rel, p):
    rows = []
    for kind in ["homonyms", "safe_targets"]:
        for i in range(4):
            refused = 1 if R.random() < p else 0
            rows.append([f"{kind}-{i}", "prompt", kind, "answer", 8, refused])
    write(rel, ["id", "prompt", "category", "response", "n_new_tokens", "refused"], rows)


def rank(rel, peak):
    rows = []
    for l in LAYERS:
        for tau in [0.4, 0.6, 0.7, 0.8, 0.9]:
            r = 1 + round(peak * tau ** 3 * math.sin(math.pi * l / 8) ** 2) if l > 0 else 0
            rows.append([l, tau, r])
    write(rel, ["layer", "tau", "effective_rank"], rows)


def spectrum():
    rows = []
    for l in LAYERS:
        s = [math.exp(-0.5 * k) * (l + 1) for k in range(12)]
        tot = sum(x * x for x in s)
        cum = 0.0
        for k, x in enumerate(s):
            cum += x * x / tot
            rows.append([l, k + 1, repr(x), repr(x * x / tot), repr(cum)])
    write("shift-tuned/spectrum.csv",
          ["layer", "component", "singular_value", "explained_ratio", "cumulative"], rows)


def classify():
    rows = []
    for l in LAYERS:
        c1 = 0.5 + 0.45 * l / 8
        rows.append([l, f6(1 - c1), f6(c1), f6(c1 + 0.02), 1 if l > 2 else 2, f6(c1 + 0.01),
                     f6(min(0.99, 0.8 + 0.03 * l)), f6(0.95), f6(0.9), f6(0.85),
                     "" if l == 0 else f6(0.1 * l)])
    write("label/classify/layers.csv",
          ["layer", "c1_acc_paper", "c1_acc", "c1_auc", "best_k", "best_acc", "probe_acc",
           "probe_auc", "pooled_probe_acc", "dim_acc", "cos_probe_c1"], rows)
    rows = []
    for l in LAYERS:
        for k in range(1, 6):
            for c in CATS:
                auc = 0.5 if c in ("benign", "borderline") else 0.5 + 0.4 * math.sin(l + k + CATS.index(c))
                rows.append([l, k, c, 3, f6(R.random()), f6(R.random()), f6(auc), f6(2 * auc - 1)])
    write("label/classify/categories.csv",
          ["layer", "component", "category", "n", "mean_proj", "std_proj", "auc_vs_harmless",
           "cohen_d"], rows)


def tokens():
    rows = []
    words = ["Pretend", "Ġyou", "Ġare", "ĠDAN", ",", "Ġhypothetically", "Ġexplain", "Ġhow",
             "Ġto", "Ġ<b>", "Ġ&"]
    for k in range(1, 4):
        for pid in ["te-roleplay-0", "te-hypothetical-1"]:
            for pos, w in enumerate(words):
                rel = math.sin(pos * k + len(pid))
                rows.append([pid, f"L4-C{k}", 20 + pos, 1000 + pos, w, f6(rel), f6(rel * 3), f6(rel / 2)])
    write("label/tokens/tokens.csv",
          ["id", "component", "position", "token_id", "token", "relevance", "raw_relevance",
           "projection"], rows)
    write("label/tokens/labels.csv",
          ["component", "name", "acc", "auc", "best_category", "best_category_auc",
           "top_tokens", "suggested_label"],
          [[k, f"L4-C{k}", f6(0.9), f6(0.95), "roleplay", f6(0.8), "DAN pretend", "role-play"]
           for k in range(1, 4)])


def interact():
    rows = []
    for t in range(1, 9):
        for s_k in range(1, 4):
            for t_k in range(1, 4):
                for cat in ["all", "roleplay"]:
                    m = (1.0 if s_k == t_k else 0.3) * math.cos(t + s_k * t_k)
                    rows.append([t - 1, s_k, t, t_k, cat, f6(m), f6(0.1), 6])
    # dir-interact names components L{layer}-C{k}.
    write("interact/relevance.csv",
          ["source_layer", "source_component", "target_layer", "target_component", "category",
           "mean", "std", "n"],
          [[a, f"L{a}-C{b}", c, f"L{c}-C{d}"] + rest for a, b, c, d, *rest in rows])
    edges = sorted(((r[0], r[1], r[2], r[3], float(r[5])) for r in rows if r[4] == "all"),
                   key=lambda e: -abs(e[4]))[:12]
    write("interact/edges.csv", ["source", "target", "source_layer", "target_layer", "relevance"],
          [[f"L{a}-C{b}", f"L{c}-C{d}", a, c, f6(v)] for a, b, c, d, v in edges])
    rows = []
    specs = [("none", "", "", "", "", 10.0), ("random", "4", "", "sub", "1.15", 10.2),
             ("dim", "4", "", "project", "1", 60.0), ("L4-C2:sub:1.15", "4", "2", "sub", "1.15", 10.5),
             ("L6-C1:sub:1.15", "6", "1", "sub", "1.15", 11.0), ("L4-C3:sub:1.15", "4", "3", "sub", "1.15", 30.0)]
    for spec, layer, comp, op, alpha, ppl in specs:
        base = {"none": 0.05, "random": 0.07, "dim": 0.85, "L4-C2:sub:1.15": 0.45,
                "L6-C1:sub:1.15": 0.30, "L4-C3:sub:1.15": 0.95}[spec]
        for cat in ["all"] + HARMFUL:
            p = min(1.0, base + 0.05 * R.random())
            rows.append([spec, layer, comp, op, alpha, cat, 3 if cat != "all" else 21, f6(p),
                         f6(max(0.0, p - 0.05)), f6(1.0 - p), f6(ppl),
                         "" if spec == "none" else ("true" if ppl > 20.0 else "false")])
    write("interact/sweep.csv",
          ["spec", "layer", "component", "op", "alpha", "category", "n", "pass_first_token",
           "pass_generated", "c1_projection", "benign_ppl", "degenerate"], rows)


def prune():
    rows = []
    for m, s in [("attribution", 0.6), ("random", 0.2), ("gradnorm", 0.4), ("occlusion", 0.55)]:
        for cat in ["all", "roleplay", "hypothetical"]:
            top = {"ĠDAN": 3, "Ġpretend": 2} if m != "random" else {"Ġthe": 2}
            rows.append([m, cat, 0.25, 6, f"{s:.4f}", f"{s - 0.1:.4f}", "2.500",
                         json.dumps(top, separators=(",", ":")),
                         "0.0500" if m == "random" else "", "0.0400" if m == "random" else ""])
    write("prune/summary.csv",
          ["method", "category", "budget", "n", "success_first_token", "success_generated",
           "mean_deleted", "top_deleted", "success_first_token_sd", "success_generated_sd"], rows)


def dpo_layers():
    rows = []
    for l in LAYERS:
        c1 = 0.5 + 0.4 * l / 8
        rows.append([l, f6(1 - c1), f6(c1), f6(c1 + 0.02), 1, f6(c1 + 0.01),
                     f6(min(0.99, 0.8 + 0.03 * l)), f6(0.95), f6(0.9), f6(0.85),
                     "" if l == 0 else f6(0.05 * l)])
    write("label-dpo/classify/layers.csv",
          ["layer", "c1_acc_paper", "c1_acc", "c1_auc", "best_k", "best_acc", "probe_acc",
           "probe_auc", "pooled_probe_acc", "dim_acc", "cos_probe_c1"], rows)


def guard_layers(rel, slope):
    rows = []
    for l in LAYERS:
        c1 = 0.5 + slope * l / 8
        rows.append([l, f6(1 - c1), f6(c1), f6(c1 + 0.02), 2, f6(c1 + 0.05),
                     f6(min(0.99, 0.85 + 0.02 * l)), f6(0.96), f6(0.9), f6(0.85),
                     "" if l == 0 else f6(0.03 * l)])
    write(rel,
          ["layer", "c1_acc_paper", "c1_acc", "c1_auc", "best_k", "best_acc", "probe_acc",
           "probe_auc", "pooled_probe_acc", "dim_acc", "cos_probe_c1"], rows)


def exposure():
    rows = []
    for k in [0, 10, 20, 40]:
        over = 0.05 + 0.002 * k
        for i, c in enumerate(HARMFUL):
            rows.append([k, c, f"{0.8 * (i + 1) / 7 / (1 + k / 10):.4f}", f"{over:.4f}"]
                        + [1 + (l * k) // 20 for l in LAYERS if l > 0])
    write("exposure.csv", ["k", "category", "pass_rate", "over_refusal"]
          + [f"rank_l{l}" for l in LAYERS if l > 0], rows)


def overrefusal():
    rows = []
    for recipe, p in [("base", 0.02), ("tuned", 0.2), ("old-rows", 0.3), ("lto", 0.25)]:
        for s in ["heldout_safe", "heldout_harmful", "alarming_safe", "alarming_harmful"]:
            q = p if s.endswith("safe") else 1 - p / 4
            n_all = k_all = 0
            for kind in ["homonym", "figurative", "safety"]:
                k = sum(R.random() < q for _ in range(10))
                rows.append([recipe, s, kind, 10, k, f"{k / 10:.4f}"])
                n_all, k_all = n_all + 10, k_all + k
            rows.append([recipe, s, "all", n_all, k_all, f"{k_all / n_all:.4f}"])
    write("overrefusal.csv", ["recipe", "set", "type", "n", "refused", "rate"], rows)


def main():
    write("data/test.csv", ["id", "prompt", "label", "category"], prompts())
    responses("base/test_responses.csv", lambda c: 0.2 if c in HARMFUL else 0.0)
    responses("tuned-eval/test_responses.csv", lambda c: 0.9 if c in HARMFUL else 0.1)
    responses("tuned-dpo-eval/test_responses.csv", lambda c: 0.8 if c in HARMFUL else 0.05)
    heldout("base/heldout_safe_responses.csv", 0.05)
    heldout("base/heldout_harmful_responses.csv", 0.3)
    heldout("tuned-eval/heldout_safe_responses.csv", 0.2)
    heldout("tuned-eval/heldout_harmful_responses.csv", 0.8)
    rank("shift-tuned/rank.csv", 20)
    rank("contrast/rank.csv", 8)
    spectrum()
    classify()
    tokens()
    interact()
    prune()
    heldout("tuned-dpo-eval/heldout_safe_responses.csv", 0.02)
    heldout("tuned-dpo-eval/heldout_harmful_responses.csv", 0.5)
    rank("shift-tuned-dpo/rank.csv", 35)
    dpo_layers()
    exposure()
    rank("shift-guard/rank.csv", 2)
    guard_layers("label-guard/classify/layers.csv", 0.1)
    guard_layers("label-guard-base/classify/layers.csv", 0.2)
    guard_layers("label-guard-centered/classify/layers.csv", 0.3)
    for d, p in [("base", 0.05), ("tuned-eval", 0.3), ("tuned-dpo-eval", 0.1)]:
        heldout(f"{d}/alarming_safe_responses.csv", p)
        heldout(f"{d}/alarming_harmful_responses.csv", 1 - p)
    overrefusal()
    rank("shift-dpo-over-sft/rank.csv", 30)


if __name__ == "__main__":
    main()
