#!/usr/bin/env python3
"""Make the dir-label classify fixture and numpy/scikit-learn's answers for it.

Run from anywhere: `python3 testdata/dir-label/make_reference.py` (needs numpy and
scikit-learn; `bench/setup-oracle.sh` makes an environment with both). Writes reference.json
next to this script; crates/analysis/tests/classify_reference.rs checks hd-analysis against it.

Inputs (seeded): 60 rows, 26 positive (`harmful`), categories roleplay/weapons/cyber
(harmful) and benign/borderline (harmless); three layers of d = 16, stored as float32
values (what act-dump writes), computed on here in float64:
    layer 0: every row the same (the template token: constant features);
    layer 1: Gaussian noise + 2.5·u for positives + 2·v for roleplay rows;
    layer 2: Gaussian rows rounded to multiples of 0.5 (ties in the projections).
Components: 8 orthonormal rows per layer (layer 1: the first two are ±u, ±v; layer 2: ±e0,
±e1, so projections tie).

Expected values, computed the way the paper's reference and scikit-learn do:
    split        the stratified half split (hd_analysis::classify::half_split, seed 42),
                 reproduced here with the same SplitMix64 recipe;
    percentile   numpy.percentile of a few arrays at a few q (the default linear method);
    components   per layer and component: acc_paper (proj on -c, threshold
                 percentile(proj, 100 - 100 p), predict proj > thr), acc (better orientation),
                 auc (sklearn roc_auc_score of x.c), sep (mean((p - mean p)(2y - 1)), p = x.c);
    probe        StandardScaler fitted on the training half + LogisticRegression(C=1) solved
                 to convergence (newton-cholesky, tol 1e-12): coef (standardised space),
                 intercept, held-out accuracy and AUC; plus the held-out accuracy of
                 sklearn's defaults (lbfgs, 100 iterations), for the "within one sample" check;
    pooled       LogisticRegression(C=1, fit_intercept=False) on the raw training rows of all
                 layers pooled (converged), coef and held-out accuracy per layer;
    dim          mean difference of the training half, the acc_paper rule on the held-out half;
    categories   per layer, component and category: n, mean, population std, AUC against
                 the harmless rows outside the category (sklearn), Cohen's d (pooled sample sd; null
                 without spread).
"""
import json
import os

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
M64 = (1 << 64) - 1
SEED = 42
N, D, K = 60, 16, 8


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def half_split(y, seed):
    s = splitmix64(seed)
    train, test = [], []
    for cls in (False, True):
        rows = sorted((splitmix64(s ^ i), i) for i in range(len(y)) if bool(y[i]) == cls)
        half = len(rows) // 2
        train += [i for _, i in rows[:half]]
        test += [i for _, i in rows[half:]]
    return sorted(train), sorted(test)


def rule_acc(proj, y):
    p = y.mean()
    thr = np.percentile(proj, 100 - 100 * p)
    return float(((proj > thr) == y).mean())


def orthonormal(first, rng):
    a = np.column_stack(first + [rng.standard_normal(D) for _ in range(K - len(first))])
    q, _ = np.linalg.qr(a)
    return q.T.copy()


def make_inputs(rng):
    cats = ["roleplay"] * 10 + ["weapons"] * 10 + ["cyber"] * 6 + ["benign"] * 22 + ["borderline"] * 12
    perm = rng.permutation(N)
    cats = [cats[i] for i in perm]
    y = np.array([c in ("roleplay", "weapons", "cyber") for c in cats])
    u = rng.standard_normal(D)
    u /= np.linalg.norm(u)
    v = rng.standard_normal(D)
    v -= (v @ u) * u
    v /= np.linalg.norm(v)
    x0 = np.tile(rng.standard_normal(D), (N, 1))
    role = np.array([c == "roleplay" for c in cats])
    x1 = rng.standard_normal((N, D)) + 2.5 * np.outer(y, u) + 2.0 * np.outer(role, v)
    x2 = np.round(2 * rng.standard_normal((N, D))) / 2
    xs = [x.astype(np.float32).astype(np.float64) for x in (x0, x1, x2)]
    e0, e1 = np.eye(D)[0], np.eye(D)[1]
    comps = [orthonormal([], rng), orthonormal([u, v], rng), orthonormal([e0, e1], rng)]
    comps = [c.astype(np.float32).astype(np.float64) for c in comps]
    return cats, y, xs, comps


