//! Components as refusal classifiers (the paper's "dir-label A"), and the baselines they are
//! measured against. Pure math on row-major `f64` slices: no files, no printing.
//!
//! # Per component (all rows)
//!
//! For a component `c` and the projections `proj = x·c` of the `n` activation rows, with
//! labels `y` (positive rate `p`):
//!
//! - `acc_paper` ([`rule_accuracy`] on `−proj`): the reference script exactly. The
//!   projection on **−c**, the threshold numpy's `percentile(−proj, 100 − 100·p)` (default
//!   linear interpolation, reproduced bit for bit by [`percentile`]), prediction
//!   `−proj > thr`; no sign correction, so values below 0.5 occur.
//! - `acc`: the same rule on `proj` and on `−proj`, the better of the two.
//! - `auc` ([`roc_auc`]): ROC AUC of `proj` as stored (ties count half; the Mann–Whitney
//!   statistic, equal to scikit-learn's `roc_auc_score`).
//! - `sep` ([`separation`]): the reference's "log-likelihood",
//!   `mean((proj − mean proj)·(2y − 1))`, here on `x·c` as stored (the reference's value, on
//!   its negated projection, is `−sep`).
//!
//! Projections are formed in `f64` from the stored values.
//!
//! # Per layer (baselines, on a held-out half)
//!
//! [`half_split`] splits the rows 50/50 within each class (seeded, so both halves keep the
//! class balance and both classes; the reference's split is unstratified, which matters
//! only for tiny sets). On the training half:
//!
//! - the probe ([`layer_probe`]): L2 logistic regression with an intercept on features
//!   standardised with the training half's mean and (population) standard deviation,
//!   scikit-learn's `StandardScaler` + `LogisticRegression(C=1)` objective
//!   `½‖w‖² + C·Σ logloss`, solved to convergence by Newton's method ([`fit_logistic`]);
//!   accuracy (`decision > 0`) and AUC on the held-out half; its weight mapped back to
//!   activation space (`w_j / σ_j`) for the cosine with C1;
//! - the pooled probe ([`pooled_probe`]): the reference's probe, one logistic regression
//!   without intercept on the raw activations of all given layers' training rows pooled,
//!   tested on each layer's held-out rows (the reference stops scikit-learn's lbfgs at 100
//!   iterations, unconverged; this is the optimum of the same objective);
//! - difference in means ([`dim_accuracy`]): the direction `μ₊ − μ₋` of the training half,
//!   scored on the held-out half with the `acc_paper` rule (threshold at the
//!   `100 − 100·p` percentile of the held-out projections, `p` their positive rate), in the
//!   orientation the direction has (positives project higher), no flipping.
//!
//! # Per category ([`category_stats`])
//!
//! `n`, mean and population standard deviation of `proj` over a category's rows, and against
//! the reference rows (the negative rows outside the category): AUC and Cohen's d (pooled
//! sample standard deviation).

use rayon::prelude::*;

use crate::{AnalysisError, Result};

/// numpy's `percentile(values, q)` with the default `linear` method, reproduced exactly
/// (the same virtual index `(n − 1)·q/100` and the same two-sided interpolation), so a
/// prediction `proj > thr` flips on the same rows as the reference. `values` need not be
/// sorted; `q` in `[0, 100]`. NaN for an empty slice.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile_sorted(&sorted, q)
}

/// [`percentile`] of already sorted values.
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let vi = (n - 1) as f64 * (q / 100.0);
    if vi >= (n - 1) as f64 {
        return sorted[n - 1];
    }
    if vi < 0.0 {
        return sorted[0];
    }
    let lo = vi.floor();
    let t = vi - lo;
    let (a, b) = (sorted[lo as usize], sorted[lo as usize + 1]);
    let diff = b - a;
    // numpy's _lerp: from the nearer end, so t = 1 gives b exactly.
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// The reference's threshold rule: predict `proj > percentile(proj, 100 − 100·p)`, `p` the
/// positive rate of `y`; the fraction of rows predicted right.
pub fn rule_accuracy(proj: &[f64], y: &[bool]) -> f64 {
    assert_eq!(proj.len(), y.len(), "rule_accuracy: lengths");
    let n = y.len();
    if n == 0 {
        return f64::NAN;
    }
    let p = y.iter().filter(|&&v| v).count() as f64 / n as f64;
    let thr = percentile(proj, 100.0 - 100.0 * p);
    let right = proj.iter().zip(y).filter(|(&v, &t)| (v > thr) == t).count();
    right as f64 / n as f64
}

