//! Dense f32 kernels of the forward pass. GEMMs go to faer (its AVX2/AVX-512 kernels beat
//! candle's at these shapes); the element-wise ops are plain loops that LLVM vectorises.

use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Rows per rayon task for element-wise ops: enough work to amortise scheduling.
const ROW_CHUNK: usize = 16;

/// `y[t, out] (+)= x[t, inp] · w[out, inp]ᵀ`, all row-major.
pub fn linear(x: &[f32], t: usize, inp: usize, w: &[f32], out: usize, y: &mut [f32], add: bool) {
    debug_assert_eq!(x.len(), t * inp);
    debug_assert_eq!(w.len(), out * inp);
    debug_assert_eq!(y.len(), t * out);
    if t == 0 {
        return;
    }
    if t <= SMALL_M {
        return linear_small(x, t, inp, w, out, y, add);
    }
    let a = MatRef::from_row_major_slice(x, t, inp);
    let b = MatRef::from_row_major_slice(w, out, inp).transpose();
    let c = MatMut::from_row_major_slice_mut(y, t, out);
    let accum = if add { Accum::Add } else { Accum::Replace };
    faer::linalg::matmul::matmul(c, accum, a, b, 1.0f32, Par::rayon(0));
}

/// Row counts up to which `linear` streams the weights once itself instead of calling the
/// GEMM: at decode time (a handful of rows) faer would pack all of `w` per call, which took
/// 43% of a generation run.
pub(crate) const SMALL_M: usize = 16;

/// Output features per rayon task of `linear_small` (a multiple of both register blocks,
/// 6 and 12 weight rows).
const SMALL_BLOCK: usize = 96;

/// Elements of `y` from which `linear_small` copies its results out in parallel.
const SMALL_PAR_OUT: usize = 1 << 15;

/// `x[t, inp]` (t ≤ 16) transposed to `[inp, tp]`, rows along the vector lanes (tp = 8 or 16,
/// zero padded): the decode kernel's input, on which every weight element is loaded once and
/// multiplies all rows at once.
pub(crate) fn transpose_rows(x: &[f32], t: usize, inp: usize) -> Vec<f32> {
    let tp = if t <= 8 { 8 } else { 16 };
    let mut xt = vec![0.0f32; inp * tp];
    for r in 0..t {
        for (k, &v) in x[r * inp..(r + 1) * inp].iter().enumerate() {
            xt[k * tp + r] = v;
        }
    }
    xt
}

/// `res[o, :] = Σ_k w[o, k] · xt[k, :]` for the weight rows `w` (`[n, inp]`) and the
/// transposed input of [`transpose_rows`]; results `[n, tp]`. Each row's sum runs over k in
/// order in its own lane, whatever the other rows and the blocking.
pub(crate) fn small_panel(xt: &[f32], inp: usize, w: &[f32]) -> Vec<f32> {
    let tp = xt.len() / inp.max(1);
    let mut res = vec![0.0f32; w.len() / inp.max(1) * tp];
    if tp == 8 {
        small_rows::<8>(xt, inp, w, &mut res);
    } else {
        small_rows::<16>(xt, inp, w, &mut res);
    }
    res
}

fn linear_small(x: &[f32], t: usize, inp: usize, w: &[f32], out: usize, y: &mut [f32], add: bool) {
    let xt = transpose_rows(x, t, inp);
    let tp = if t <= 8 { 8 } else { 16 };
    // results transposed, [out, tp]: each task fills its own block of output features
    let mut yt = vec![0.0f32; out * tp];
    yt.par_chunks_mut(SMALL_BLOCK * tp)
        .enumerate()
        .for_each(|(b, r)| {
            let lo = b * SMALL_BLOCK;
            let wb = &w[lo * inp..(lo + r.len() / tp) * inp];
            if tp == 8 {
                small_rows::<8>(&xt, inp, wb, r);
            } else {
                small_rows::<16>(&xt, inp, wb, r);
            }
        });
    let copy_out = |(i, yr): (usize, &mut [f32])| {
        for (o, res) in yr.iter_mut().zip(yt.chunks_exact(tp)) {
            *o = if add { *o + res[i] } else { res[i] };
        }
    };
    if t * out >= SMALL_PAR_OUT {
        y[..t * out]
            .par_chunks_mut(out)
            .enumerate()
            .for_each(copy_out);
    } else {
        y[..t * out].chunks_mut(out).enumerate().for_each(copy_out);
    }
}

