//! Fused CPU ops with hand-written backward passes, as candle custom ops.
//!
//! candle's own fused kernels (`rms_norm`, `softmax_last_dim`, `rotary_emb`) have no backward
//! pass, and composing the same maths from elementary candle ops allocates a tensor per step
//! and runs single-threaded. These ops do the work in one parallel pass each, with faer GEMMs
//! for the projections, and tell candle's autograd how to go back:
//!
//! | op | forward | backward |
//! |----|---------|----------|
//! | [`linear`] | `y = x·Wᵀ` | `dx = dy·W`, `dW = dyᵀ·x` (only when `W` is tracked) |
//! | [`rms_norm`] | `y = g ∘ x / rms(x)` | `dx`, `dg` (when tracked) |
//! | [`attention`] | RoPE + causal GQA softmax attention over packed sequences | `dqkv`, recomputing the probabilities |
//! | [`silu_mul`], [`gated_mul_with`] | `silu(gate) ∘ up` (or GeGLU's `gelu_tanh(gate) ∘ up`) on a fused gate\|up row | `dgate`, `dup` |
//! | [`cross_entropy`] | per-row `−log softmax(logits)[target]` | `softmax − onehot` |
//!
//! Every op is checked against finite differences and against the same maths written with
//! elementary candle ops (see `tests/grad.rs`). f32 on the CPU only; inputs are made
//! contiguous by the wrappers.
//!
//! # Rules
//! The `*_with` variants take a [`Rules`]: [`Rules::Exact`] is the true gradient;
//! [`Rules::AttnLrp`] is the linearised AttnLRP of Achtibat et al. (ICML 2024) as `lxt.efficient`
//! implements it, so that gradient × input gives LRP relevances:
//!
//! | op | AttnLRP backward |
//! |----|------------------|
//! | [`rms_norm_with`] | `rsqrt(mean x² + ε)` held constant: `dx = r·(g∘dy)` (identity rule) |
//! | [`silu_mul_with`] | `silu'(a)` replaced by `silu(a)/a = σ(a)` (identity rule), and both factors of `silu(a)∘b` get half the gradient (uniform rule) |
//! | [`gated_mul_with`] | GeGLU likewise (lxt's `gated_mlp_forward` on Gemma 3): `gelu_tanh'(a)` replaced by `gelu_tanh(a)/a`, half the gradient to each factor |
//! | [`attention_with`] | `dq` and `dk` ÷ 4, `dv` ÷ 2: the uniform rule on the bilinear `q·kᵀ` (÷2) and `softmax·v` (÷2, which also reaches q and k through the softmax) |
//!
//! Linear layers, residual adds, RoPE and the softmax keep their exact gradients: in gradient ×
//! input form those are the epsilon rule (ε → 0) and the Deep-Taylor softmax rule.

use candle_core::{
    bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Device, Layout, Result, Shape, Storage,
    Tensor,
};
use faer::{Accum, MatMut, MatRef, Par};
use hd_lm::config::Act;
use hd_lm::kernels::{axpy, fast_exp, gelu_tanh, with_avx2};
use rayon::prelude::*;
use std::sync::Arc;

// ---------------------------------------------------------------------------------------
// Plumbing.

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let v = match s {
        CpuStorage::F32(v) => v,
        _ => bail!("{what}: expected an f32 tensor"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{what}: expected a contiguous tensor"),
    }
}

/// Runs `f` on the f32 data of a (made contiguous) CPU tensor.
pub(crate) fn with_data<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (st, l) = t.storage_and_layout();
    match &*st {
        Storage::Cpu(c) => Ok(f(slice(c, l, "tensor")?)),
        _ => bail!("hd-train ops run on the CPU only"),
    }
}

fn tensor(data: Vec<f32>, shape: impl Into<Shape>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(data, shape, like.device())
}

fn last_dim(dims: &[usize]) -> usize {
    dims.last().copied().unwrap_or(1)
}

fn with_last(dims: &[usize], last: usize) -> Vec<usize> {
    let mut d = dims.to_vec();
    if let Some(x) = d.last_mut() {
        *x = last;
    } else {
        d.push(last);
    }
    d
}

/// `c[m,n] (+)= alpha · a·b` on all rayon threads.
///
/// The product is cut into independent blocks of rows (or of columns, when `c` is wide),
/// each a single-threaded faer GEMM, and rayon balances the blocks: unlike a GEMM that
/// synchronises its threads at barriers, this keeps going at full speed when another process
/// takes a core for a moment.
fn gemm_par(
    c: &mut [f32],
    m: usize,
    n: usize,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    alpha: f32,
    add: bool,
) {
    if m == 0 || n == 0 || a.ncols() == 0 {
        if !add {
            c.fill(0.0);
        }
        return;
    }
    let acc = if add { Accum::Add } else { Accum::Replace };
    let threads = rayon::current_num_threads();
    let work = m * n * a.ncols();
    if threads == 1 || work < 1 << 18 {
        let cm = MatMut::from_row_major_slice_mut(c, m, n);
        faer::linalg::matmul::matmul(cm, acc, a, b, alpha, Par::Seq);
        return;
    }
    // About four blocks per thread, blocks of at least 48 rows or columns.
    let target = threads * 4;
    if m >= n {
        let rows = m.div_ceil(target).max(48);
        c.par_chunks_mut(rows * n).enumerate().for_each(|(i, cc)| {
            let r0 = i * rows;
            let mr = cc.len() / n;
            let cm = MatMut::from_row_major_slice_mut(cc, mr, n);
            faer::linalg::matmul::matmul(cm, acc, a.subrows(r0, mr), b, alpha, Par::Seq);
        });
    } else {
        let cols = n.div_ceil(target).max(48);
        let blocks: Vec<(usize, usize)> = (0..n)
            .step_by(cols)
            .map(|c0| (c0, cols.min(n - c0)))
            .collect();
        // Each block is written to its own buffer, then copied in (columns are strided).
        let outs: Vec<Vec<f32>> = blocks
            .par_iter()
            .map(|&(c0, nc)| {
                let mut buf = vec![0.0f32; m * nc];
                if add {
                    for r in 0..m {
                        buf[r * nc..(r + 1) * nc].copy_from_slice(&c[r * n + c0..r * n + c0 + nc]);
                    }
                }
                let cm = MatMut::from_row_major_slice_mut(&mut buf, m, nc);
                faer::linalg::matmul::matmul(cm, acc, a, b.subcols(c0, nc), alpha, Par::Seq);
                buf
            })
            .collect();
        for (&(c0, nc), buf) in blocks.iter().zip(outs) {
            for r in 0..m {
                c[r * n + c0..r * n + c0 + nc].copy_from_slice(&buf[r * nc..(r + 1) * nc]);
            }
        }
    }
}

fn gemm(c: &mut [f32], m: usize, n: usize, a: MatRef<'_, f32>, b: MatRef<'_, f32>) {
    gemm_par(c, m, n, a, b, 1.0, false)
}