/// ROC AUC of `scores` for the positives of `y`: the probability that a random positive
/// scores above a random negative, ties counted half (average ranks). NaN when either class
/// is empty.
pub fn roc_auc(scores: &[f64], y: &[bool]) -> f64 {
    assert_eq!(scores.len(), y.len(), "roc_auc: lengths");
    let pos: Vec<f64> = scores
        .iter()
        .zip(y)
        .filter(|p| *p.1)
        .map(|p| *p.0)
        .collect();
    let neg: Vec<f64> = scores
        .iter()
        .zip(y)
        .filter(|p| !*p.1)
        .map(|p| *p.0)
        .collect();
    auc_two(&pos, &neg)
}

/// AUC of `pos` against `neg` (ties half); NaN when either is empty.
pub fn auc_two(pos: &[f64], neg: &[f64]) -> f64 {
    if pos.is_empty() || neg.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f64, bool)> = pos
        .iter()
        .map(|&v| (v, true))
        .chain(neg.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the positives' average ranks (1-based), tie group by tie group.
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i + 1;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        let npos = all[i..j].iter().filter(|e| e.1).count();
        rank_sum += avg_rank * npos as f64;
        i = j;
    }
    let (np, nn) = (pos.len() as f64, neg.len() as f64);
    (rank_sum - np * (np + 1.0) / 2.0) / (np * nn)
}

/// The reference's "log-likelihood": `mean((proj − mean proj)·(2y − 1))`.
pub fn separation(proj: &[f64], y: &[bool]) -> f64 {
    assert_eq!(proj.len(), y.len(), "separation: lengths");
    let m = mean(proj);
    let s: f64 = proj
        .iter()
        .zip(y)
        .map(|(&v, &t)| if t { v - m } else { m - v })
        .sum();
    s / proj.len() as f64
}

/// One component's figures; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComponentScores {
    /// The reference rule on `−c`.
    pub acc_paper: f64,
    /// The rule with the better orientation.
    pub acc: f64,
    /// ROC AUC of `x·c`.
    pub auc: f64,
    /// `mean((proj − mean proj)·(2y − 1))` of `x·c`.
    pub sep: f64,
}

/// All four figures of one component from its projections `x·c`.
pub fn component_scores(proj: &[f64], y: &[bool]) -> ComponentScores {
    let neg: Vec<f64> = proj.iter().map(|v| -v).collect();
    let acc_paper = rule_accuracy(&neg, y);
    ComponentScores {
        acc_paper,
        acc: acc_paper.max(rule_accuracy(proj, y)),
        auc: roc_auc(proj, y),
        sep: separation(proj, y),
    }
}

/// A split of the rows into a training and a held-out half (indices ascending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training rows.
    pub train: Vec<usize>,
    /// Held-out rows.
    pub test: Vec<usize>,
}

/// SplitMix64's output function, the split's only source of randomness (simple enough to
/// reproduce in the Python reference: `testdata/dir-label/make_reference.py`).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seeded, class-stratified half split: within each class, rows ordered by
/// `splitmix64(splitmix64(seed) ^ row)` (then by row), the first `⌊n_class / 2⌋` train, the
/// rest held out. Depends only on `y` and `seed`.
pub fn half_split(y: &[bool], seed: u64) -> Split {
    let s = splitmix64(seed);
    let mut train = Vec::with_capacity(y.len() / 2);
    let mut test = Vec::with_capacity(y.len().div_ceil(2));
    for class in [false, true] {
        let mut rows: Vec<(u64, usize)> = (0..y.len())
            .filter(|&i| y[i] == class)
            .map(|i| (splitmix64(s ^ i as u64), i))
            .collect();
        rows.sort_unstable();
        let half = rows.len() / 2;
        train.extend(rows[..half].iter().map(|r| r.1));
        test.extend(rows[half..].iter().map(|r| r.1));
    }
    train.sort_unstable();
    test.sort_unstable();
    Split { train, test }
}

/// A block of a logistic regression's data: `y.len()` rows of `d` features, row-major.
#[derive(Debug, Clone, Copy)]
pub struct Block<'a> {
    /// Features, `y.len() x d`, row-major.
    pub x: &'a [f64],
    /// Labels.
    pub y: &'a [bool],
}

