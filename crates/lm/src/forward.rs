//! The decoder forward pass over a packed batch, with capture and intervention hooks.
//!
//! Sequences are packed end to end (no padding): the projections and the MLP run as GEMMs over
//! all tokens of the batch, attention runs per sequence and head. A prompt's activations thus
//! do not depend on what else is in the batch beyond floating-point summation order. Positions
//! restart at 0 for each sequence (or continue from its KV cache).

use crate::config::Config;
use crate::error::{LmError, Result};
use crate::kernels::{
    axpy, dot, dot_generic, fast_exp, linear, rms_norm, rms_norm_row, rope_row, silu_mul, with_avx2,
};
use crate::weights::Weights;
use rayon::prelude::*;

/// Which token positions a hook sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// The last token of each sequence.
    Last,
    /// Every token.
    All,
}

/// What an intervention does to the residual stream `h` at its layers and positions.
#[derive(Debug, Clone)]
pub enum InterventionOp {
    /// `h ← h + alpha·v` (use a negative alpha to subtract, as the paper's `h − αv`).
    Add {
        /// Scale.
        alpha: f32,
        /// Direction (used as given, not normalised).
        v: Vec<f32>,
    },
    /// `h ← h − alpha·(h·v̂)v̂` with v̂ = v/|v|; alpha = 1 removes the direction entirely.
    Project {
        /// Fraction of the projection removed.
        alpha: f32,
        /// Direction (normalised internally).
        v: Vec<f32>,
    },
}

/// An edit of the residual stream at Hugging Face hidden-state indices `layers`
/// (0 = embeddings, i = output of block i−1, L = after the final norm). Applied before any
/// capture at the same index, so captures see the edited stream.
#[derive(Debug, Clone)]
pub struct Intervention {
    /// Hidden-state indices to edit.
    pub layers: Vec<usize>,
    /// Positions edited.
    pub positions: Positions,
    /// The edit.
    pub op: InterventionOp,
}

/// What a forward call should return.
#[derive(Debug, Clone)]
pub struct Request {
    /// Hidden-state indices to capture, HF `output_hidden_states` numbering.
    pub capture_layers: Vec<usize>,
    /// Positions captured.
    pub capture_positions: Positions,
    /// Edits of the residual stream.
    pub interventions: Vec<Intervention>,
    /// Whether to compute next-token logits at each sequence's last position.
    pub logits: bool,
}

/// Captured states and logits of one forward call.
#[derive(Debug, Clone)]
pub struct Output {
    /// `(layer, states)` in the order of `capture_layers`: `[n_seqs, d]` for `Last`,
    /// `[total_tokens, d]` (sequences back to back) for `All`.
    pub captured: Vec<(usize, Vec<f32>)>,
    /// `[n_seqs, vocab]` when requested.
    pub logits: Option<Vec<f32>>,
}

/// Per-sequence key/value cache, `[len, kv_heads*head_dim]` per layer.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The forward pass over weights and config.
pub struct Forward<'a> {
    /// Hyper-parameters.
    pub cfg: &'a Config,
    /// Weights.
    pub w: &'a Weights,
}