def category_rows(proj, cats, y):
    out = []
    for name in sorted(set(cats)):
        a = proj[[c == name for c in cats]]
        b = proj[[(not t) and c != name for c, t in zip(cats, y)]]
        pooled = np.sqrt((((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()) / (len(a) + len(b) - 2))
        # No spread beyond rounding (the constant layer): undefined, null in the JSON.
        d = (a.mean() - b.mean()) / pooled if pooled > 1e-12 * (abs(a.mean()) + abs(b.mean())) else None
        lab = np.r_[np.ones(len(a)), np.zeros(len(b))]
        out.append(dict(category=name, n=len(a), mean=a.mean(), std=a.std(),
                        auc=roc_auc_score(lab, np.r_[a, b]), cohen_d=d))
    return out


def probe(x, y, train, test):
    sc = StandardScaler().fit(x[train])
    zt, ze = sc.transform(x[train]), sc.transform(x[test])
    lr = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(zt, y[train])
    default = LogisticRegression(C=1.0).fit(zt, y[train])
    dec = lr.decision_function(ze)
    return dict(coef=lr.coef_[0].tolist(), intercept=float(lr.intercept_[0]),
                acc=float((lr.predict(ze) == y[test]).mean()), auc=roc_auc_score(y[test], dec),
                default_acc=float((default.predict(ze) == y[test]).mean()))


def main():
    rng = np.random.default_rng(20261129)
    cats, y, xs, comps = make_inputs(rng)
    train, test = half_split(y, SEED)
    layers = []
    for x, c in zip(xs, comps):
        proj = x @ c.T
        comp_rows = []
        for j in range(K):
            pj = proj[:, j]
            comp_rows.append(dict(
                thr_paper=float(np.percentile(-pj, 100 - 100 * y.mean())),
                acc_paper=rule_acc(-pj, y), acc=max(rule_acc(-pj, y), rule_acc(pj, y)),
                auc=roc_auc_score(y, pj), sep=float(np.mean((pj - pj.mean()) * (2 * y - 1)))))
        dim = x[train][y[train]].mean(0) - x[train][~y[train]].mean(0)
        layers.append(dict(
            x=x.tolist(), components=c.tolist(), scores=comp_rows, probe=probe(x, y, train, test),
            dim_acc=rule_acc(x[test] @ dim, y[test]),
            categories=[category_rows(proj[:, j], cats, y) for j in range(K)]))
    pooled = LogisticRegression(C=1.0, fit_intercept=False, solver="newton-cholesky", tol=1e-12,
                                max_iter=1000)
    pooled.fit(np.vstack([x[train] for x in xs]), np.tile(y[train], len(xs)))
    pooled_acc = [float((pooled.predict(x[test]) == y[test]).mean()) for x in xs]
    prng = np.random.default_rng(7)
    pct = []
    for n in (1, 2, 5, 60, 61):
        a = np.round(prng.standard_normal(n), 2)
        for q in (0.0, 10.0, 100 - 100 * 26 / 60, 50.0, 62.5, 99.9, 100.0):
            pct.append(dict(values=a.tolist(), q=q, expected=float(np.percentile(a, q))))
    ref = dict(seed=SEED, n=N, d=D, k=K, labels=y.tolist(), categories=cats, train=train,
               test=test, layers=layers, pooled=dict(coef=pooled.coef_[0].tolist(), acc=pooled_acc),
               percentile=pct, numpy=np.__version__)
    with open(os.path.join(HERE, "reference.json"), "w") as f:
        json.dump(ref, f, indent=None, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