/// A fitted logistic regression.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticFit {
    /// Feature weights.
    pub weights: Vec<f64>,
    /// Intercept (0 without one).
    pub intercept: f64,
    /// Newton steps taken.
    pub iterations: usize,
    /// Whether the Newton decrement fell below the tolerance.
    pub converged: bool,
}

impl LogisticFit {
    /// `x·w + b` of one row.
    pub fn decision(&self, row: &[f64]) -> f64 {
        dot(row, &self.weights) + self.intercept
    }
}

const NEWTON_MAX_ITER: usize = 100;

/// Minimises `½‖w‖² + C·Σ logloss(x·w + b, y)` over the rows of all blocks (the intercept
/// `b` unpenalised, as scikit-learn's `LogisticRegression`), by Newton's method with a
/// backtracking line search: a handful of steps, each solving the `(d + 1)`-square system
/// by Cholesky. Blocks are summed in order (each on its own thread when there are
/// several), so the result does not depend on the thread count.
pub fn fit_logistic(
    blocks: &[Block<'_>],
    d: usize,
    intercept: bool,
    c: f64,
) -> Result<LogisticFit> {
    for b in blocks {
        assert_eq!(b.x.len(), b.y.len() * d, "fit_logistic: block shape");
    }
    if blocks.iter().all(|b| b.y.is_empty()) {
        return Err(AnalysisError::Input(
            "logistic regression: no training rows".into(),
        ));
    }
    let p = d + usize::from(intercept);
    let mut theta = vec![0.0f64; p];
    let mut f = objective(blocks, d, &theta, c);
    let mut iterations = 0;
    let mut converged = false;
    while iterations < NEWTON_MAX_ITER {
        let (g, h) = gradient_hessian(blocks, d, &theta, c);
        let step = solve_spd(h, p, &g)?;
        let decrement = dot(&g, &step);
        let scale = f.abs().max(1.0);
        // ½·decrement estimates f − f*; the tolerance sits near the rounding floor of the
        // gradient, so the weights are exact to about 1e-10.
        if !decrement.is_finite() {
            return Err(AnalysisError::Input(
                "logistic regression: non-finite Newton step (non-finite features?)".into(),
            ));
        }
        if decrement <= 1e-24 * scale {
            converged = true;
            break;
        }
        iterations += 1;
        if decrement < 1e-12 * scale {
            // Inside the quadratic region a full step is safe, and a decrease this small
            // is below the objective's rounding, so a line search could not see it.
            theta.iter_mut().zip(&step).for_each(|(a, s)| *a -= s);
            f = objective(blocks, d, &theta, c);
            continue;
        }
        let mut t = 1.0;
        let mut moved = false;
        for _ in 0..40 {
            let cand: Vec<f64> = theta.iter().zip(&step).map(|(a, s)| a - t * s).collect();
            let fc = objective(blocks, d, &cand, c);
            if fc <= f - 1e-4 * t * decrement {
                theta = cand;
                f = fc;
                moved = true;
                break;
            }
            t *= 0.5;
        }
        if !moved {
            // No descent left at rounding level: as good as it gets.
            converged = true;
            break;
        }
    }
    let b = if intercept { theta[d] } else { 0.0 };
    theta.truncate(d);
    Ok(LogisticFit {
        weights: theta,
        intercept: b,
        iterations,
        converged,
    })
}

/// `log(1 + e^m)` without overflow.
fn softplus(m: f64) -> f64 {
    m.max(0.0) + (-m.abs()).exp().ln_1p()
}

fn sigmoid(m: f64) -> f64 {
    if m >= 0.0 {
        1.0 / (1.0 + (-m).exp())
    } else {
        let e = m.exp();
        e / (1.0 + e)
    }
}

fn margin(row: &[f64], theta: &[f64], d: usize) -> f64 {
    dot(row, &theta[..d]) + theta.get(d).copied().unwrap_or(0.0)
}

fn objective(blocks: &[Block<'_>], d: usize, theta: &[f64], c: f64) -> f64 {
    let loss: f64 = blocks
        .iter()
        .map(|b| {
            b.x.chunks_exact(d)
                .zip(b.y)
                .map(|(row, &t)| {
                    let m = margin(row, theta, d);
                    softplus(m) - if t { m } else { 0.0 }
                })
                .sum::<f64>()
        })
        .sum();
    0.5 * dot(&theta[..d], &theta[..d]) + c * loss
}

/// Gradient and Hessian (`p x p`, column-major, lower half valid) of the objective.
fn gradient_hessian(blocks: &[Block<'_>], d: usize, theta: &[f64], c: f64) -> (Vec<f64>, Vec<f64>) {
    let p = theta.len();
    let parts: Vec<(Vec<f64>, Vec<f64>)> = if blocks.len() > 1 {
        blocks
            .par_iter()
            .map(|b| block_gradient_hessian(b, d, theta))
            .collect()
    } else {
        blocks
            .iter()
            .map(|b| block_gradient_hessian(b, d, theta))
            .collect()
    };
    let mut g = vec![0.0; p];
    let mut h = vec![0.0; p * p];
    for (gb, hb) in &parts {
        for (a, v) in g.iter_mut().zip(gb) {
            *a += c * v;
        }
        for (a, v) in h.iter_mut().zip(hb) {
            *a += c * v;
        }
    }
    for j in 0..d {
        g[j] += theta[j];
        h[j * p + j] += 1.0;
    }
    (g, h)
}

/// One block's `Σ r_i·[x_i, 1]` and `Σ s_i·[x_i, 1][x_i, 1]ᵀ` (`r = σ(m) − y`,
/// `s = σ(m)(1 − σ(m))`), the Hessian by one sequential matrix product.
fn block_gradient_hessian(b: &Block<'_>, d: usize, theta: &[f64]) -> (Vec<f64>, Vec<f64>) {
    use faer::linalg::matmul::triangular::{self, BlockStructure};
    use faer::{Accum, MatMut, MatRef, Par};
    let p = theta.len();
    let n = b.y.len();
    let mut g = vec![0.0; p];
    // Rows scaled by sqrt(s_i), column-major n x p, so H = Aᵀ A.
    let mut a = vec![0.0; n * p];
    for (i, (row, &t)) in b.x.chunks_exact(d).zip(b.y).enumerate() {
        let sg = sigmoid(margin(row, theta, d));
        let r = sg - if t { 1.0 } else { 0.0 };
        let w = (sg * (1.0 - sg)).sqrt();
        for (j, &v) in row.iter().enumerate() {
            g[j] += r * v;
            a[j * n + i] = w * v;
        }
        if p > d {
            g[d] += r;
            a[d * n + i] = w;
        }
    }
    // Only the lower half: the Cholesky factorisation reads nothing else, and the product
    // costs half as much (it dominates the pooled probe).
    let mut h = vec![0.0; p * p];
    let am = MatRef::from_column_major_slice(&a, n, p);
    triangular::matmul(
        MatMut::from_column_major_slice_mut(&mut h, p, p),
        BlockStructure::TriangularLower,
        Accum::Replace,
        am.transpose(),
        BlockStructure::Rectangular,
        am,
        BlockStructure::Rectangular,
        1.0,
        Par::Seq,
    );
    (g, h)
}

/// Solves `H x = g` for the symmetric positive definite `H` (`p x p`, column-major, lower
/// half read) by Cholesky; a tiny ridge is added if rounding made it indefinite (an
/// unpenalised intercept with every row at a saturated margin).
fn solve_spd(mut h: Vec<f64>, p: usize, g: &[f64]) -> Result<Vec<f64>> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
    use faer::linalg::cholesky::llt::solve::solve_in_place;
    use faer::{MatMut, MatRef, Par};
    let trace: f64 = (0..p).map(|j| h[j * p + j]).sum();
    let orig = h.clone();
    for attempt in 0..4 {
        if attempt > 0 {
            h.clone_from(&orig);
            let ridge = trace / p as f64 * 1e-12 * 100f64.powi(attempt);
            for j in 0..p {
                h[j * p + j] += ridge;
            }
        }
        let mut buf = MemBuffer::new(cholesky_in_place_scratch::<f64>(
            p,
            Par::Seq,
            Default::default(),
        ));
        let ok = cholesky_in_place(
            MatMut::from_column_major_slice_mut(&mut h, p, p),
            Default::default(),
            Par::Seq,
            MemStack::new(&mut buf),
            Default::default(),
        )
        .is_ok();
        if ok {
            let mut x = g.to_vec();
            solve_in_place(
                MatRef::from_column_major_slice(&h, p, p),
                MatMut::from_column_major_slice_mut(&mut x, p, 1),
                Par::Seq,
                MemStack::new(&mut MemBuffer::new(faer::dyn_stack::StackReq::EMPTY)),
            );
            return Ok(x);
        }
    }
    Err(AnalysisError::Input(
        "logistic regression: the Hessian is not positive definite (non-finite features?)".into(),
    ))
}

/// The per-layer probe's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// Held-out accuracy (`decision > 0` predicts positive).
    pub acc: f64,
    /// Held-out ROC AUC of the decision value.
    pub auc: f64,
    /// The weight in activation space, `w_j / σ_j`.
    pub weight_raw: Vec<f64>,
    /// The fit on standardised features.
    pub fit: LogisticFit,
}

/// Mean and population standard deviation of each column of the given rows of `x`
/// (`n x d`); a zero deviation becomes 1, as scikit-learn's `StandardScaler` does.
pub fn standardiser(x: &[f64], d: usize, rows: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let m = rows.len() as f64;
    let mut mu = vec![0.0; d];
    for &i in rows {
        for (a, v) in mu.iter_mut().zip(&x[i * d..(i + 1) * d]) {
            *a += v;
        }
    }
    mu.iter_mut().for_each(|a| *a /= m);
    let mut var = vec![0.0; d];
    for &i in rows {
        for ((a, v), u) in var.iter_mut().zip(&x[i * d..(i + 1) * d]).zip(&mu) {
            *a += (v - u) * (v - u);
        }
    }
    let sd = var
        .iter()
        .map(|v| {
            let s = (v / m).sqrt();
            if s == 0.0 {
                1.0
            } else {
                s
            }
        })
        .collect();
    (mu, sd)
}

/// The per-layer probe on `x` (`n x d`, row-major): see the module docs.
pub fn layer_probe(x: &[f64], d: usize, y: &[bool], split: &Split, c: f64) -> Result<ProbeResult> {
    let (mu, sd) = standardiser(x, d, &split.train);
    let scaled = |rows: &[usize]| -> Vec<f64> {
        let mut z = Vec::with_capacity(rows.len() * d);
        for &i in rows {
            z.extend(
                x[i * d..(i + 1) * d]
                    .iter()
                    .zip(&mu)
                    .zip(&sd)
                    .map(|((v, u), s)| (v - u) / s),
            );
        }
        z
    };
    let z_train = scaled(&split.train);
    let y_train: Vec<bool> = split.train.iter().map(|&i| y[i]).collect();
    let fit = fit_logistic(
        &[Block {
            x: &z_train,
            y: &y_train,
        }],
        d,
        true,
        c,
    )?;
    let z_test = scaled(&split.test);
    let y_test: Vec<bool> = split.test.iter().map(|&i| y[i]).collect();
    let dec: Vec<f64> = z_test.chunks_exact(d).map(|r| fit.decision(r)).collect();
    let weight_raw = fit.weights.iter().zip(&sd).map(|(w, s)| w / s).collect();
    Ok(ProbeResult {
        acc: predicted_accuracy(&dec, &y_test),
        auc: roc_auc(&dec, &y_test),
        weight_raw,
        fit,
    })
}

fn predicted_accuracy(dec: &[f64], y: &[bool]) -> f64 {
    let right = dec.iter().zip(y).filter(|(&v, &t)| (v > 0.0) == t).count();
    right as f64 / y.len() as f64
}

/// The reference's pooled probe: one fit without intercept on the raw training rows of all
/// `layers` (each `n x d`, row-major), then the held-out accuracy on each layer.
pub fn pooled_probe(
    layers: &[&[f64]],
    d: usize,
    y: &[bool],
    split: &Split,
    c: f64,
) -> Result<(LogisticFit, Vec<f64>)> {
    let gather = |x: &[f64], rows: &[usize]| -> Vec<f64> {
        rows.iter()
            .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
            .collect()
    };
    let train: Vec<Vec<f64>> = layers.par_iter().map(|x| gather(x, &split.train)).collect();
    let y_train: Vec<bool> = split.train.iter().map(|&i| y[i]).collect();
    let blocks: Vec<Block<'_>> = train.iter().map(|x| Block { x, y: &y_train }).collect();
    let fit = fit_logistic(&blocks, d, false, c)?;
    drop(train);
    let y_test: Vec<bool> = split.test.iter().map(|&i| y[i]).collect();
    let accs = layers
        .iter()
        .map(|x| {
            let dec: Vec<f64> = split
                .test
                .iter()
                .map(|&i| fit.decision(&x[i * d..(i + 1) * d]))
                .collect();
            predicted_accuracy(&dec, &y_test)
        })
        .collect();
    Ok((fit, accs))
}

/// The difference-in-means direction `μ₊ − μ₋` of the training rows of `x` (`n x d`).
pub fn mean_difference(x: &[f64], d: usize, y: &[bool], rows: &[usize]) -> Vec<f64> {
    let mut sums = [vec![0.0; d], vec![0.0; d]];
    let mut counts = [0usize; 2];
    for &i in rows {
        let k = usize::from(y[i]);
        counts[k] += 1;
        for (a, v) in sums[k].iter_mut().zip(&x[i * d..(i + 1) * d]) {
            *a += v;
        }
    }
    (0..d)
        .map(|j| sums[1][j] / counts[1] as f64 - sums[0][j] / counts[0] as f64)
        .collect()
}

/// Held-out accuracy of the difference-in-means direction (see the module docs).
pub fn dim_accuracy(x: &[f64], d: usize, y: &[bool], split: &Split) -> f64 {
    let dir = mean_difference(x, d, y, &split.train);
    let proj: Vec<f64> = split
        .test
        .iter()
        .map(|&i| dot(&x[i * d..(i + 1) * d], &dir))
        .collect();
    let y_test: Vec<bool> = split.test.iter().map(|&i| y[i]).collect();
    rule_accuracy(&proj, &y_test)
}

/// One category's figures for one component.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CategoryStats {
    /// Rows in the category.
    pub n: usize,
    /// Mean of `x·c` over them.
    pub mean_proj: f64,
    /// Population standard deviation of `x·c` over them.
    pub std_proj: f64,
    /// AUC of the category's `x·c` against the reference rows'; NaN without reference rows.
    pub auc_vs_harmless: f64,
    /// `(mean − mean_ref) / pooled sample sd`; NaN when undefined (fewer than 3 rows in
    /// all, or a spread below `1e-12·(|mean| + |mean_ref|)`).
    pub cohen_d: f64,
}