/// `a[m,k] · b[n,k]ᵀ`.
pub fn matmul_nt(a: &[f32], m: usize, k: usize, b: &[f32], n: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    gemm(
        &mut c,
        m,
        n,
        MatRef::from_row_major_slice(a, m, k),
        MatRef::from_row_major_slice(b, n, k).transpose(),
    );
    c
}

/// `a[m,k] · b[k,n]`.
pub fn matmul_nn(a: &[f32], m: usize, k: usize, b: &[f32], n: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    gemm(
        &mut c,
        m,
        n,
        MatRef::from_row_major_slice(a, m, k),
        MatRef::from_row_major_slice(b, k, n),
    );
    c
}

/// `a[k,m]ᵀ · b[k,n]`.
pub fn matmul_tn(a: &[f32], m: usize, k: usize, b: &[f32], n: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    gemm(
        &mut c,
        m,
        n,
        MatRef::from_row_major_slice(a, k, m).transpose(),
        MatRef::from_row_major_slice(b, k, n),
    );
    c
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Sixteen accumulators so LLVM vectorises without reassociating.
    let mut acc = [0.0f32; 16];
    let n = a.len().min(b.len());
    let m = n / 16 * 16;
    for (ca, cb) in a[..m].chunks_exact(16).zip(b[..m].chunks_exact(16)) {
        for i in 0..16 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for i in m..n {
        s += a[i] * b[i];
    }
    s
}

// ---------------------------------------------------------------------------------------
// Linear.

struct Linear;

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "hd-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "linear input")?;
        let w = slice(s2, l2, "linear weight")?;
        let (out, inp) = match l2.dims() {
            [o, i] => (*o, *i),
            d => bail!("linear: weight has shape {d:?}, expected [out, in]"),
        };
        if last_dim(l1.dims()) != inp {
            bail!(
                "linear: input has shape {:?}, weight [{out}, {inp}]",
                l1.dims()
            );
        }
        let m = x.len() / inp.max(1);
        let y = matmul_nt(x, m, inp, w, out);
        Ok((CpuStorage::F32(y), with_last(l1.dims(), out).into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (out, inp) = w.dims2()?;
        let m = g.elem_count() / out.max(1);
        let gx = if x.track_op() {
            let d = with_data(g, |gd| with_data(w, |wd| input_grad(gd, m, out, wd, inp)))??;
            Some(tensor(d, x.dims(), x)?)
        } else {
            None
        };
        let gw = if w.track_op() {
            let d = with_data(g, |gd| with_data(x, |xd| matmul_tn(gd, out, m, xd, inp)))??;
            Some(tensor(d, (out, inp), w)?)
        } else {
            None
        };
        Ok((gx, gw))
    }
}

/// `g[m, out] · w[out, in]`, the input gradient of a linear layer, computed only for the rows
/// of `g` that are not all zero when those are few: a seed at the last positions reaches the
/// top block's MLP and output projection through those rows alone (attribution, component
/// relevance), and the dense product would mostly multiply zeros. Zero rows give exact zeros
/// either way (the weights are finite).
fn input_grad(g: &[f32], m: usize, out: usize, w: &[f32], inp: usize) -> Vec<f32> {
    live_rows(g, m, out, inp, |sub, n| matmul_nn(sub, n, out, w, inp))
}

/// `prod(g', n)` (a product of `n` rows of width `out` into rows of width `inp`) over the rows
/// of `g` that are not all zero, scattered back into `[m, inp]` with zero rows elsewhere;
/// over all of `g` when most rows are live.
fn live_rows(
    g: &[f32],
    m: usize,
    out: usize,
    inp: usize,
    prod: impl Fn(&[f32], usize) -> Vec<f32>,
) -> Vec<f32> {
    let live: Vec<usize> = (0..m)
        .filter(|&r| g[r * out..(r + 1) * out].iter().any(|&v| v != 0.0))
        .collect();
    if live.len() * 2 > m {
        return prod(g, m);
    }
    let mut sub = Vec::with_capacity(live.len() * out);
    for &r in &live {
        sub.extend_from_slice(&g[r * out..(r + 1) * out]);
    }
    let part = prod(&sub, live.len());
    let mut full = vec![0.0f32; m * inp];
    for (i, &r) in live.iter().enumerate() {
        full[r * inp..(r + 1) * inp].copy_from_slice(&part[i * inp..(i + 1) * inp]);
    }
    full
}

/// `x[.., in] · w[out, in]ᵀ` (a bias-free `nn.Linear`).
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, Linear)
}

/// Which backward pass the ops compute (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Rules {
    /// The true gradient (training, plain gradient × input).
    #[default]
    Exact,
    /// The linearised AttnLRP rules (relevance as gradient × input).
    AttnLrp,
}

impl Rules {
    fn lrp(self) -> bool {
        self == Rules::AttnLrp
    }
}

// ---------------------------------------------------------------------------------------
// RMSNorm.

struct RmsNorm {
    eps: f64,
    rules: Rules,
}