/// `res[o, :] = Σ_k w[o, k] · xt[k, :]` for every weight row `o` in `w`.
fn small_rows<const TP: usize>(xt: &[f32], inp: usize, w: &[f32], res: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA, checked just above.
            return unsafe { small_rows_avx2::<TP>(xt, inp, w, res) };
        }
    }
    small_rows_generic::<TP>(xt, inp, w, res)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn small_rows_avx2<const TP: usize>(xt: &[f32], inp: usize, w: &[f32], res: &mut [f32]) {
    small_rows_generic::<TP>(xt, inp, w, res)
}

/// Weight rows per register block: enough independent accumulators (`rows · TP / 8` AVX2
/// registers, 12 for both widths) to hide the FMA latency, with the 16 AVX2 registers holding
/// them plus the `xt` row and a broadcast weight.
#[inline(always)]
fn small_rows_generic<const TP: usize>(xt: &[f32], inp: usize, w: &[f32], res: &mut [f32]) {
    let n = w.len() / inp;
    assert!(xt.len() == inp * TP && res.len() == n * TP);
    let mut o = 0;
    if TP == 8 {
        while o + 12 <= n {
            small_rows_block::<TP, 12>(xt, inp, &w[o * inp..], &mut res[o * TP..]);
            o += 12;
        }
    } else {
        while o + 6 <= n {
            small_rows_block::<TP, 6>(xt, inp, &w[o * inp..], &mut res[o * TP..]);
            o += 6;
        }
    }
    while o + 4 <= n {
        small_rows_block::<TP, 4>(xt, inp, &w[o * inp..], &mut res[o * TP..]);
        o += 4;
    }
    while o < n {
        small_rows_block::<TP, 1>(xt, inp, &w[o * inp..], &mut res[o * TP..]);
        o += 1;
    }
}

/// `res[j, :] = Σ_k w[j, k] · xt[k, :]` for the first `R` weight rows of `w`: per output and
/// lane one FMA chain over k in order, whatever `R` and `TP` are.
#[inline(always)]
fn small_rows_block<const TP: usize, const R: usize>(
    xt: &[f32],
    inp: usize,
    w: &[f32],
    res: &mut [f32],
) {
    let rows: [&[f32]; R] = std::array::from_fn(|j| &w[j * inp..(j + 1) * inp]);
    let lanes = |c: &[f32]| -> [f32; TP] { c.try_into().expect("TP lanes") };
    let mut acc = [[0.0f32; TP]; R];
    for (k, xr) in xt[..inp * TP].chunks_exact(TP).map(lanes).enumerate() {
        for (a, row) in acc.iter_mut().zip(&rows) {
            let wk = row[k];
            for l in 0..TP {
                a[l] = wk.mul_add(xr[l], a[l]);
            }
        }
    }
    for (j, a) in acc.iter().enumerate() {
        res[j * TP..(j + 1) * TP].copy_from_slice(a);
    }
}

/// RMSNorm of each `d`-row of `x` into `y`, accumulated in f64.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f64, y: &mut [f32]) {
    let d = w.len();
    y.par_chunks_mut(d * ROW_CHUNK)
        .zip(x.par_chunks(d * ROW_CHUNK))
        .for_each(|(yc, xc)| {
            for (yr, xr) in yc.chunks_mut(d).zip(xc.chunks(d)) {
                rms_norm_row(xr, w, eps, yr);
            }
        });
}

/// RMSNorm of one row.
pub fn rms_norm_row(x: &[f32], w: &[f32], eps: f64, y: &mut [f32]) {
    let ss: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let r = (1.0 / (ss / x.len() as f64 + eps).sqrt()) as f32;
    for ((o, &v), &g) in y.iter_mut().zip(x).zip(w) {
        *o = g * (v * r);
    }
}

/// `out[t, ff] = silu(gu[t, :ff]) * gu[t, ff:]`.
pub fn silu_mul(gu: &[f32], ff: usize, out: &mut [f32]) {
    out.par_chunks_mut(ff * ROW_CHUNK)
        .zip(gu.par_chunks(2 * ff * ROW_CHUNK))
        .for_each(|(oc, gc)| {
            for (o, g) in oc.chunks_mut(ff).zip(gc.chunks(2 * ff)) {
                let (gate, up) = g.split_at(ff);
                with_avx2(|| silu_mul_row(gate, up, o));
            }
        });
}