/// [`CategoryStats`] of `proj` over the rows `members`, against the rows `reference`.
pub fn category_stats(proj: &[f64], members: &[usize], reference: &[usize]) -> CategoryStats {
    let a: Vec<f64> = members.iter().map(|&i| proj[i]).collect();
    let b: Vec<f64> = reference.iter().map(|&i| proj[i]).collect();
    let (ma, mb) = (mean(&a), mean(&b));
    let ssa: f64 = a.iter().map(|v| (v - ma) * (v - ma)).sum();
    let ssb: f64 = b.iter().map(|v| (v - mb) * (v - mb)).sum();
    let std_proj = if a.is_empty() {
        f64::NAN
    } else {
        (ssa / a.len() as f64).sqrt()
    };
    let dof = a.len() + b.len();
    let cohen_d = if a.is_empty() || b.is_empty() || dof < 3 {
        f64::NAN
    } else {
        let pooled = ((ssa + ssb) / (dof - 2) as f64).sqrt();
        // A spread at rounding level (identical rows, as at the template token) makes the
        // ratio noise, not an effect size.
        if pooled > 1e-12 * (ma.abs() + mb.abs()) {
            (ma - mb) / pooled
        } else {
            f64::NAN
        }
    };
    CategoryStats {
        n: a.len(),
        mean_proj: ma,
        std_proj,
        auc_vs_harmless: auc_two(&a, &b),
        cohen_d,
    }
}