/// Rows per rayon task in the element-wise ops.
const CHUNK: usize = 16;

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "hd-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "rms_norm input")?;
        let g = slice(s2, l2, "rms_norm gain")?;
        let d = g.len();
        if last_dim(l1.dims()) != d {
            bail!("rms_norm: input {:?}, gain [{d}]", l1.dims());
        }
        let mut y = vec![0.0f32; x.len()];
        let eps = self.eps;
        y.par_chunks_mut(d * CHUNK)
            .zip(x.par_chunks(d * CHUNK))
            .for_each(|(yc, xc)| {
                for (yr, xr) in yc.chunks_mut(d).zip(xc.chunks(d)) {
                    let r = inv_rms(xr, eps);
                    for ((o, &v), &gg) in yr.iter_mut().zip(xr).zip(g) {
                        *o = gg * (v * r);
                    }
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        g: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = g.elem_count();
        let eps = self.eps;
        // AttnLRP: the rsqrt factor is a constant, so only the first term of dx remains.
        let keep_norm_term = if self.rules.lrp() { 0.0 } else { 1.0 };
        let want_x = x.track_op();
        let want_g = g.track_op();
        let (dx, dg) = with_data(x, |xd| {
            with_data(g, |gd| {
                with_data(dy, |dyd| {
                    let rows = xd.len() / d.max(1);
                    let mut dx = vec![0.0f32; if want_x { xd.len() } else { 0 }];
                    if want_x {
                        // dx = r·(g∘dy) − r³/d · x · Σ(g∘dy∘x)
                        dx.par_chunks_mut(d * CHUNK)
                            .enumerate()
                            .for_each(|(c, dxc)| {
                                for (j, o) in dxc.chunks_mut(d).enumerate() {
                                    let r = c * CHUNK + j;
                                    let xr = &xd[r * d..(r + 1) * d];
                                    let dyr = &dyd[r * d..(r + 1) * d];
                                    let inv = inv_rms(xr, eps) as f64;
                                    let s: f64 = (0..d)
                                        .map(|i| (gd[i] * dyr[i]) as f64 * xr[i] as f64)
                                        .sum();
                                    let k = keep_norm_term * inv.powi(3) * s / d as f64;
                                    for i in 0..d {
                                        o[i] = (inv * (gd[i] * dyr[i]) as f64 - k * xr[i] as f64)
                                            as f32;
                                    }
                                }
                            });
                    }
                    let mut dg = vec![0.0f64; if want_g { d } else { 0 }];
                    if want_g {
                        // Per-chunk partial sums, added in chunk order (deterministic).
                        let partial: Vec<Vec<f64>> = (0..rows.div_ceil(CHUNK))
                            .into_par_iter()
                            .map(|c| {
                                let mut p = vec![0.0f64; d];
                                for r in c * CHUNK..((c + 1) * CHUNK).min(rows) {
                                    let xr = &xd[r * d..(r + 1) * d];
                                    let dyr = &dyd[r * d..(r + 1) * d];
                                    let inv = inv_rms(xr, eps);
                                    for i in 0..d {
                                        p[i] += (dyr[i] * xr[i] * inv) as f64;
                                    }
                                }
                                p
                            })
                            .collect();
                        for p in partial {
                            for (a, b) in dg.iter_mut().zip(p) {
                                *a += b;
                            }
                        }
                    }
                    (dx, dg.into_iter().map(|v| v as f32).collect::<Vec<f32>>())
                })
            })
        })???;
        let dx = if want_x {
            Some(tensor(dx, x.dims(), x)?)
        } else {
            None
        };
        let dg = if want_g {
            Some(tensor(dg, g.dims(), g)?)
        } else {
            None
        };
        Ok((dx, dg))
    }
}

#[inline]
fn inv_rms(x: &[f32], eps: f64) -> f32 {
    let ss: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    (1.0 / (ss / x.len() as f64 + eps).sqrt()) as f32
}

/// RMSNorm over the last dimension with gain `g` (`[d]`), accumulated in f64 as hd-lm does.
pub fn rms_norm(x: &Tensor, g: &Tensor, eps: f64) -> Result<Tensor> {
    rms_norm_with(x, g, eps, Rules::Exact)
}

/// [`rms_norm`] with the backward pass of `rules`.
pub fn rms_norm_with(x: &Tensor, g: &Tensor, eps: f64, rules: Rules) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&g.contiguous()?, RmsNorm { eps, rules })
}

// ---------------------------------------------------------------------------------------
// Attention.

/// One sequence (or a shared part of several) in a packed batch, as attention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First packed row.
    pub start: usize,
    /// Number of rows.
    pub len: usize,
    /// RoPE position of the first row.
    pub pos0: usize,
    /// Index of a span that precedes this one in its sequence (a prefix shared by several
    /// sequences, computed once): this span's queries also see all of that span's keys.
    pub ctx: Option<usize>,
}

/// Layout and RoPE tables of [`attention`] for one packed batch.
#[derive(Debug, Clone)]
pub struct AttnSpec {
    /// The spans; every packed row belongs to exactly one.
    pub spans: Arc<Vec<Span>>,
    /// Total packed rows.
    pub n_rows: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    row_pos: Arc<Vec<usize>>,
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
    /// Sliding window: a query sees the keys at distance `< window` (as hd-lm and
    /// transformers); `None`, every earlier key.
    window: Option<usize>,
    /// Factor on q·k (`head_dim^-0.5` unless Gemma's `query_pre_attn_scalar` sets it).
    scale: f32,
    /// Gemma 2's attention soft-capping: scores become `c·tanh(s / c)` before the softmax.
    softcap: Option<f32>,
}

impl AttnSpec {
    /// Sequences of the given lengths back to back, each on its own (positions from 0).
    pub fn packed(
        lengths: &[usize],
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
        inv_freq: &[f64],
    ) -> Result<Self> {
        let mut spans = Vec::with_capacity(lengths.len());
        let mut start = 0;
        for &len in lengths {
            spans.push(Span {
                start,
                len,
                pos0: 0,
                ctx: None,
            });
            start += len;
        }
        Self::new(spans, n_heads, n_kv_heads, head_dim, inv_freq)
    }

    /// Checks the spans (they tile the rows; a context span comes earlier, has no context
    /// of its own, and ends where its user starts) and builds the RoPE tables.
    pub fn new(
        spans: Vec<Span>,
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
        inv_freq: &[f64],
    ) -> Result<Self> {
        if n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) || !head_dim.is_multiple_of(2) {
            bail!("attention: {n_heads} heads, {n_kv_heads} kv heads, head_dim {head_dim}");
        }
        let n_rows: usize = spans.iter().map(|s| s.len).sum();
        let mut row_pos = vec![usize::MAX; n_rows];
        for (i, s) in spans.iter().enumerate() {
            if s.len == 0 || s.start + s.len > n_rows {
                bail!("attention: span {i} ({s:?}) is empty or beyond {n_rows} rows");
            }
            for (j, p) in row_pos[s.start..s.start + s.len].iter_mut().enumerate() {
                if *p != usize::MAX {
                    bail!("attention: row {} is in two spans", s.start + j);
                }
                *p = s.pos0 + j;
            }
            if let Some(c) = s.ctx {
                let cs = spans.get(c).filter(|_| c < i);
                match cs {
                    Some(cs) if cs.ctx.is_none() && cs.pos0 + cs.len == s.pos0 => {}
                    _ => bail!("attention: span {i} has an invalid context span {c}"),
                }
            } else if s.pos0 != 0 {
                bail!(
                    "attention: span {i} starts at position {} without a context",
                    s.pos0
                );
            }
        }
        let max_pos = row_pos.iter().map(|p| p + 1).max().unwrap_or(0);
        let half = head_dim / 2;
        let mut cos = vec![0.0f32; max_pos * half];
        let mut sin = vec![0.0f32; max_pos * half];
        for p in 0..max_pos {
            for i in 0..half {
                // Same rounding as hd-lm: the angle in f32, cos/sin in f64.
                let a = (p as f32 * inv_freq[i] as f32) as f64;
                cos[p * half + i] = a.cos() as f32;
                sin[p * half + i] = a.sin() as f32;
            }
        }
        Ok(AttnSpec {
            spans: Arc::new(spans),
            n_rows,
            n_heads,
            n_kv_heads,
            head_dim,
            row_pos: Arc::new(row_pos),
            cos: Arc::new(cos),
            sin: Arc::new(sin),
            window: None,
            scale: 1.0 / (head_dim as f32).sqrt(),
            softcap: None,
        })
    }

    /// The same spans and RoPE with another factor on q·k.
    pub fn with_scale(&self, scale: f32) -> Self {
        AttnSpec {
            scale,
            ..self.clone()
        }
    }

    /// The same spans with cos and sin scaled by `f` (Phi-3's longrope attention factor, as
    /// transformers and hd-lm scale them).
    pub fn with_rope_factor(&self, f: f32) -> Self {
        let scaled = |v: &[f32]| Arc::new(v.iter().map(|x| x * f).collect::<Vec<f32>>());
        AttnSpec {
            cos: scaled(&self.cos),
            sin: scaled(&self.sin),
            ..self.clone()
        }
    }

    /// The same spans and RoPE with Gemma 2's soft-capping of the scores.
    pub fn with_softcap(&self, softcap: Option<f32>) -> Self {
        AttnSpec {
            softcap,
            ..self.clone()
        }
    }

    /// The same spans and RoPE with a sliding window (Mistral, Phi-3): the probabilities of
    /// keys outside it are zero, so are their gradients.
    pub fn with_window(&self, window: Option<usize>) -> Self {
        AttnSpec {
            window,
            ..self.clone()
        }
    }

    fn qkv_width(&self) -> usize {
        (self.n_heads + 2 * self.n_kv_heads) * self.head_dim
    }

    fn tables(&self, r: usize) -> (&[f32], &[f32]) {
        let half = self.head_dim / 2;
        let p = self.row_pos[r];
        (
            &self.cos[p * half..(p + 1) * half],
            &self.sin[p * half..(p + 1) * half],
        )
    }

    /// RoPE'd queries `[n, nh*hd]` and keys `[n, nkv*hd]`.
    fn rope_qk(&self, qkv: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (nh, nkv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let w = self.qkv_width();
        let n = self.n_rows;
        let mut q = vec![0.0f32; n * nh * hd];
        let mut k = vec![0.0f32; n * nkv * hd];
        q.par_chunks_mut(nh * hd)
            .zip(k.par_chunks_mut(nkv * hd))
            .enumerate()
            .for_each(|(r, (qr, kr))| {
                let (c, sn) = self.tables(r);
                let row = &qkv[r * w..(r + 1) * w];
                rope_into(&row[..nh * hd], qr, hd, c, sn, false);
                rope_into(&row[nh * hd..(nh + nkv) * hd], kr, hd, c, sn, false);
            });
        (q, k)
    }

    /// Key rows of span `s`: its context's rows, then its own.
    fn key_rows(&self, s: usize) -> impl Iterator<Item = usize> + '_ {
        let sp = self.spans[s];
        let ctx = sp.ctx.map(|c| self.spans[c]);
        ctx.into_iter()
            .flat_map(|c| c.start..c.start + c.len)
            .chain(sp.start..sp.start + sp.len)
    }

    fn n_ctx(&self, s: usize) -> usize {
        self.spans[s].ctx.map_or(0, |c| self.spans[c].len)
    }
}