impl Forward<'_> {
    fn check(&self, seqs: &[&[u32]], req: &Request, past: usize) -> Result<()> {
        let cfg = self.cfg;
        for (i, s) in seqs.iter().enumerate() {
            if s.is_empty() {
                return Err(LmError::Input(format!("sequence {i} is empty")));
            }
            if let Some(&t) = s.iter().find(|&&t| t as usize >= cfg.vocab_size) {
                return Err(LmError::Input(format!(
                    "sequence {i}: token id {t} out of range for vocabulary of {}",
                    cfg.vocab_size
                )));
            }
            if s.len() + past > cfg.max_position_embeddings.max(1) * 4 {
                return Err(LmError::Input(format!(
                    "sequence {i} has {} tokens, far beyond the model's context of {}",
                    s.len() + past,
                    cfg.max_position_embeddings
                )));
            }
        }
        let l = cfg.num_layers;
        for &c in req
            .capture_layers
            .iter()
            .chain(req.interventions.iter().flat_map(|i| &i.layers))
        {
            if c > l {
                return Err(LmError::Input(format!("layer {c} out of range 0..={l}")));
            }
        }
        for iv in &req.interventions {
            let v = match &iv.op {
                InterventionOp::Add { v, .. } | InterventionOp::Project { v, .. } => v,
            };
            if v.len() != cfg.hidden_size {
                return Err(LmError::Input(format!(
                    "intervention direction has {} entries, expected hidden size {}",
                    v.len(),
                    cfg.hidden_size
                )));
            }
        }
        Ok(())
    }

    /// Runs the model on `seqs` (no cache).
    pub fn run(&self, seqs: &[&[u32]], req: &Request) -> Result<Output> {
        self.run_inner(seqs, None, req)
    }

    /// Runs the model on new tokens `seqs[i]` continuing `caches[i]`, and appends to the caches.
    pub fn run_cached(
        &self,
        seqs: &[&[u32]],
        caches: &mut [KvCache],
        req: &Request,
    ) -> Result<Output> {
        if caches.len() != seqs.len() {
            return Err(LmError::Input(format!(
                "{} caches for {} sequences",
                caches.len(),
                seqs.len()
            )));
        }
        self.run_inner(seqs, Some(caches), req)
    }

    fn run_inner(
        &self,
        seqs: &[&[u32]],
        mut caches: Option<&mut [KvCache]>,
        req: &Request,
    ) -> Result<Output> {
        let max_past = caches
            .as_ref()
            .map_or(0, |c| c.iter().map(|c| c.len).max().unwrap_or(0));
        self.check(seqs, req, max_past)?;
        let cfg = self.cfg;
        let w = self.w;
        let (d, hd, nh, nkv, ff) = (
            cfg.hidden_size,
            cfg.head_dim,
            cfg.num_heads,
            cfg.num_kv_heads,
            cfg.intermediate_size,
        );
        let nl = cfg.num_layers;
        let qkv_w = cfg.qkv_width();
        let kv_w = nkv * hd;
        let n = seqs.len();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0usize);
        for s in seqs {
            offsets.push(offsets.last().unwrap() + s.len());
        }
        let t = offsets[n];
        let past: Vec<usize> = match &caches {
            Some(c) => c.iter().map(|c| c.len).collect(),
            None => vec![0; n],
        };
        if let Some(c) = caches.as_deref_mut() {
            for c in c.iter_mut() {
                if c.k.is_empty() {
                    c.k = vec![Vec::new(); nl];
                    c.v = vec![Vec::new(); nl];
                }
            }
        }

        // Deepest block needed: logits and the post-norm state need all of them.
        let deepest = req
            .capture_layers
            .iter()
            .chain(req.interventions.iter().flat_map(|i| &i.layers))
            .copied()
            .max()
            .unwrap_or(0);
        let n_blocks = if req.logits || caches.is_some() {
            nl
        } else {
            deepest.min(nl)
        };

        // RoPE tables for every position used.
        let max_pos = (0..n).map(|i| past[i] + seqs[i].len()).max().unwrap_or(0);
        let inv_freq: Vec<f32> = cfg.inv_freq().into_iter().map(|f| f as f32).collect();
        let half = hd / 2;
        let mut cos = vec![0.0f32; max_pos * half];
        let mut sin = vec![0.0f32; max_pos * half];
        for p in 0..max_pos {
            for i in 0..half {
                let a = (p as f32 * inv_freq[i]) as f64;
                cos[p * half + i] = a.cos() as f32;
                sin[p * half + i] = a.sin() as f32;
            }
        }
        let pos_of = |row: usize| -> usize {
            let s = offsets.partition_point(|&o| o <= row) - 1;
            past[s] + row - offsets[s]
        };

        let mut h = vec![0.0f32; t * d];
        for (i, s) in seqs.iter().enumerate() {
            for (j, &tok) in s.iter().enumerate() {
                let r = offsets[i] + j;
                h[r * d..(r + 1) * d]
                    .copy_from_slice(&w.embed[tok as usize * d..(tok as usize + 1) * d]);
            }
        }
        let mut captured: Vec<(usize, Vec<f32>)> = req
            .capture_layers
            .iter()
            .map(|&l| (l, Vec::new()))
            .collect();
        let hook = |layer: usize, h: &mut [f32], captured: &mut Vec<(usize, Vec<f32>)>| {
            self.intervene(layer, h, &offsets, &req.interventions);
            for (l, buf) in captured.iter_mut() {
                if *l == layer {
                    *buf = gather(h, d, &offsets, req.capture_positions);
                }
            }
        };
        hook(0, &mut h, &mut captured);

        let mut x = vec![0.0f32; t * d];
        let mut qkv = vec![0.0f32; t * qkv_w];
        let mut att = vec![0.0f32; t * nh * hd];
        let mut gu = vec![0.0f32; t * 2 * ff];
        let mut act = vec![0.0f32; t * ff];
        for li in 0..n_blocks {
            let lw = &w.layers[li];
            rms_norm(&h, &lw.attn_norm, cfg.rms_norm_eps, &mut x);
            linear(&x, t, d, &lw.wqkv, qkv_w, &mut qkv, false);
            let (rope_cos, rope_sin) = (&cos, &sin);
            qkv.par_chunks_mut(qkv_w).enumerate().for_each(|(r, row)| {
                if let Some(b) = &lw.bqkv {
                    for (o, &bb) in row.iter_mut().zip(b) {
                        *o += bb;
                    }
                }
                let p = pos_of(r);
                let (c, s) = (
                    &rope_cos[p * half..(p + 1) * half],
                    &rope_sin[p * half..(p + 1) * half],
                );
                rope_row(&mut row[..(nh + nkv) * hd], nh + nkv, hd, c, s);
            });
            // Keys/values: the cache when there is one, else straight from the qkv rows.
            if let Some(c) = caches.as_deref_mut() {
                for (i, cache) in c.iter_mut().enumerate() {
                    for r in offsets[i]..offsets[i + 1] {
                        let row = &qkv[r * qkv_w..(r + 1) * qkv_w];
                        cache.k[li].extend_from_slice(&row[nh * hd..nh * hd + kv_w]);
                        cache.v[li].extend_from_slice(&row[nh * hd + kv_w..]);
                    }
                }
            }
            let scale = 1.0 / (hd as f32).sqrt();
            let caches_ref = caches.as_deref();
            let qkv_ref = &qkv;
            let seq_out: Vec<(usize, &mut [f32])> = split_rows(&mut att, &offsets, nh * hd);
            seq_out.into_par_iter().for_each(|(i, out)| {
                let len = seqs[i].len();
                let (kbuf, vbuf, stride, koff, voff) = match caches_ref {
                    Some(c) => (&c[i].k[li][..], &c[i].v[li][..], kv_w, 0, 0),
                    None => {
                        let rows = &qkv_ref[offsets[i] * qkv_w..offsets[i + 1] * qkv_w];
                        (rows, rows, qkv_w, nh * hd, nh * hd + kv_w)
                    }
                };
                with_avx2(|| {
                    let mut scores = vec![0.0f32; past[i] + len];
                    for j in 0..len {
                        let qrow = &qkv_ref[(offsets[i] + j) * qkv_w..];
                        let n_keys = past[i] + j + 1;
                        for head in 0..nh {
                            let kvh = head / (nh / nkv);
                            let q = &qrow[head * hd..(head + 1) * hd];
                            let mut m = f32::NEG_INFINITY;
                            for (kk, sc) in scores[..n_keys].iter_mut().enumerate() {
                                let k = &kbuf[kk * stride + koff + kvh * hd..][..hd];
                                *sc = dot_generic(q, k) * scale;
                                m = m.max(*sc);
                            }
                            let mut z = 0.0f32;
                            for sc in scores[..n_keys].iter_mut() {
                                *sc = fast_exp(*sc - m);
                                z += *sc;
                            }
                            let o = &mut out[j * nh * hd + head * hd..][..hd];
                            o.fill(0.0);
                            for (kk, &p) in scores[..n_keys].iter().enumerate() {
                                axpy(p / z, &vbuf[kk * stride + voff + kvh * hd..][..hd], o);
                            }
                        }
                    }
                });
            });
            linear(&att, t, nh * hd, &lw.wo, d, &mut h, true);
            rms_norm(&h, &lw.mlp_norm, cfg.rms_norm_eps, &mut x);
            linear(&x, t, d, &lw.w_gate_up, 2 * ff, &mut gu, false);
            silu_mul(&gu, ff, &mut act);
            linear(&act, t, ff, &lw.w_down, d, &mut h, true);
            if li + 1 < nl {
                hook(li + 1, &mut h, &mut captured);
            }
        }
        if let Some(c) = caches {
            for (i, cache) in c.iter_mut().enumerate() {
                cache.len += seqs[i].len();
            }
        }
        let wants_final = req.logits
            || req.capture_layers.contains(&nl)
            || req.interventions.iter().any(|iv| iv.layers.contains(&nl));
        let mut logits = None;
        if wants_final && n_blocks == nl {
            // HF's last hidden state is after the final norm. Only the rows that are captured or
            // feed the logits are normalised.
            let all = req.capture_positions == Positions::All && req.capture_layers.contains(&nl);
            let mut hn = vec![0.0f32; t * d];
            for r in 0..t {
                let is_last = offsets[1..].contains(&(r + 1));
                if all
                    || is_last
                    || req
                        .interventions
                        .iter()
                        .any(|iv| iv.positions == Positions::All)
                {
                    rms_norm_row(
                        &h[r * d..(r + 1) * d],
                        &w.final_norm,
                        cfg.rms_norm_eps,
                        &mut hn[r * d..(r + 1) * d],
                    );
                }
            }
            hook(nl, &mut hn, &mut captured);
            if req.logits {
                let last = gather(&hn, d, &offsets, Positions::Last);
                let v = cfg.vocab_size;
                let mut lg = vec![0.0f32; n * v];
                linear(&last, n, d, w.head(), v, &mut lg, false);
                logits = Some(lg);
            }
        }
        Ok(Output { captured, logits })
    }

    fn intervene(&self, layer: usize, h: &mut [f32], offsets: &[usize], ivs: &[Intervention]) {
        let d = self.cfg.hidden_size;
        for iv in ivs.iter().filter(|iv| iv.layers.contains(&layer)) {
            let rows: Vec<usize> = match iv.positions {
                Positions::Last => offsets[1..].iter().map(|&o| o - 1).collect(),
                Positions::All => (0..*offsets.last().unwrap()).collect(),
            };
            for r in rows {
                let row = &mut h[r * d..(r + 1) * d];
                match &iv.op {
                    InterventionOp::Add { alpha, v } => axpy(*alpha, v, row),
                    InterventionOp::Project { alpha, v } => {
                        let nn = dot(v, v);
                        if nn > 0.0 {
                            let c = dot(row, v) / nn;
                            axpy(-alpha * c, v, row);
                        }
                    }
                }
            }
        }
    }
}

fn gather(h: &[f32], d: usize, offsets: &[usize], pos: Positions) -> Vec<f32> {
    match pos {
        Positions::All => h.to_vec(),
        Positions::Last => offsets[1..]
            .iter()
            .flat_map(|&o| h[(o - 1) * d..o * d].iter().copied())
            .collect(),
    }
}

fn split_rows<'b>(
    buf: &'b mut [f32],
    offsets: &[usize],
    width: usize,
) -> Vec<(usize, &'b mut [f32])> {
    let mut out = Vec::with_capacity(offsets.len() - 1);
    let mut rest = buf;
    for i in 0..offsets.len() - 1 {
        let (a, b) = rest.split_at_mut((offsets[i + 1] - offsets[i]) * width);
        out.push((i, a));
        rest = b;
    }
    out
}