/// The rows of one category and the reference rows it is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    /// The category's name (as in the rows CSV).
    pub name: String,
    /// Its rows.
    pub members: Vec<usize>,
    /// The negative rows outside it.
    pub reference: Vec<usize>,
}

/// Groups rows by `category` (names sorted), each against the negative rows outside it.
pub fn categories(category: &[String], y: &[bool]) -> Vec<Category> {
    let mut names: Vec<&String> = category.iter().collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| Category {
            name: name.clone(),
            members: (0..y.len()).filter(|&i| &category[i] == name).collect(),
            reference: (0..y.len())
                .filter(|&i| !y[i] && &category[i] != name)
                .collect(),
        })
        .collect()
}

/// One layer's input: activations and components, row-major.
#[derive(Debug, Clone, Copy)]
pub struct LayerInput<'a> {
    /// Hidden-state index (reported back).
    pub layer: usize,
    /// Activations, `n x d`.
    pub x: &'a [f64],
    /// Components, `k x d` (the first `k` are used).
    pub components: &'a [f64],
}

/// Everything [`classify`] needs besides the layers.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyOptions {
    /// Components per layer to score.
    pub k: usize,
    /// Seed of [`half_split`].
    pub seed: u64,
    /// Inverse regularisation strength of both probes (scikit-learn's `C`).
    pub c: f64,
    /// Fit the pooled probe (its cost is one `(n/2 · layers) x d` regression).
    pub pooled: bool,
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions {
            k: 100,
            seed: 42,
            c: 1.0,
            pooled: true,
        }
    }
}