/// Rotate-half RoPE of every head of `src` into `dst`; `inverse` applies the transpose
/// (which is how gradients go back through the rotation).
#[inline]
fn rope_into(src: &[f32], dst: &mut [f32], hd: usize, cos: &[f32], sin: &[f32], inverse: bool) {
    let half = hd / 2;
    for (s, d) in src.chunks_exact(hd).zip(dst.chunks_exact_mut(hd)) {
        for i in 0..half {
            let (x1, x2) = (s[i], s[half + i]);
            let (c, sn) = (cos[i], if inverse { -sin[i] } else { sin[i] });
            d[i] = x1 * c - x2 * sn;
            d[half + i] = x2 * c + x1 * sn;
        }
    }
}

/// `c[m,n] (+)= alpha · a·b`, single-threaded (the callers parallelise over tasks).
fn gemm_seq(
    c: &mut [f32],
    m: usize,
    n: usize,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    alpha: f32,
    add: bool,
) {
    if m == 0 || n == 0 || a.ncols() == 0 {
        if !add {
            c.fill(0.0);
        }
        return;
    }
    let cm = MatMut::from_row_major_slice_mut(c, m, n);
    let acc = if add { Accum::Add } else { Accum::Replace };
    faer::linalg::matmul::matmul(cm, acc, a, b, alpha, Par::Seq);
}

struct Attention(AttnSpec, Rules);

/// The inputs of one (span, kv head) task, gathered into dense matrices.
struct Task {
    /// Queries of the group's heads, rows `(gi, j)`: `[G·len, hd]`.
    q: Vec<f32>,
    /// Keys (context, then own), `[tk, hd]`.
    k: Vec<f32>,
    /// Values, `[tk, hd]`.
    v: Vec<f32>,
    len: usize,
    tk: usize,
    n_ctx: usize,
}

impl Attention {
    fn tasks(&self) -> Vec<(usize, usize)> {
        let sp = &self.0;
        (0..sp.spans.len())
            .flat_map(|s| (0..sp.n_kv_heads).map(move |kh| (s, kh)))
            .collect()
    }

    fn gather(&self, s: usize, kh: usize, qkv: &[f32], q: &[f32], k: &[f32]) -> Task {
        let sp = &self.0;
        let (nh, nkv, hd) = (sp.n_heads, sp.n_kv_heads, sp.head_dim);
        let (w, group) = (sp.qkv_width(), nh / nkv);
        let span = sp.spans[s];
        let len = span.len;
        let n_ctx = sp.n_ctx(s);
        let tk = n_ctx + len;
        let mut qm = vec![0.0f32; group * len * hd];
        for gi in 0..group {
            let h = kh * group + gi;
            for j in 0..len {
                let r = span.start + j;
                qm[(gi * len + j) * hd..][..hd].copy_from_slice(&q[r * nh * hd + h * hd..][..hd]);
            }
        }
        let mut km = vec![0.0f32; tk * hd];
        let mut vm = vec![0.0f32; tk * hd];
        for (i, r) in sp.key_rows(s).enumerate() {
            km[i * hd..(i + 1) * hd].copy_from_slice(&k[r * nkv * hd + kh * hd..][..hd]);
            vm[i * hd..(i + 1) * hd]
                .copy_from_slice(&qkv[r * w + (nh + nkv) * hd + kh * hd..][..hd]);
        }
        Task {
            q: qm,
            k: km,
            v: vm,
            len,
            tk,
            n_ctx,
        }
    }

    /// A task's scaled scores `scale·q·kᵀ`, `[G·len, tk]`, before any cap or mask.
    fn scores(&self, t: &Task) -> Vec<f32> {
        let hd = self.0.head_dim;
        let rows = t.q.len() / hd;
        let mut s = vec![0.0f32; rows * t.tk];
        gemm_seq(
            &mut s,
            rows,
            t.tk,
            MatRef::from_row_major_slice(&t.q, rows, hd),
            MatRef::from_row_major_slice(&t.k, t.tk, hd).transpose(),
            self.0.scale,
            false,
        );
        s
    }