#[inline(always)]
fn silu_mul_row(gate: &[f32], up: &[f32], o: &mut [f32]) {
    for ((o, &a), &b) in o.iter_mut().zip(gate).zip(up) {
        *o = a / (1.0 + fast_exp(-a)) * b;
    }
}

/// `out[t, ff] = gelu_tanh(gu[t, :ff]) * gu[t, ff:]` (GeGLU with transformers'
/// `gelu_pytorch_tanh`).
pub fn gelu_tanh_mul(gu: &[f32], ff: usize, out: &mut [f32]) {
    out.par_chunks_mut(ff * ROW_CHUNK)
        .zip(gu.par_chunks(2 * ff * ROW_CHUNK))
        .for_each(|(oc, gc)| {
            for (o, g) in oc.chunks_mut(ff).zip(gc.chunks(2 * ff)) {
                let (gate, up) = g.split_at(ff);
                for ((o, &a), &b) in o.iter_mut().zip(gate).zip(up) {
                    *o = gelu_tanh(a) * b;
                }
            }
        });
}

/// GELU with the tanh approximation, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh())
}

/// Runs `f` compiled for AVX2 when the CPU has it. The body must be `#[inline(always)]` code
/// so it is re-vectorised inside the AVX2 frame (the default x86-64 target assumes SSE2 only).
#[inline(always)]
pub fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// exp(x) for f32 by range reduction and a degree-6 polynomial (max rel. error ~2e-7 over
/// the finite range). A hand-written exp keeps the element-wise loops free of libm calls,
/// which vectorise badly and, after faer's AVX kernels, ran far slower than expected.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    // Round to nearest by the 1.5·2^23 trick: `f32::round` is a libm call without SSE4.1
    // and cost 8% of a whole act-dump run.
    const MAGIC: f32 = 12_582_912.0;
    let k = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    // two-constant Cody–Waite reduction of ln 2
    let r = x - k * 0.693_359_4 + k * 2.121_944_4e-4;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    let bits = ((k as i32 + 127) as u32) << 23;
    p * f32::from_bits(bits)
}

/// Applies rotate-half RoPE in place to `n_heads` heads of width `hd` starting at `row[0]`.
#[inline]
pub fn rope_row(row: &mut [f32], n_heads: usize, hd: usize, cos: &[f32], sin: &[f32]) {
    let half = hd / 2;
    for h in 0..n_heads {
        let head = &mut row[h * hd..(h + 1) * hd];
        let (a, b) = head.split_at_mut(half);
        for i in 0..half {
            let (x1, x2) = (a[i], b[i]);
            a[i] = x1 * cos[i] - x2 * sin[i];
            b[i] = x2 * cos[i] + x1 * sin[i];
        }
    }
}

/// Dot product; uses AVX2 when the CPU has it (the default x86-64 target only assumes SSE2).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_generic(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_generic(a, b)
}

/// Sixteen independent accumulators so LLVM vectorises the loop (no reassociation otherwise).
#[inline(always)]
pub(crate) fn dot_generic(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let n = a.len().min(b.len()) / 16 * 16;
    for (ca, cb) in a[..n].chunks_exact(16).zip(b[..n].chunks_exact(16)) {
        for i in 0..16 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for i in n..a.len().min(b.len()) {
        s += a[i] * b[i];
    }
    s
}

/// Query vectors per register tile of `attend`; its padding of `q`.
pub const ATT_QB: usize = 4;
/// Keys per register tile of `attend`; its padding of `kt`'s rows.
pub const ATT_KB: usize = 16;
/// Query vectors per task of `attend`: a chunk of transposed keys is loaded once into L1 and
/// serves all of them, and tasks spread one long prompt over every core.
const ATT_QS: usize = 32;

/// How attention scores are formed before the softmax: `s = scale·q·k`, then
/// `cap·tanh(s/cap)` when soft-capped (Gemma 2); with a window, query `r` sees only the last
/// `window` of its `limits[r]` keys (keys at distance `< window`, as transformers' sliding mask).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// Factor on q·k.
    pub scale: f32,
    /// Sliding window, in keys.
    pub window: Option<usize>,
    /// Soft-capping constant.
    pub softcap: Option<f32>,
}

