#!/usr/bin/env python3
"""Make the shift-svd fixtures and numpy's answers for them.

Run from anywhere: `python3 testdata/shift-svd/make_reference.py` (needs numpy only).
Writes, next to this script:

- base.npz, tuned.npz: resid.{0..3}, float32 [24, 40] (wide: n < d), like act-dump files.
    layer 0: every prompt has the same activation in each model -> the shift is one row
             repeated (the paper's early layers: effective rank 1);
    layer 1: a planted rank-3 shift (singular values 30, 12, 5) plus 1e-3 noise;
    layer 2: Gaussian base, tuned = base + Gaussian shift (full rank);
    layer 3: like layer 1 plus a common offset (a mean shift of norm 4).
- tall_base.npy, tall_tuned.npy: float32 [2, 40, 16] (tall: n > d), read as resid.0, resid.1.
- reference.npz: numpy's answers, all float64, computed exactly as the paper's scripts do:
    D = tuned.astype(float64) - base.astype(float64);  s, Vt = svd(D, full_matrices=False)
    {set}.s.{i}       all singular values
    {set}.vt.{i}      the first K_REF rows of Vt (signs as LAPACK left them)
    {set}.mean.{i}    D.mean(0)
    {set}.rank.{i}    effective rank at TAUS (the paper's formula, on lambda = s^2/(n-1))
    {set}.lstsq_s.{i} singular values of X W - X, W = lstsq(X, Y, rcond=None)[0]
    {set}.center_s.{i} singular values of D - D.mean(0)
  with {set} = "wide" (base/tuned.npz) or "tall" (tall_*.npy), and taus / k_ref stored too.
"""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TAUS = np.array([0.4, 0.6, 0.7, 0.8, 0.9])
K_REF = 8


def effective_rank(s, n, tau):
    """The paper's rank_safety_residual_space: lambda = s^2/(n-1), smallest k reaching tau."""
    lam = s**2 / (n - 1)
    lam = lam[lam > 0]
    if lam.size == 0:
        return 0
    cum = np.cumsum(lam) / np.sum(lam)
    return int(np.argmax(cum >= tau) + 1)


def planted(rng, n, d, sigmas, noise):
    a, _ = np.linalg.qr(rng.standard_normal((n, len(sigmas))))
    b, _ = np.linalg.qr(rng.standard_normal((d, len(sigmas))))
    return (a * sigmas) @ b.T + noise * rng.standard_normal((n, d))


def wide(rng):
    n, d = 24, 40
    base, tuned = [], []
    # layer 0: the same token for every prompt
    x0 = rng.standard_normal(d)
    y0 = x0 + 0.5 * rng.standard_normal(d)
    base.append(np.tile(x0, (n, 1)))
    tuned.append(np.tile(y0, (n, 1)))
    # layer 1: planted rank 3
    x = rng.standard_normal((n, d))
    base.append(x)
    tuned.append(x + planted(rng, n, d, [30.0, 12.0, 5.0], 1e-3))
    # layer 2: full rank
    x = rng.standard_normal((n, d))
    base.append(x)
    tuned.append(x + rng.standard_normal((n, d)))
    # layer 3: planted rank 3 plus a common offset
    x = rng.standard_normal((n, d))
    m = rng.standard_normal(d)
    m *= 4.0 / np.linalg.norm(m)
    base.append(x)
    tuned.append(x + planted(rng, n, d, [30.0, 12.0, 5.0], 1e-3) + m)
    return [b.astype(np.float32) for b in base], [t.astype(np.float32) for t in tuned]


def tall(rng):
    n, d = 40, 16
    base, tuned = [], []
    for _ in range(2):
        x = rng.standard_normal((n, d))
        base.append(x)
        tuned.append(x + planted(rng, n, d, [20.0, 8.0], 1e-2) + 0.5)
    return np.stack(base).astype(np.float32), np.stack(tuned).astype(np.float32)


def answers(tag, base, tuned, ref):
    for i, (xb, yt) in enumerate(zip(base, tuned)):
        x = xb.astype(np.float64)
        y = yt.astype(np.float64)
        n = x.shape[0]
        D = y - x
        _, s, vt = np.linalg.svd(D, full_matrices=False)
        ref[f"{tag}.s.{i}"] = s
        ref[f"{tag}.vt.{i}"] = vt[:K_REF]
        ref[f"{tag}.mean.{i}"] = D.mean(0)
        ref[f"{tag}.rank.{i}"] = np.array([effective_rank(s, n, t) for t in TAUS], dtype=np.int64)
        w = np.linalg.lstsq(x, y, rcond=None)[0]
        ref[f"{tag}.lstsq_s.{i}"] = np.linalg.svd(x @ w - x, compute_uv=False)
        ref[f"{tag}.center_s.{i}"] = np.linalg.svd(D - D.mean(0), compute_uv=False)


def main():
    rng = np.random.default_rng(20250214)
    base, tuned = wide(rng)
    np.savez(os.path.join(HERE, "base.npz"), **{f"resid.{i}": b for i, b in enumerate(base)})
    np.savez(os.path.join(HERE, "tuned.npz"), **{f"resid.{i}": t for i, t in enumerate(tuned)})
    tb, tt = tall(rng)
    np.save(os.path.join(HERE, "tall_base.npy"), tb)
    np.save(os.path.join(HERE, "tall_tuned.npy"), tt)

    ref = {"taus": TAUS, "k_ref": np.array(K_REF)}
    answers("wide", base, tuned, ref)
    answers("tall", list(tb), list(tt), ref)
    np.savez(os.path.join(HERE, "reference.npz"), **ref)


if __name__ == "__main__":
    main()