    /// Causal softmax probabilities `[G·len, tk]` of a task.
    fn probs(&self, t: &Task) -> Vec<f32> {
        let mut p = self.scores(t);
        if let Some(c) = self.0.softcap {
            p.iter_mut().for_each(|x| *x = c * (*x / c).tanh());
        }
        with_avx2(|| {
            for (row, pr) in p.chunks_exact_mut(t.tk).enumerate() {
                let j = row % t.len;
                let valid = t.n_ctx + j + 1;
                let (live, masked) = pr.split_at_mut(valid);
                // keys before the window (key i sits at position i: a context starts at 0)
                let (outside, live) =
                    live.split_at_mut(self.0.window.map_or(0, |w| valid.saturating_sub(w)));
                outside.fill(0.0);
                let m = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut z = 0.0f32;
                for x in live.iter_mut() {
                    *x = fast_exp(*x - m);
                    z += *x;
                }
                let inv = 1.0 / z;
                for x in live.iter_mut() {
                    *x *= inv;
                }
                masked.fill(0.0);
            }
        });
        p
    }

    /// `[G·len, hd]` rows `(gi, j)` of a `[n, nh·hd]` tensor for the group's heads.
    fn gather_out(&self, s: usize, kh: usize, x: &[f32]) -> Vec<f32> {
        let sp = &self.0;
        let (nh, hd) = (sp.n_heads, sp.head_dim);
        let group = nh / sp.n_kv_heads;
        let span = sp.spans[s];
        let mut m = vec![0.0f32; group * span.len * hd];
        for gi in 0..group {
            let h = kh * group + gi;
            for j in 0..span.len {
                m[(gi * span.len + j) * hd..][..hd]
                    .copy_from_slice(&x[(span.start + j) * nh * hd + h * hd..][..hd]);
            }
        }
        m
    }
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "hd-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let sp = &self.0;
        let qkv = slice(s, l, "attention input")?;
        let (n, w) = (sp.n_rows, sp.qkv_width());
        if l.dims() != [n, w] {
            bail!(
                "attention: input has shape {:?}, expected [{n}, {w}]",
                l.dims()
            );
        }
        let (nh, nkv, hd) = (sp.n_heads, sp.n_kv_heads, sp.head_dim);
        let group = nh / nkv;
        let (q, k) = sp.rope_qk(qkv);
        let tasks = self.tasks();
        let outs: Vec<Vec<f32>> = tasks
            .par_iter()
            .map(|&(s, kh)| {
                let t = self.gather(s, kh, qkv, &q, &k);
                let p = self.probs(&t);
                let rows = group * t.len;
                let mut o = vec![0.0f32; rows * hd];
                gemm_seq(
                    &mut o,
                    rows,
                    hd,
                    MatRef::from_row_major_slice(&p, rows, t.tk),
                    MatRef::from_row_major_slice(&t.v, t.tk, hd),
                    1.0,
                    false,
                );
                o
            })
            .collect();
        let mut y = vec![0.0f32; n * nh * hd];
        for (&(s, kh), o) in tasks.iter().zip(outs) {
            let span = sp.spans[s];
            for gi in 0..group {
                let h = kh * group + gi;
                for j in 0..span.len {
                    y[(span.start + j) * nh * hd + h * hd..][..hd]
                        .copy_from_slice(&o[(gi * span.len + j) * hd..][..hd]);
                }
            }
        }
        Ok((CpuStorage::F32(y), (n, nh * hd).into()))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let sp = &self.0;
        let (n, w) = (sp.n_rows, sp.qkv_width());
        let mut dqkv = with_data(arg, |qkv| {
            with_data(res, |o| {
                with_data(g, |dout| {
                    let (q, k) = sp.rope_qk(qkv);
                    let tasks = self.tasks();
                    let parts: Vec<TaskGrads> = tasks
                        .par_iter()
                        .map(|&(s, kh)| self.task_grads(s, kh, qkv, &q, &k, o, dout))
                        .collect();
                    self.scatter_grads(&tasks, parts)
                })
            })
        })???;
        if self.1.lrp() {
            // Uniform rule: q·kᵀ splits relevance between q and k, softmax·v between the
            // probabilities (hence again q and k) and v.
            let (qw, kw) = (sp.n_heads * sp.head_dim, sp.n_kv_heads * sp.head_dim);
            dqkv.par_chunks_mut(w).for_each(|row| {
                let (q, rest) = row.split_at_mut(qw);
                let (k, v) = rest.split_at_mut(kw);
                q.iter_mut().chain(k.iter_mut()).for_each(|x| *x *= 0.25);
                v.iter_mut().for_each(|x| *x *= 0.5);
            });
        }
        Ok(Some(tensor(dqkv, (n, w), arg)?))
    }
}

/// One task's gradients: dq `[G·len, hd]`, dk and dv `[tk, hd]` (rotated space).
type TaskGrads = (Vec<f32>, Vec<f32>, Vec<f32>);

impl Attention {
    /// The gradients of one (span, kv head) task, recomputing its probabilities.
    #[allow(clippy::too_many_arguments)]
    fn task_grads(
        &self,
        s: usize,
        kh: usize,
        qkv: &[f32],
        q: &[f32],
        k: &[f32],
        o: &[f32],
        dout: &[f32],
    ) -> TaskGrads {
        let sp = &self.0;
        let hd = sp.head_dim;
        let group = sp.n_heads / sp.n_kv_heads;
        let scale = sp.scale;
        let t = self.gather(s, kh, qkv, q, k);
        let p = self.probs(&t);
        let rows = group * t.len;
        let d_o = self.gather_out(s, kh, dout);
        let oo = self.gather_out(s, kh, o);
        // dP = dO·Vᵀ, then dS = P∘(dP − rowsum(dO∘O))·scale in place (times the soft-cap's
        // derivative 1 − tanh²(s/c) at the raw scores s, recomputed, where it applies).
        let capped = self.0.softcap.map(|c| self.softcap_slopes(&t, c));
        let mut ds = vec![0.0f32; rows * t.tk];
        gemm_seq(
            &mut ds,
            rows,
            t.tk,
            MatRef::from_row_major_slice(&d_o, rows, hd),
            MatRef::from_row_major_slice(&t.v, t.tk, hd).transpose(),
            1.0,
            false,
        );
        with_avx2(|| {
            for (row, (dr, pr)) in ds
                .chunks_exact_mut(t.tk)
                .zip(p.chunks_exact(t.tk))
                .enumerate()
            {
                let dd = dot(
                    &d_o[row * hd..(row + 1) * hd],
                    &oo[row * hd..(row + 1) * hd],
                );
                // (· 1.0 where nothing is capped: exact, so the bits are those of P∘(dP − d)·scale)
                for (i, (x, &pp)) in dr.iter_mut().zip(pr).enumerate() {
                    let slope = capped.as_ref().map_or(1.0, |f| f[row * t.tk + i]);
                    *x = pp * (*x - dd) * slope * scale;
                }
            }
        });
        let mut dq = vec![0.0f32; rows * hd];
        gemm_seq(
            &mut dq,
            rows,
            hd,
            MatRef::from_row_major_slice(&ds, rows, t.tk),
            MatRef::from_row_major_slice(&t.k, t.tk, hd),
            1.0,
            false,
        );
        let mut dk = vec![0.0f32; t.tk * hd];
        gemm_seq(
            &mut dk,
            t.tk,
            hd,
            MatRef::from_row_major_slice(&ds, rows, t.tk).transpose(),
            MatRef::from_row_major_slice(&t.q, rows, hd),
            1.0,
            false,
        );
        let mut dv = vec![0.0f32; t.tk * hd];
        gemm_seq(
            &mut dv,
            t.tk,
            hd,
            MatRef::from_row_major_slice(&p, rows, t.tk).transpose(),
            MatRef::from_row_major_slice(&d_o, rows, hd),
            1.0,
            false,
        );
        (dq, dk, dv)
    }