impl Scores {
    /// Plain causal scores scaled by `scale`.
    pub fn scaled(scale: f32) -> Self {
        Scores {
            scale,
            window: None,
            softcap: None,
        }
    }
}

/// Causal softmax attention for one key/value head of one sequence.
///
/// `q`: `[nq rounded up to ATT_QB, hd]` query vectors; `limits[r]`: how many leading keys query
/// `r` sees (≥ 1, non-decreasing in `r`); `kt`: keys transposed, `[hd, nkp]` with `nkp` a
/// multiple of `ATT_KB` ≥ every limit; `v`: values `[≥ max limit, hd]`; `o`: `[nq, hd]` output.
/// Scores are computed `ATT_QB` queries × `ATT_KB` keys at a time with the keys on the vector
/// lanes (no horizontal sums); `P·V` likewise `ATT_QB` queries × 16 dimensions at a time.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    hd: usize,
    q: &[f32],
    limits: &[usize],
    kt: &[f32],
    nkp: usize,
    v: &[f32],
    scores: Scores,
    o: &mut [f32],
) {
    let nq = limits.len();
    assert!(q.len() >= nq.div_ceil(ATT_QB) * ATT_QB * hd && kt.len() >= hd * nkp);
    assert!(o.len() >= nq * hd && limits.iter().all(|&l| l >= 1 && l <= nkp));
    assert!(limits.windows(2).all(|w| w[0] <= w[1]) && v.len() >= limits[nq - 1] * hd);
    let task = |(i, oc): (usize, &mut [f32])| {
        let q0 = i * ATT_QS;
        let mut s = vec![0.0f32; ATT_QS * nkp];
        let part = (q0, &limits[q0..(q0 + ATT_QS).min(nq)]);
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                return unsafe { attend_avx2(hd, q, part, kt, nkp, v, scores, &mut s, oc) };
            }
        }
        attend_block(hd, q, part, kt, nkp, v, scores, &mut s, oc)
    };
    let chunks = o[..nq * hd].par_chunks_mut(ATT_QS * hd).enumerate();
    if nq > ATT_QS {
        chunks.for_each(task);
    } else {
        // one task: no need to involve the pool from inside a pool task
        o[..nq * hd]
            .chunks_mut(ATT_QS * hd)
            .enumerate()
            .for_each(task);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_avx2(
    hd: usize,
    q: &[f32],
    part: (usize, &[usize]),
    kt: &[f32],
    nkp: usize,
    v: &[f32],
    scores: Scores,
    s: &mut [f32],
    o: &mut [f32],
) {
    attend_block(hd, q, part, kt, nkp, v, scores, s, o)
}

/// One task of `attend`: queries `q0..q0 + limits.len()` (at most `ATT_QS`); `s` is the
/// `[ATT_QS, nkp]` score scratch, `o` the task's output rows. Its three steps are inlined
/// into it, so under `attend_avx2` they are compiled for AVX2 too.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_block(
    hd: usize,
    q: &[f32],
    (q0, limits): (usize, &[usize]),
    kt: &[f32],
    nkp: usize,
    v: &[f32],
    scores: Scores,
    s: &mut [f32],
    o: &mut [f32],
) {
    raw_scores(hd, q, (q0, limits), kt, nkp, s);
    softmax_rows(limits, nkp, scores, s);
    probs_times_values(hd, limits, nkp, v, s, o);
}