/// One layer's results.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerReport {
    /// Hidden-state index.
    pub layer: usize,
    /// Per component, in order.
    pub components: Vec<ComponentScores>,
    /// `[component][category]`, categories in [`categories`] order.
    pub categories: Vec<Vec<CategoryStats>>,
    /// 0-based index of the component with the highest `acc` (the first on ties).
    pub best: usize,
    /// The per-layer probe.
    pub probe: ProbeResult,
    /// The pooled probe's held-out accuracy on this layer (NaN when not fitted).
    pub pooled_probe_acc: f64,
    /// Held-out accuracy of the difference in means.
    pub dim_acc: f64,
    /// Cosine between the probe's activation-space weight and component 1.
    pub cos_probe_c1: f64,
}

/// What [`classify`] computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Per layer, in input order.
    pub layers: Vec<LayerReport>,
    /// The pooled probe's fit (`None` when not asked for).
    pub pooled: Option<LogisticFit>,
}

/// Scores every layer (layers in parallel, each sequential inside, so the results do not
/// depend on the thread count). `y` has the `n` rows of every layer's `x`.
pub fn classify(
    layers: &[LayerInput<'_>],
    d: usize,
    y: &[bool],
    cats: &[Category],
    opts: &ClassifyOptions,
) -> Result<Classification> {
    let n = y.len();
    let npos = y.iter().filter(|&&v| v).count();
    if npos < 2 || n - npos < 2 {
        return Err(AnalysisError::Input(format!(
            "need at least 2 positive and 2 negative rows for a held-out split, found {npos} \
             positive and {} negative",
            n - npos
        )));
    }
    for l in layers {
        assert_eq!(l.x.len(), n * d, "classify: layer {} activations", l.layer);
        assert!(
            l.components.len() >= opts.k * d,
            "classify: layer {} components",
            l.layer
        );
    }
    let split = half_split(y, opts.seed);
    let mut reports: Vec<LayerReport> = layers
        .par_iter()
        .map(|l| classify_layer(l, d, y, cats, &split, opts))
        .collect::<Result<_>>()?;
    let mut pooled = None;
    if opts.pooled {
        let xs: Vec<&[f64]> = layers.iter().map(|l| l.x).collect();
        let (fit, accs) = pooled_probe(&xs, d, y, &split, opts.c)?;
        for (r, a) in reports.iter_mut().zip(accs) {
            r.pooled_probe_acc = a;
        }
        pooled = Some(fit);
    }
    Ok(Classification {
        layers: reports,
        pooled,
    })
}

fn classify_layer(
    l: &LayerInput<'_>,
    d: usize,
    y: &[bool],
    cats: &[Category],
    split: &Split,
    opts: &ClassifyOptions,
) -> Result<LayerReport> {
    let n = y.len();
    let k = opts.k;
    let proj = projections(l.x, n, d, &l.components[..k * d], k);
    let mut components = Vec::with_capacity(k);
    let mut categories = Vec::with_capacity(k);
    for col in proj.chunks_exact(n) {
        components.push(component_scores(col, y));
        categories.push(
            cats.iter()
                .map(|c| category_stats(col, &c.members, &c.reference))
                .collect(),
        );
    }
    let best = (0..k).fold(0, |b, j| {
        if components[j].acc > components[b].acc {
            j
        } else {
            b
        }
    });
    let probe = layer_probe(l.x, d, y, split, opts.c)?;
    let c1 = &l.components[..d];
    Ok(LayerReport {
        layer: l.layer,
        components,
        categories,
        best,
        cos_probe_c1: cosine(&probe.weight_raw, c1),
        probe,
        pooled_probe_acc: f64::NAN,
        dim_acc: dim_accuracy(l.x, d, y, split),
    })
}

/// `X Cᵀ` as `k` columns of `n` (column-major `n x k`).
fn projections(x: &[f64], n: usize, d: usize, comps: &[f64], k: usize) -> Vec<f64> {
    use faer::linalg::matmul::matmul;
    use faer::{Accum, MatMut, MatRef, Par};
    let mut out = vec![0.0; n * k];
    // Row-major n x d is column-major d x n.
    let xt = MatRef::from_column_major_slice(x, d, n);
    let ct = MatRef::from_column_major_slice(comps, d, k);
    matmul(
        MatMut::from_column_major_slice_mut(&mut out, n, k),
        Accum::Replace,
        xt.transpose(),
        ct,
        1.0,
        Par::Seq,
    );
    out
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Cosine of two vectors; NaN when either is zero.
pub fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let (na, nb) = (dot(a, a).sqrt(), dot(b, b).sqrt());
    if na == 0.0 || nb == 0.0 {
        return f64::NAN;
    }
    dot(a, b) / (na * nb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy_hand_values() {
        // numpy.percentile([1, 2, 3, 4], q): 0 -> 1, 25 -> 1.75, 50 -> 2.5, 100 -> 4.
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 25.0), 1.75);
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert_eq!(percentile(&[7.0], 30.0), 7.0);
    }

    #[test]
    fn auc_counts_ties_half() {
        // One positive tied with one negative, one above all: (1 + 0.5 + 1 + 1) / 4.
        let s = [1.0, 1.0, 0.0, 2.0];
        let y = [true, false, false, true];
        assert_eq!(roc_auc(&s, &y), 0.875);
        assert_eq!(roc_auc(&[3.0, 3.0], &[true, false]), 0.5);
        assert!(roc_auc(&[1.0], &[true]).is_nan());
    }

    #[test]
    fn orientation_invariants() {
        let proj = [0.3, -1.2, 2.5, 0.1, -0.4, 1.7];
        let y = [false, false, true, false, true, true];
        let neg: Vec<f64> = proj.iter().map(|v| -v).collect();
        let (a, b) = (component_scores(&proj, &y), component_scores(&neg, &y));
        assert!((a.auc + b.auc - 1.0).abs() < 1e-15);
        assert!((a.sep + b.sep).abs() < 1e-15);
        assert_eq!(a.acc, b.acc);
        assert!(a.acc >= a.acc_paper && a.acc >= b.acc_paper);
    }

    #[test]
    fn split_is_stratified_and_seeded() {
        let y: Vec<bool> = (0..101).map(|i| i % 3 == 0).collect();
        let s = half_split(&y, 42);
        assert_eq!(s.train.len() + s.test.len(), 101);
        let pos_train = s.train.iter().filter(|&&i| y[i]).count();
        assert_eq!(pos_train, 34 / 2);
        assert_eq!(s, half_split(&y, 42));
        assert_ne!(s, half_split(&y, 43));
    }

    #[test]
    fn newton_reaches_a_stationary_point() {
        // Gradient of ½‖w‖² + C Σ logloss at the fit vanishes (an independent check of the
        // optimiser: no reference solver involved).
        let d = 3;
        let x: Vec<f64> = (0..40)
            .map(|i| ((i * 37 % 17) as f64 - 8.0) / 3.0)
            .collect();
        let xs = &x[..39];
        let y: Vec<bool> = (0..13).map(|i| (i * 5 % 7) < 3).collect();
        let fit = fit_logistic(&[Block { x: xs, y: &y }], d, true, 0.7).unwrap();
        assert!(fit.converged);
        let mut g = fit.weights.clone();
        let mut gb = 0.0;
        for (row, &t) in xs.chunks_exact(d).zip(&y) {
            let r = sigmoid(fit.decision(row)) - f64::from(u8::from(t));
            for j in 0..d {
                g[j] += 0.7 * r * row[j];
            }
            gb += 0.7 * r;
        }
        assert!(g.iter().chain([&gb]).all(|v| v.abs() < 1e-9), "{g:?} {gb}");
    }
}