    /// Gemma 2's soft-cap derivative at a task's raw scores `s` (recomputed): `1 − tanh²(s/c)`,
    /// `[rows, tk]`.
    fn softcap_slopes(&self, t: &Task, c: f32) -> Vec<f32> {
        let mut raw = self.scores(t);
        raw.iter_mut().for_each(|x| {
            let th = (*x / c).tanh();
            *x = 1.0 - th * th;
        });
        raw
    }

    /// Sums the tasks' gradients into `dqkv` rows, in task order (context rows get several),
    /// and rotates dq and dk back out of RoPE space.
    fn scatter_grads(&self, tasks: &[(usize, usize)], parts: Vec<TaskGrads>) -> Vec<f32> {
        let sp = &self.0;
        let (nh, nkv, hd) = (sp.n_heads, sp.n_kv_heads, sp.head_dim);
        let group = nh / nkv;
        let (n, w) = (sp.n_rows, sp.qkv_width());
        let mut dk_rot = vec![0.0f32; n * nkv * hd];
        let mut dqkv = vec![0.0f32; n * w];
        for (&(s, kh), (dq, dk, dv)) in tasks.iter().zip(parts) {
            let span = sp.spans[s];
            for gi in 0..group {
                let h = kh * group + gi;
                for j in 0..span.len {
                    let r = span.start + j;
                    let (c, sn) = sp.tables(r);
                    rope_into(
                        &dq[(gi * span.len + j) * hd..][..hd],
                        &mut dqkv[r * w + h * hd..][..hd],
                        hd,
                        c,
                        sn,
                        true,
                    );
                }
            }
            for (i, r) in sp.key_rows(s).enumerate() {
                axpy(
                    1.0,
                    &dk[i * hd..(i + 1) * hd],
                    &mut dk_rot[r * nkv * hd + kh * hd..][..hd],
                );
                axpy(
                    1.0,
                    &dv[i * hd..(i + 1) * hd],
                    &mut dqkv[r * w + (nh + nkv) * hd + kh * hd..][..hd],
                );
            }
        }
        dqkv.par_chunks_mut(w)
            .zip(dk_rot.par_chunks(nkv * hd))
            .enumerate()
            .for_each(|(r, (row, dk))| {
                let (c, sn) = sp.tables(r);
                rope_into(dk, &mut row[nh * hd..(nh + nkv) * hd], hd, c, sn, true);
            });
        dqkv
    }
}

/// Causal multi-head (GQA) attention with rotate-half RoPE over packed sequences: `qkv` is
/// `[n, (nh + 2·nkv)·hd]` rows of fused q|k|v projections (bias already added), the result
/// `[n, nh·hd]` the attention output before `o_proj`. A span sees its own earlier rows and
/// all rows of its context span.
pub fn attention(qkv: &Tensor, spec: &AttnSpec) -> Result<Tensor> {
    attention_with(qkv, spec, Rules::Exact)
}

/// [`attention`] with the backward pass of `rules`.
pub fn attention_with(qkv: &Tensor, spec: &AttnSpec, rules: Rules) -> Result<Tensor> {
    qkv.contiguous()?.apply_op1(Attention(spec.clone(), rules))
}

// ---------------------------------------------------------------------------------------
// LoRA projection and residual add.

struct LoraLinear {
    w: Weight,
    scale: f32,
}

impl LoraLinear {
    fn dims(&self) -> Result<(usize, usize)> {
        self.w.dims2()
    }
}

/// A projection's weight `[out, in]`: a candle tensor (trainable, or built from f32 values),
/// or a frozen matrix in its stored type (quantised or bf16, multiplied from dequantised
/// tiles; never expanded whole).
#[derive(Debug, Clone)]
pub enum Weight {
    /// An f32 tensor.
    Tensor(Tensor),
    /// A frozen stored matrix.
    Stored(hd_lm::Matrix),
}

impl Weight {
    /// An hd-lm matrix as a weight: f32 values become a tensor (moved when not shared),
    /// stored types stay stored.
    pub fn from_matrix(m: hd_lm::Matrix) -> Result<Self> {
        if m.as_f32().is_none() {
            return Ok(Weight::Stored(m));
        }
        let (r, c) = (m.rows(), m.cols());
        let v = m.into_f32().unwrap_or_else(|m| m.to_f32());
        Ok(Weight::Tensor(Tensor::from_vec(v, (r, c), &Device::Cpu)?))
    }

    /// `(out, in)`.
    pub fn dims2(&self) -> Result<(usize, usize)> {
        match self {
            Weight::Tensor(t) => t.dims2(),
            Weight::Stored(m) => Ok((m.rows(), m.cols())),
        }
    }

    /// The values as f32 (a full copy of a stored matrix: for small models).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        match self {
            Weight::Tensor(t) => t.flatten_all()?.to_vec1::<f32>(),
            Weight::Stored(m) => Ok(m.to_f32()),
        }
    }

    /// As an f32 tensor (a trainable copy of a stored matrix).
    pub fn to_tensor(&self) -> Result<Tensor> {
        match self {
            Weight::Tensor(t) => Ok(t.clone()),
            Weight::Stored(m) => Tensor::from_vec(m.to_f32(), (m.rows(), m.cols()), &Device::Cpu),
        }
    }

    /// `x[m, in] · Wᵀ`.
    fn nt(&self, x: &[f32], m: usize) -> Result<Vec<f32>> {
        let (out, inp) = self.dims2()?;
        match self {
            Weight::Tensor(w) => with_data(w, |w| matmul_nt(x, m, inp, w, out)),
            Weight::Stored(w) => {
                let mut y = vec![0.0f32; m * out];
                w.linear(x, m, &mut y, false, hd_lm::Compute::Exact);
                Ok(y)
            }
        }
    }

    /// `g[m, out] · W`.
    fn nn(&self, g: &[f32], m: usize) -> Result<Vec<f32>> {
        let (out, inp) = self.dims2()?;
        match self {
            Weight::Tensor(w) => with_data(w, |w| matmul_nn(g, m, out, w, inp)),
            Weight::Stored(w) => {
                let mut y = vec![0.0f32; m * inp];
                w.matmul_n(g, m, &mut y);
                Ok(y)
            }
        }
    }
}

/// The input gradient of a frozen stored projection (see [`input_grad`]).
struct StoredLinear(hd_lm::Matrix);