/// `s[r, k] = q_r·k_k` for every query `r` of the task and every key its tile sees, key chunk
/// by key chunk so each chunk of `kt` stays in L1 for all tiles.
#[inline(always)]
fn raw_scores(
    hd: usize,
    q: &[f32],
    (q0, limits): (usize, &[usize]),
    kt: &[f32],
    nkp: usize,
    s: &mut [f32],
) {
    let n = limits.len();
    let tiles = n.div_ceil(ATT_QB);
    let lim = limits[n - 1];
    for kc in (0..lim).step_by(ATT_KB) {
        for t in 0..tiles {
            let r0 = t * ATT_QB;
            if kc >= limits[(r0 + ATT_QB).min(n) - 1] {
                continue;
            }
            let mut acc = [[0.0f32; ATT_KB]; ATT_QB];
            for d in 0..hd {
                let kr: &[f32; ATT_KB] =
                    kt[d * nkp + kc..d * nkp + kc + ATT_KB].try_into().unwrap();
                for (r, a) in acc.iter_mut().enumerate() {
                    let qd = q[(q0 + r0 + r) * hd + d];
                    for l in 0..ATT_KB {
                        a[l] = qd.mul_add(kr[l], a[l]);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate() {
                s[(r0 + r) * nkp + kc..(r0 + r) * nkp + kc + ATT_KB].copy_from_slice(a);
            }
        }
    }
}

/// Scales, soft-caps, windows and softmaxes each score row in place; probabilities beyond a
/// query's limit are zero up to its tile's limit.
#[inline(always)]
fn softmax_rows(limits: &[usize], nkp: usize, scores: Scores, s: &mut [f32]) {
    let n = limits.len();
    for (r, &nr) in limits.iter().enumerate() {
        let tile_lim = limits[((r / ATT_QB + 1) * ATT_QB).min(n) - 1];
        let row = &mut s[r * nkp..r * nkp + tile_lim];
        let (seen, unseen) = row.split_at_mut(nr);
        let (outside, seen) = seen.split_at_mut(scores.window.map_or(0, |w| nr.saturating_sub(w)));
        outside.fill(0.0);
        // separate passes with lane-wise reductions, so each one vectorises
        seen.iter_mut().for_each(|x| *x *= scores.scale);
        if let Some(cap) = scores.softcap {
            seen.iter_mut().for_each(|x| *x = cap * (*x / cap).tanh());
        }
        let m = lanes_fold(seen, f32::NEG_INFINITY, f32::max);
        seen.iter_mut().for_each(|x| *x = fast_exp(*x - m));
        let inv = 1.0 / lanes_fold(seen, 0.0, |a, b| a + b);
        seen.iter_mut().for_each(|x| *x *= inv);
        unseen.fill(0.0);
    }
}

/// `o = P·V`: a tile of `ATT_QB` queries × 16 dimensions at a time, each value row loaded
/// once per tile.
#[inline(always)]
fn probs_times_values(
    hd: usize,
    limits: &[usize],
    nkp: usize,
    v: &[f32],
    s: &[f32],
    o: &mut [f32],
) {
    let n = limits.len();
    for t in 0..n.div_ceil(ATT_QB) {
        let r0 = t * ATT_QB;
        let rows = (n - r0).min(ATT_QB);
        let tile_lim = limits[r0 + rows - 1];
        let mut d0 = 0;
        while d0 + 16 <= hd {
            // all ATT_QB rows (a partial tile's extra rows hold finite scores of zero queries
            // and are not stored): a fixed trip count keeps the inner loops unrolled
            let mut acc = [[0.0f32; 16]; ATT_QB];
            for kk in 0..tile_lim {
                let vr: &[f32; 16] = v[kk * hd + d0..kk * hd + d0 + 16].try_into().unwrap();
                for (r, a) in acc.iter_mut().enumerate() {
                    let p = s[(r0 + r) * nkp + kk];
                    for l in 0..16 {
                        a[l] = p.mul_add(vr[l], a[l]);
                    }
                }
            }
            for (r, a) in acc.iter().enumerate().take(rows) {
                o[(r0 + r) * hd + d0..(r0 + r) * hd + d0 + 16].copy_from_slice(a);
            }
            d0 += 16;
        }
        // head widths that are not a multiple of 16
        for r in r0..r0 + rows {
            for d in d0..hd {
                o[r * hd + d] = (0..tile_lim)
                    .map(|kk| s[r * nkp + kk] * v[kk * hd + d])
                    .sum();
            }
        }
    }
}

/// Folds `xs` with 16 independent accumulators (then across them): a reduction LLVM can
/// vectorise, unlike one running accumulator.
#[inline(always)]
fn lanes_fold(xs: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..16 {
            acc[l] = f(acc[l], c[l]);
        }
    }
    let mut r = acc.into_iter().fold(init, &f);
    for &x in rest {
        r = f(r, x);
    }
    r
}

/// `y += a * x`.
#[inline(always)]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

/// Log-softmax of one row, in f64 for the normaliser.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = m as f64
        + logits
            .iter()
            .map(|&v| ((v - m) as f64).exp())
            .sum::<f64>()
            .ln();
    logits.iter().map(|&v| (v as f64 - lse) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_std() {
        let mut worst = 0.0f64;
        let mut x = -80.0f32;
        while x < 80.0 {
            let rel = ((fast_exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert!(fast_exp(-1000.0) < 1e-37);
    }

    /// The blocked attention kernel against a plain f64 softmax attention, with a causal
    /// limit per query, several query blocks and a key count that is not a block multiple.
    #[test]
    fn attend_matches_naive() {
        // hd 8: only the remainder path; 64: only 16-wide tiles; 20: both. nq 70: several tasks.
        for (hd, nq, nk) in [(8usize, 10usize, 37usize), (64, 70, 97), (20, 41, 41)] {
            let nkp = nk.div_ceil(ATT_KB) * ATT_KB;
            let nqp = nq.div_ceil(ATT_QB) * ATT_QB;
            let f = |i: usize, a: f32| ((i as f32) * a).sin();
            let mut q = vec![0.0f32; nqp * hd];
            for (i, x) in q[..nq * hd].iter_mut().enumerate() {
                *x = f(i, 0.71);
            }
            let keys: Vec<f32> = (0..nk * hd).map(|i| f(i, 0.37)).collect();
            let v: Vec<f32> = (0..nk * hd).map(|i| f(i, 0.13)).collect();
            let mut kt = vec![0.0f32; hd * nkp];
            for kk in 0..nk {
                for d in 0..hd {
                    kt[d * nkp + kk] = keys[kk * hd + d];
                }
            }
            // two query heads per position, as with grouped-query attention
            let limits: Vec<usize> = (0..nq).map(|r| nk - nq.div_ceil(2) + r / 2 + 1).collect();
            let scale = 0.35;
            let mut o = vec![0.0f32; nq * hd];
            attend(hd, &q, &limits, &kt, nkp, &v, Scores::scaled(scale), &mut o);
            for r in 0..nq {
                let sc: Vec<f64> = (0..limits[r])
                    .map(|kk| {
                        (0..hd)
                            .map(|d| q[r * hd + d] as f64 * keys[kk * hd + d] as f64)
                            .sum::<f64>()
                            * scale as f64
                    })
                    .collect();
                let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = sc.iter().map(|x| (x - m).exp()).sum();
                for d in 0..hd {
                    let want: f64 = sc
                        .iter()
                        .enumerate()
                        .map(|(kk, x)| (x - m).exp() / z * v[kk * hd + d] as f64)
                        .sum();
                    let got = o[r * hd + d] as f64;
                    assert!(
                        (got - want).abs() < 1e-5,
                        "hd {hd} nq {nq}: query {r} dim {d}: {got} vs {want}"
                    );
                }
            }
        }
    }

    /// The small-row path (t ≤ 16, in padded lanes) and the GEMM path, with and without `add`,
    /// against a plain f64 loop; and a row's small-path result does not depend on the others.
    #[test]
    fn linear_matches_naive_on_both_paths() {
        for (t, inp, out) in [
            (1, 9, 70),
            (5, 7, 3),
            (13, 33, 131),
            (16, 64, 7),
            (40, 17, 9),
        ] {
            let x: Vec<f32> = (0..t * inp).map(|i| (i as f32 * 0.37).sin()).collect();
            let w: Vec<f32> = (0..out * inp).map(|i| (i as f32 * 0.11).cos()).collect();
            for add in [false, true] {
                let mut y = vec![1.0f32; t * out];
                linear(&x, t, inp, &w, out, &mut y, add);
                for r in 0..t {
                    for c in 0..out {
                        let want: f64 = if add { 1.0 } else { 0.0 }
                            + (0..inp)
                                .map(|k| x[r * inp + k] as f64 * w[c * inp + k] as f64)
                                .sum::<f64>();
                        let got = y[r * out + c] as f64;
                        assert!(
                            (got - want).abs() < 1e-4,
                            "t={t} add={add}: {got} vs {want}"
                        );
                    }
                }
                if t <= SMALL_M && !add {
                    let mut alone = vec![0.0f32; out];
                    linear(&x[(t - 1) * inp..], 1, inp, &w, out, &mut alone, false);
                    assert_eq!(
                        alone[..],
                        y[(t - 1) * out..],
                        "t={t}: last row depends on the batch"
                    );
                }
            }
        }
    }
}