impl CustomOp1 for StoredLinear {
    fn name(&self) -> &'static str {
        "hd-stored-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "linear input")?;
        let (out, inp) = (self.0.rows(), self.0.cols());
        if last_dim(l.dims()) != inp {
            bail!(
                "linear: input has shape {:?}, weight [{out}, {inp}]",
                l.dims()
            );
        }
        let m = x.len() / inp.max(1);
        let mut y = vec![0.0f32; m * out];
        self.0.linear(x, m, &mut y, false, hd_lm::Compute::Exact);
        Ok((CpuStorage::F32(y), with_last(l.dims(), out).into()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let (out, inp) = (self.0.rows(), self.0.cols());
        let m = g.elem_count() / out.max(1);
        let d = with_data(g, |gd| {
            live_rows(gd, m, out, inp, |sub, n| {
                let mut y = vec![0.0f32; n * inp];
                self.0.matmul_n(sub, n, &mut y);
                y
            })
        })?;
        Ok(Some(tensor(d, x.dims(), x)?))
    }
}

/// `x[.., in] · Wᵀ` for either kind of weight.
pub fn linear_w(x: &Tensor, w: &Weight) -> Result<Tensor> {
    match w {
        Weight::Tensor(t) => linear(x, t),
        Weight::Stored(m) => x.contiguous()?.apply_op1(StoredLinear(m.clone())),
    }
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "hd-lora-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "lora input")?;
        let a = slice(s2, l2, "lora A")?;
        let b = slice(s3, l3, "lora B")?;
        let (out, inp) = self.dims()?;
        let r = l2.dims()[0];
        if last_dim(l1.dims()) != inp || l2.dims() != [r, inp] || l3.dims() != [out, r] {
            bail!(
                "lora: input {:?}, A {:?}, B {:?}, W [{out}, {inp}]",
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        let m = x.len() / inp.max(1);
        let y = self.w.nt(x, m).map(|mut y| {
            let u = matmul_nt(x, m, inp, a, r);
            gemm_par(
                &mut y,
                m,
                out,
                MatRef::from_row_major_slice(&u, m, r),
                MatRef::from_row_major_slice(b, out, r).transpose(),
                self.scale,
                true,
            );
            y
        })?;
        Ok((CpuStorage::F32(y), with_last(l1.dims(), out).into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (out, inp) = self.dims()?;
        let r = a.dims2()?.0;
        let m = g.elem_count() / out.max(1);
        let want_x = x.track_op();
        let (gx, ga, gb) = with_data(x, |xd| {
            with_data(a, |ad| {
                with_data(b, |bd| {
                    with_data(g, |gd| {
                        Ok::<_, candle_core::Error>({
                            let u = matmul_nt(xd, m, inp, ad, r);
                            // gu = s·g·B, gB = s·gᵀ·u, gA = guᵀ·x, gx = g·W + gu·A
                            let mut gu = matmul_nn(gd, m, out, bd, r);
                            gu.iter_mut().for_each(|v| *v *= self.scale);
                            let mut gb = matmul_tn(gd, out, m, &u, r);
                            gb.iter_mut().for_each(|v| *v *= self.scale);
                            let ga = matmul_tn(&gu, r, m, xd, inp);
                            let gx = if want_x {
                                let mut gx = self.w.nn(gd, m)?;
                                gemm_par(
                                    &mut gx,
                                    m,
                                    inp,
                                    MatRef::from_row_major_slice(&gu, m, r),
                                    MatRef::from_row_major_slice(ad, r, inp),
                                    1.0,
                                    true,
                                );
                                gx
                            } else {
                                Vec::new()
                            };
                            (gx, ga, gb)
                        })
                    })
                })
            })
        })?????;
        let gx = if want_x {
            Some(tensor(gx, x.dims(), x)?)
        } else {
            None
        };
        Ok((
            gx,
            Some(tensor(ga, (r, inp), a)?),
            Some(tensor(gb, (out, r), b)?),
        ))
    }
}

/// `x·Wᵀ + scale·(x·Aᵀ)·Bᵀ` with `W` `[out, in]` frozen, `A` `[r, in]`, `B` `[out, r]`
/// trainable: a LoRA-adapted projection in one op.
pub fn lora_linear(x: &Tensor, w: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> Result<Tensor> {
    lora_linear_w(x, &Weight::Tensor(w.contiguous()?), a, b, scale)
}

/// [`lora_linear`] over either kind of frozen weight.
pub fn lora_linear_w(x: &Tensor, w: &Weight, a: &Tensor, b: &Tensor, scale: f64) -> Result<Tensor> {
    let w = match w {
        Weight::Tensor(t) => Weight::Tensor(t.contiguous()?),
        Weight::Stored(m) => Weight::Stored(m.clone()),
    };
    x.contiguous()?.apply_op3(
        &a.contiguous()?,
        &b.contiguous()?,
        LoraLinear {
            w,
            scale: scale as f32,
        },
    )
}

struct Add;

impl CustomOp2 for Add {
    fn name(&self) -> &'static str {
        "hd-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = slice(s1, l1, "add lhs")?;
        let b = slice(s2, l2, "add rhs")?;
        if l1.dims() != l2.dims() {
            bail!("add: shapes {:?} and {:?}", l1.dims(), l2.dims());
        }
        let mut y = vec![0.0f32; a.len()];
        y.par_chunks_mut(1 << 14)
            .zip(a.par_chunks(1 << 14).zip(b.par_chunks(1 << 14)))
            .for_each(|(y, (a, b))| {
                for ((o, &x), &z) in y.iter_mut().zip(a).zip(b) {
                    *o = x + z;
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((
            a.track_op().then(|| g.clone()),
            b.track_op().then(|| g.clone()),
        ))
    }
}

/// `a + b` (same shapes), in parallel.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.contiguous()?.apply_op2(&b.contiguous()?, Add)
}

// ---------------------------------------------------------------------------------------
// Gated MLPs: SwiGLU and GeGLU.

struct GatedMul {
    ff: usize,
    act: Act,
    rules: Rules,
}

#[inline(always)]
fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + fast_exp(-a))
}

/// `gelu_tanh(a)/a = ½(1 + tanh u)`, `u = √(2/π)(a + 0.044715a³)`, and the derivative
/// `gelu_tanh'(a)` (the formula of hd-lm's [`gelu_tanh`]).
#[inline(always)]
fn gelu_tanh_ratio_and_slope(a: f32) -> (f32, f32) {
    const C: f32 = 0.797_884_6; // √(2/π)
    let t = (C * (a + 0.044_715 * a * a * a)).tanh();
    let ratio = 0.5 * (1.0 + t);
    (
        ratio,
        ratio + 0.5 * a * (1.0 - t * t) * C * (1.0 + 3.0 * 0.044_715 * a * a),
    )
}

impl GatedMul {
    fn fwd_row(&self, a: &[f32], b: &[f32], o: &mut [f32]) {
        match self.act {
            Act::Silu => with_avx2(|| {
                for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                    *o = a * sigmoid(a) * b;
                }
            }),
            // hd-lm's own GeGLU, so that states equal its forward pass
            Act::GeluTanh => {
                for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                    *o = gelu_tanh(a) * b;
                }
            }
        }
    }

    /// `da`, `db` of one row from the upstream `dy`.
    fn bwd_row(&self, a: &[f32], b: &[f32], dy: &[f32], da: &mut [f32], db: &mut [f32]) {
        let ff = self.ff;
        match (self.act, self.rules.lrp()) {
            (Act::Silu, true) => with_avx2(|| {
                for i in 0..ff {
                    let s = sigmoid(a[i]);
                    let half = 0.5 * dy[i];
                    da[i] = half * b[i] * s;
                    db[i] = half * a[i] * s;
                }
            }),
            (Act::Silu, false) => with_avx2(|| {
                for i in 0..ff {
                    let s = sigmoid(a[i]);
                    let silu = a[i] * s;
                    da[i] = dy[i] * b[i] * s * (1.0 + a[i] * (1.0 - s));
                    db[i] = dy[i] * silu;
                }
            }),
            (Act::GeluTanh, lrp) => {
                for i in 0..ff {
                    let (ratio, slope) = gelu_tanh_ratio_and_slope(a[i]);
                    // AttnLRP: the identity rule's gelu(a)/a in place of the slope, and the
                    // uniform rule's half of the product's gradient to each factor
                    let (k, d) = if lrp { (0.5, ratio) } else { (1.0, slope) };
                    da[i] = k * dy[i] * b[i] * d;
                    db[i] = k * dy[i] * a[i] * ratio;
                }
            }
        }
    }
}

impl CustomOp1 for GatedMul {
    fn name(&self) -> &'static str {
        match self.act {
            Act::Silu => "hd-silu-mul",
            Act::GeluTanh => "hd-gelu-tanh-mul",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let ff = self.ff;
        let gu = slice(s, l, "gated_mul input")?;
        if last_dim(l.dims()) != 2 * ff {
            bail!(
                "gated_mul: input {:?}, expected last dim {}",
                l.dims(),
                2 * ff
            );
        }
        let mut out = vec![0.0f32; gu.len() / 2];
        out.par_chunks_mut(ff * CHUNK)
            .zip(gu.par_chunks(2 * ff * CHUNK))
            .for_each(|(oc, gc)| {
                for (o, g) in oc.chunks_mut(ff).zip(gc.chunks(2 * ff)) {
                    let (a, b) = g.split_at(ff);
                    self.fwd_row(a, b, o);
                }
            });
        Ok((CpuStorage::F32(out), with_last(l.dims(), ff).into()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let ff = self.ff;
        let d = with_data(arg, |gu| {
            with_data(g, |dy| {
                let mut d = vec![0.0f32; gu.len()];
                d.par_chunks_mut(2 * ff * CHUNK)
                    .zip(gu.par_chunks(2 * ff * CHUNK))
                    .zip(dy.par_chunks(ff * CHUNK))
                    .for_each(|((dc, gc), yc)| {
                        for ((dr, gr), yr) in dc
                            .chunks_mut(2 * ff)
                            .zip(gc.chunks(2 * ff))
                            .zip(yc.chunks(ff))
                        {
                            let (a, b) = gr.split_at(ff);
                            let (da, db) = dr.split_at_mut(ff);
                            self.bwd_row(a, b, yr, da, db);
                        }
                    });
                d
            })
        })??;
        Ok(Some(tensor(d, arg.dims(), arg)?))
    }
}

/// `silu(gate) ∘ up` of fused `[.., 2·ff]` rows (gate first), giving `[.., ff]`.
pub fn silu_mul(gate_up: &Tensor, ff: usize) -> Result<Tensor> {
    silu_mul_with(gate_up, ff, Rules::Exact)
}

/// [`silu_mul`] with the backward pass of `rules`.
pub fn silu_mul_with(gate_up: &Tensor, ff: usize, rules: Rules) -> Result<Tensor> {
    gated_mul_with(gate_up, ff, Act::Silu, rules)
}

/// `act(gate) ∘ up` of fused `[.., 2·ff]` rows (gate first), giving `[.., ff]`: SwiGLU
/// ([`Act::Silu`]) or GeGLU ([`Act::GeluTanh`], transformers' `gelu_pytorch_tanh`), with the
/// backward pass of `rules`.
pub fn gated_mul_with(gate_up: &Tensor, ff: usize, act: Act, rules: Rules) -> Result<Tensor> {
    gate_up.contiguous()?.apply_op1(GatedMul { ff, act, rules })
}

// ---------------------------------------------------------------------------------------
// Cross-entropy.

struct CrossEntropy {
    targets: Arc<Vec<u32>>,
}

/// Log-sum-exp of a row (the exponentials in f32, their sum in f64).
fn lse(row: &[f32]) -> f64 {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let z = with_avx2(|| {
        let mut acc = [0.0f64; 8];
        let chunks = row.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..8 {
                acc[i] += fast_exp(c[i] - m) as f64;
            }
        }
        acc.iter().sum::<f64>() + rest.iter().map(|&v| fast_exp(v - m) as f64).sum::<f64>()
    });
    m as f64 + z.ln()
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "hd-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "cross_entropy logits")?;
        let (m, v) = match l.dims() {
            [m, v] => (*m, *v),
            d => bail!("cross_entropy: logits have shape {d:?}, expected [rows, vocab]"),
        };
        if self.targets.len() != m {
            bail!("cross_entropy: {} targets for {m} rows", self.targets.len());
        }
        if let Some(&t) = self.targets.iter().find(|&&t| t as usize >= v) {
            bail!("cross_entropy: target {t} out of range for {v} classes");
        }
        let out: Vec<f32> = (0..m)
            .into_par_iter()
            .map(|i| {
                let row = &x[i * v..(i + 1) * v];
                (lse(row) - row[self.targets[i] as usize] as f64) as f32
            })
            .collect();
        Ok((CpuStorage::F32(out), (m,).into()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let (m, v) = arg.dims2()?;
        let d = with_data(arg, |x| {
            with_data(g, |gd| {
                let mut d = vec![0.0f32; m * v];
                d.par_chunks_mut(v).enumerate().for_each(|(i, dr)| {
                    let row = &x[i * v..(i + 1) * v];
                    let l = lse(row) as f32;
                    let gi = gd[i];
                    with_avx2(|| {
                        for (o, &z) in dr.iter_mut().zip(row) {
                            *o = gi * fast_exp(z - l);
                        }
                    });
                    dr[self.targets[i] as usize] -= gd[i];
                });
                d
            })
        })??;
        Ok(Some(tensor(d, (m, v), arg)?))
    }
}

/// Per-row negative log-likelihood `[m]` of `targets` under `logits` `[m, vocab]`.
pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    logits.contiguous()?.apply_op1(CrossEntropy {
        targets: Arc::new(targets.to_vec()),
    })
}
