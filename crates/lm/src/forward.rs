//! The decoder forward pass over a packed batch, with capture and intervention hooks.
//!
//! Sequences are packed end to end (no padding): the projections and the MLP run as GEMMs over
//! all tokens of the batch, attention runs per sequence and head. A prompt's activations thus
//! do not depend on what else is in the batch beyond floating-point summation order. Positions
//! restart at 0 for each sequence (or continue from its KV cache).
//!
//! # Entry points
//!
//! Every one runs the same blocks (one private loop); they differ in what comes before the
//! new tokens (nothing, a shared [`Prefix`], or [`KvCache`]s), whether the caches are
//! extended, and whether a [`Hook`] sees the residual stream and chosen logits (the plain
//! ones run [`NoHook`], and skip the blocks deeper than the request needs).
//!
//! | entry point | before the new tokens | caches extended | hook | who calls it |
//! |---|---|---|---|---|
//! | [`Forward::run`] | nothing | – | no | act-dump with `--no-share-prefix`, token-prune's values (`hd_analysis::prune`), `examples/dump-layer` |
//! | [`Forward::run_hooked`] | nothing | – | yes | dir-interact's sweep without a prefill (`hd_analysis::intervene`: first token, answer likelihood) |
//! | [`Forward::prefix`] | makes a [`Prefix`] of shared tokens | – | no | act-dump (the whole prompt set's prefix), token-prune (the template's head) |
//! | [`Forward::prefix_hooked`] | makes a [`Prefix`] | – | yes | [`Model::generate`](crate::Model::generate) and its kin (generate, dir-interact, token-prune) |
//! | [`Forward::extend_prefix`] | a [`Prefix`], made longer | – | no | [`Forward::run_shared`] |
//! | [`Forward::run_prefixed`] | a [`Prefix`] every sequence starts with | no | no | [`Forward::run_shared`] |
//! | [`Forward::run_shared`] | a [`Prefix`] (extended by what the batch shares, when that pays) | no | no | act-dump (by default) |
//! | [`Forward::run_cached`] | one [`KvCache`] per sequence | yes | no | dir-interact's prefill (`intervene::Prefill`), token-prune's values after deletions |
//! | [`Forward::run_cached_hooked`] | one [`KvCache`] per sequence | yes | yes | generation's prefill and decoding steps (`Model::generate_from`) |
//! | [`Forward::run_after`] | one read-only [`KvCache`] per sequence, all of it | no | yes | dir-interact's sweep after a prefill (edits from the last prompt token on) |
//! | [`Forward::run_branches`] | read-only caches, each up to a chosen position (branches; several sequences may share one cache) | no | yes | token-prune's occlusion scores (leave-one-out variants) |
//!
//! [`Forward::truncate_cache`] cuts an owned cache back so it can continue another sequence
//! (token-prune). Several sequences are packed into one call in every case.

use crate::config::Act;
use crate::config::Config;
use crate::error::{LmError, Result};
use crate::kernels::{
    attend, axpy, dot, gelu_tanh_mul, rms_norm, rms_norm_row, rope_row, silu_mul, Scores, ATT_KB,
    ATT_QB,
};
use crate::matrix::{Compute, Matrix};
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
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct Intervention {
    /// Hidden-state indices to edit.
    pub layers: Vec<usize>,
    /// Positions edited.
    pub positions: Positions,
    /// The edit.
    pub op: InterventionOp,
}

/// What a forward call should return.
#[derive(Debug, Clone, PartialEq)]
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

/// Where a packed row of a forward call sits: its sequence (the index in the call's `seqs`,
/// or [`SHARED`] for a prefix every sequence continues) and its absolute position (cached
/// tokens included, so a generated token's position counts the prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowPos {
    /// Sequence index, or [`SHARED`].
    pub seq: usize,
    /// Position in the sequence, from 0.
    pub pos: usize,
}

/// [`RowPos::seq`] of a row of a shared prefix (it stands for every sequence).
pub const SHARED: usize = usize::MAX;

/// The open extension point of a forward pass, for what a [`Request`] does not say: edits
/// that depend on the sequence or the position (from the last prompt token on, through the
/// tokens generated after it), and logits at chosen rows (teacher-forced likelihoods).
/// Every method has a default that does nothing, so a hook implements only what it needs.
pub trait Hook {
    /// Sees, and may edit, the residual stream `h` (`[rows.len(), d]`) at hidden-state index
    /// `layer` in `0..=L`, after the request's interventions and before its captures. Index
    /// `L` here is the last block's output *before* the final norm (HF's `hidden_states[L]`
    /// is after it), passed only when every block runs.
    fn residual(&mut self, layer: usize, h: &mut [f32], rows: &[RowPos]) {
        let _ = (layer, h, rows);
    }
    /// Packed rows (indices into `rows`, ascending) whose next-token logits [`Hook::logits`]
    /// should get.
    fn logit_rows(&self, rows: &[RowPos]) -> Vec<usize> {
        let _ = rows;
        Vec::new()
    }
    /// Logits `[rows.len(), vocab]` of some of [`Hook::logit_rows`], in chunks, in order
    /// (after the request's interventions at index `L`).
    fn logits(&mut self, rows: &[RowPos], logits: &[f32]) {
        let _ = (rows, logits);
    }
}

/// A hook that does nothing (what the plain entry points use).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHook;

impl Hook for NoHook {}

/// Rows of hook logits computed at once: bounds the `[rows, vocab]` buffer (49k-token
/// vocabularies make it 12 MB per 64 rows).
const LOGIT_CHUNK: usize = 64;

/// Per-sequence key/value cache, per block in the layout `attend` reads, so a decoding step
/// attends straight from it: keys transposed per key/value head, `[kv_heads, head_dim, cap]`,
/// values `[kv_heads, cap, head_dim]`, with the capacity `cap` a multiple of `ATT_KB` (columns
/// at and beyond `len` are zero).
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

    /// Positions block `li`'s buffers hold room for (`kv_w` = kv_heads · head_dim).
    fn cap(&self, li: usize, kv_w: usize) -> usize {
        self.k[li].len() / kv_w
    }

    /// Block `li`, key/value head `g`: transposed keys `[hd, cap]`, values `[cap, hd]`, `cap`.
    fn head(&self, li: usize, g: usize, kv_w: usize, hd: usize) -> (&[f32], &[f32], usize) {
        let cap = self.cap(li, kv_w);
        let (k, v) = (&self.k[li], &self.v[li]);
        (
            &k[g * hd * cap..(g + 1) * hd * cap],
            &v[g * cap * hd..(g + 1) * cap * hd],
            cap,
        )
    }

    /// Writes the keys and values of `len` new rows (`[len, kv_w]` each, at `stride`) of
    /// block `li` at positions `np..np + len`, growing its buffers when they are full.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        li: usize,
        keys: &[f32],
        values: &[f32],
        stride: usize,
        np: usize,
        len: usize,
        nkv: usize,
        hd: usize,
    ) {
        let kv_w = nkv * hd;
        let cap = self.cap(li, kv_w);
        if np + len > cap {
            let new_cap = (np + len).max(2 * cap).max(ATT_KB).div_ceil(ATT_KB) * ATT_KB;
            let mut k = vec![0.0f32; kv_w * new_cap];
            let mut v = vec![0.0f32; kv_w * new_cap];
            for g in 0..nkv {
                for dd in 0..hd {
                    let (from, to) = ((g * hd + dd) * cap, (g * hd + dd) * new_cap);
                    k[to..to + np].copy_from_slice(&self.k[li][from..from + np]);
                }
                v[g * new_cap * hd..][..np * hd]
                    .copy_from_slice(&self.v[li][g * cap * hd..][..np * hd]);
            }
            self.k[li] = k;
            self.v[li] = v;
        }
        let cap = self.cap(li, kv_w);
        let (kb, vb) = (&mut self.k[li], &mut self.v[li]);
        for j in 0..len {
            let (kr, vr) = (&keys[j * stride..][..kv_w], &values[j * stride..][..kv_w]);
            let p = np + j;
            for g in 0..nkv {
                for dd in 0..hd {
                    kb[(g * hd + dd) * cap + p] = kr[g * hd + dd];
                }
                vb[(g * cap + p) * hd..][..hd].copy_from_slice(&vr[g * hd..][..hd]);
            }
        }
    }
}

/// Where each sequence's earlier keys and values come from.
enum Past<'c> {
    /// Nothing before the new tokens.
    Empty,
    /// One cache per sequence, extended with the new tokens.
    Own(&'c mut [KvCache]),
    /// One read-only cache every sequence continues (a shared prefix).
    Shared(&'c KvCache),
    /// Per sequence, a read-only cache and how many of its first positions the sequence
    /// continues (not extended).
    Borrowed(&'c [(&'c KvCache, usize)]),
}

impl Past<'_> {
    /// Gives empty owned caches their `n_blocks` blocks.
    fn make_room(&mut self, n_blocks: usize) {
        if let Past::Own(c) = self {
            for c in c.iter_mut().filter(|c| c.k.is_empty()) {
                c.k = vec![Vec::new(); n_blocks];
                c.v = vec![Vec::new(); n_blocks];
            }
        }
    }

    fn len(&self, i: usize) -> usize {
        match self {
            Past::Empty => 0,
            Past::Own(c) => c[i].len,
            Past::Shared(c) => c.len,
            Past::Borrowed(c) => c[i].1,
        }
    }
    fn cache(&self, i: usize) -> Option<&KvCache> {
        match self {
            Past::Empty => None,
            Past::Own(c) => Some(&c[i]),
            Past::Shared(c) => Some(c),
            Past::Borrowed(c) => Some(c[i].0),
        }
    }
}

/// Where each sequence starts in the packed rows, and the total (`seqs.len() + 1` values).
fn row_offsets(seqs: &[&[u32]]) -> Vec<usize> {
    let mut offsets = Vec::with_capacity(seqs.len() + 1);
    offsets.push(0usize);
    for s in seqs {
        offsets.push(offsets[offsets.len() - 1] + s.len());
    }
    offsets
}

/// A token prefix that several sequences share, run once: its keys and values for the blocks
/// a request needs and, when that request captures every position, its captured states.
/// Continuing it gives the same states as running each full sequence, up to floating-point
/// summation order, since attention is causal.
#[derive(Debug, Clone)]
pub struct Prefix {
    tokens: Vec<u32>,
    cache: KvCache,
    /// `(layer, [len, d])` when the request captures all positions, else empty.
    states: Vec<(usize, Vec<f32>)>,
    /// The part of the request that shaped the prefix (see `prefix_request`).
    req: Request,
    blocks: usize,
    /// Hidden size, key/value width and block count of the model that ran it.
    dims: (usize, usize, usize),
}

impl Prefix {
    /// The shared tokens.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    /// Number of shared tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    /// Whether it holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
    /// Its keys and values, to seed per-sequence caches (generation) when computed with
    /// `all_blocks`.
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }
}

/// What of `req` applies to the prefix rows: every-position captures and interventions.
/// Last-position hooks never touch a prefix, whose last token is not any sequence's last.
fn prefix_request(req: &Request) -> Request {
    Request {
        capture_layers: if req.capture_positions == Positions::All {
            req.capture_layers.clone()
        } else {
            vec![]
        },
        capture_positions: Positions::All,
        interventions: req
            .interventions
            .iter()
            .filter(|iv| iv.positions == Positions::All)
            .cloned()
            .collect(),
        logits: false,
    }
}

/// Length of the prefix common to all `seqs`, leaving each at least one token of its own.
pub fn common_prefix_len(seqs: &[&[u32]]) -> usize {
    let Some(first) = seqs.first() else {
        return 0;
    };
    let mut n = seqs
        .iter()
        .map(|s| s.len())
        .min()
        .unwrap_or(0)
        .saturating_sub(1);
    for s in &seqs[1..] {
        n = first[..n]
            .iter()
            .zip(*s)
            .take_while(|(a, b)| a == b)
            .count();
    }
    n
}

/// The prefix of `seqs` worth running once for all of them (empty when none pays).
pub fn shared_prefix<'s>(seqs: &[&'s [u32]]) -> &'s [u32] {
    let n = common_prefix_len(seqs);
    if worth_sharing(seqs.len(), n) {
        &seqs[0][..n]
    } else {
        &[]
    }
}

/// Whether running `ext` shared tokens once pays for itself: it saves `(n − 1)·ext` token
/// rows, and costs a separate small forward pass that streams every weight once (a GEMM on
/// few rows runs far below peak), worth roughly 64 rows of a batched pass.
pub fn worth_sharing(n_seqs: usize, ext: usize) -> bool {
    n_seqs.saturating_sub(1) * ext >= 64
}

/// The forward pass over weights and config.
pub struct Forward<'a> {
    /// Hyper-parameters.
    pub cfg: &'a Config,
    /// Weights.
    pub w: &'a Weights,
    /// How products with stored (quantised) weights are computed.
    pub compute: Compute,
}

impl<'a> Forward<'a> {
    /// The exact forward pass over `w`.
    pub fn new(cfg: &'a Config, w: &'a Weights) -> Self {
        Forward {
            cfg,
            w,
            compute: Compute::Exact,
        }
    }
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
            if let Some(lr) = &cfg.features.longrope {
                if s.len() + past > lr.original_max_position_embeddings {
                    return Err(LmError::Input(format!(
                        "sequence {i} has {} tokens, beyond the {} that longrope's short factors \
                         serve (its long factors are not implemented)",
                        s.len() + past,
                        lr.original_max_position_embeddings
                    )));
                }
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

    fn dims(&self) -> (usize, usize, usize) {
        let c = self.cfg;
        (c.hidden_size, c.num_kv_heads * c.head_dim, c.num_layers)
    }

    fn check_prefix_model(&self, p: &Prefix) -> Result<()> {
        if p.dims == self.dims() {
            Ok(())
        } else {
            Err(LmError::Input(
                "the shared prefix was computed by a model of another shape".into(),
            ))
        }
    }

    /// Blocks a request needs: up to the deepest captured or edited layer, all of them for
    /// logits.
    fn blocks_needed(&self, req: &Request) -> usize {
        let nl = self.cfg.num_layers;
        if req.logits {
            return nl;
        }
        req.capture_layers
            .iter()
            .chain(req.interventions.iter().flat_map(|i| &i.layers))
            .copied()
            .max()
            .unwrap_or(0)
            .min(nl)
    }

    /// Runs the model on `seqs` (no cache).
    pub fn run(&self, seqs: &[&[u32]], req: &Request) -> Result<Output> {
        let blocks = self.blocks_needed(req);
        self.run_inner(seqs, Past::Empty, req, blocks, &mut NoHook, false)
    }

    /// `run` with a [`Hook`]: every block runs (the hook may read any layer or want logits).
    pub fn run_hooked(
        &self,
        seqs: &[&[u32]],
        req: &Request,
        hook: &mut dyn Hook,
    ) -> Result<Output> {
        self.run_inner(seqs, Past::Empty, req, self.cfg.num_layers, hook, false)
    }

    /// Runs new tokens `seqs[i]` after read-only caches `past[i]` (which are not extended):
    /// the same states as running the full sequences, for edits that touch only the new
    /// tokens (the last prompt token, say) tried many times over one cached prefill.
    pub fn run_after(
        &self,
        seqs: &[&[u32]],
        past: &[KvCache],
        req: &Request,
        hook: &mut dyn Hook,
    ) -> Result<Output> {
        let branches: Vec<(&KvCache, usize)> = past.iter().map(|c| (c, c.len)).collect();
        self.run_branches(seqs, &branches, req, hook)
    }

    /// Runs new tokens `seqs[i]` after the first `past[i].1` positions of read-only cache
    /// `past[i].0`: sequences that branch off cached ones anywhere (leave-one-out variants
    /// continue their prompt's cache up to the deleted token), several per cache, nothing
    /// copied but the positions each one reads.
    pub fn run_branches(
        &self,
        seqs: &[&[u32]],
        past: &[(&KvCache, usize)],
        req: &Request,
        hook: &mut dyn Hook,
    ) -> Result<Output> {
        if past.len() != seqs.len() {
            return Err(LmError::Input(format!(
                "{} caches for {} sequences",
                past.len(),
                seqs.len()
            )));
        }
        for (i, &(c, len)) in past.iter().enumerate() {
            if len > c.len {
                return Err(LmError::Input(format!(
                    "sequence {i} continues {len} cached positions of {}",
                    c.len
                )));
            }
            if len > 0 && c.k.len() < self.cfg.num_layers {
                return Err(LmError::Input(
                    "a cache holds fewer blocks than the model has".into(),
                ));
            }
        }
        self.run_inner(
            seqs,
            Past::Borrowed(past),
            req,
            self.cfg.num_layers,
            hook,
            false,
        )
    }

    /// Forgets the cached positions from `len` on, so `c` can continue another sequence that
    /// shares only its first `len` tokens (the dropped columns are zeroed, as the layout
    /// requires).
    pub fn truncate_cache(&self, c: &mut KvCache, len: usize) {
        if len >= c.len {
            return;
        }
        let (nkv, hd) = (self.cfg.num_kv_heads, self.cfg.head_dim);
        let kv_w = nkv * hd;
        for li in 0..c.k.len() {
            let cap = c.cap(li, kv_w);
            for g in 0..nkv {
                for dd in 0..hd {
                    let base = (g * hd + dd) * cap;
                    c.k[li][base + len..base + c.len].fill(0.0);
                }
                let vb = g * cap * hd;
                c.v[li][vb + len * hd..vb + c.len * hd].fill(0.0);
            }
        }
        c.len = len;
    }

    /// Runs `tokens` once as the shared prefix of sequences that will be run with `req`.
    /// `all_blocks` keeps keys and values for every block (for generation), not only the
    /// blocks `req` needs.
    pub fn prefix(&self, tokens: &[u32], req: &Request, all_blocks: bool) -> Result<Prefix> {
        let empty = Prefix {
            tokens: vec![],
            cache: KvCache::default(),
            states: vec![],
            req: prefix_request(req),
            blocks: if all_blocks {
                self.cfg.num_layers
            } else {
                self.blocks_needed(req)
            },
            dims: self.dims(),
        };
        self.extend_prefix(&empty, tokens)
    }

    /// `p` followed by `more`, computed on top of `p`'s cache.
    pub fn extend_prefix(&self, p: &Prefix, more: &[u32]) -> Result<Prefix> {
        self.extend_prefix_hooked(p, more, &mut NoHook)
    }

    /// [`Forward::prefix`] with a [`Hook`], whose rows carry the sequence [`SHARED`].
    pub fn prefix_hooked(
        &self,
        tokens: &[u32],
        req: &Request,
        all_blocks: bool,
        hook: &mut dyn Hook,
    ) -> Result<Prefix> {
        let empty = self.prefix(&[], req, all_blocks)?;
        self.extend_prefix_hooked(&empty, tokens, hook)
    }

    fn extend_prefix_hooked(
        &self,
        p: &Prefix,
        more: &[u32],
        hook: &mut dyn Hook,
    ) -> Result<Prefix> {
        self.check_prefix_model(p)?;
        let mut out = p.clone();
        if more.is_empty() {
            return Ok(out);
        }
        let o = self.run_inner(
            &[more],
            Past::Own(std::slice::from_mut(&mut out.cache)),
            &p.req,
            p.blocks,
            hook,
            true,
        )?;
        if out.states.is_empty() {
            out.states = o.captured;
        } else {
            for ((_, a), (_, b)) in out.states.iter_mut().zip(o.captured) {
                a.extend_from_slice(&b);
            }
        }
        out.tokens.extend_from_slice(more);
        Ok(out)
    }

    /// Runs `seqs`, each of which starts with `p`'s tokens, reusing `p` instead of recomputing
    /// the shared rows. The output is laid out as `run` lays it out.
    pub fn run_prefixed(&self, p: &Prefix, seqs: &[&[u32]], req: &Request) -> Result<Output> {
        if p.is_empty() {
            return self.run(seqs, req);
        }
        self.check_prefix_model(p)?;
        if prefix_request(req) != p.req || self.blocks_needed(req) > p.blocks {
            return Err(LmError::Input(
                "the shared prefix was computed for a different request".into(),
            ));
        }
        let k = p.len();
        for (i, s) in seqs.iter().enumerate() {
            if s.len() <= k || s[..k] != p.tokens[..] {
                return Err(LmError::Input(format!(
                    "sequence {i} does not extend the shared prefix of {k} tokens"
                )));
            }
        }
        let rest: Vec<&[u32]> = seqs.iter().map(|s| &s[k..]).collect();
        let mut out = self.run_inner(
            &rest,
            Past::Shared(&p.cache),
            req,
            self.blocks_needed(req),
            &mut NoHook,
            false,
        )?;
        if req.capture_positions == Positions::All {
            let d = self.cfg.hidden_size;
            for ((l, buf), (pl, pre)) in out.captured.iter_mut().zip(&p.states) {
                debug_assert_eq!(l, pl);
                let mut full = Vec::with_capacity(buf.len() + seqs.len() * pre.len());
                let mut at = 0;
                for r in &rest {
                    full.extend_from_slice(pre);
                    full.extend_from_slice(&buf[at..at + r.len() * d]);
                    at += r.len() * d;
                }
                *buf = full;
            }
        }
        Ok(out)
    }

    /// Runs one batch, sharing what its sequences have in common: `base` (typically the prefix
    /// of the whole prompt set, computed once) extended by whatever longer prefix this batch
    /// shares, when that pays. Deterministic in (`base`, `seqs`).
    pub fn run_shared(
        &self,
        base: Option<&Prefix>,
        seqs: &[&[u32]],
        req: &Request,
    ) -> Result<Output> {
        let lcp = common_prefix_len(seqs);
        let base =
            base.filter(|b| !b.is_empty() && b.len() <= lcp && seqs[0][..b.len()] == b.tokens[..]);
        let have = base.map_or(0, Prefix::len);
        if worth_sharing(seqs.len(), lcp - have) {
            let p = match base {
                Some(b) => self.extend_prefix(b, &seqs[0][have..lcp])?,
                None => self.prefix(&seqs[0][..lcp], req, false)?,
            };
            return self.run_prefixed(&p, seqs, req);
        }
        match base {
            Some(b) => self.run_prefixed(b, seqs, req),
            None => self.run(seqs, req),
        }
    }

    /// Runs the model on new tokens `seqs[i]` continuing `caches[i]`, and appends to the caches.
    pub fn run_cached(
        &self,
        seqs: &[&[u32]],
        caches: &mut [KvCache],
        req: &Request,
    ) -> Result<Output> {
        self.run_cached_hooked(seqs, caches, req, &mut NoHook)
    }

    /// [`Forward::run_cached`] with a [`Hook`].
    pub fn run_cached_hooked(
        &self,
        seqs: &[&[u32]],
        caches: &mut [KvCache],
        req: &Request,
        hook: &mut dyn Hook,
    ) -> Result<Output> {
        if caches.len() != seqs.len() {
            return Err(LmError::Input(format!(
                "{} caches for {} sequences",
                caches.len(),
                seqs.len()
            )));
        }
        for c in caches.iter() {
            if !c.is_empty() && c.k.len() < self.cfg.num_layers {
                return Err(LmError::Input(
                    "a cache holds fewer blocks than the model has".into(),
                ));
            }
        }
        self.run_inner(
            seqs,
            Past::Own(caches),
            req,
            self.cfg.num_layers,
            hook,
            false,
        )
    }

    /// Runs `n_blocks` blocks (fewer than the model has only when nothing deeper is needed).
    /// `shared`: the rows are a prefix every sequence continues (the hook sees [`SHARED`]).
    fn run_inner(
        &self,
        seqs: &[&[u32]],
        mut past_kv: Past<'_>,
        req: &Request,
        n_blocks: usize,
        user: &mut dyn Hook,
        shared: bool,
    ) -> Result<Output> {
        let past: Vec<usize> = (0..seqs.len()).map(|i| past_kv.len(i)).collect();
        self.check(seqs, req, past.iter().copied().max().unwrap_or(0))?;
        let (d, nl) = (self.cfg.hidden_size, self.cfg.num_layers);
        let rows = Packed::new(self.cfg, seqs, past, shared);
        let offsets = &rows.offsets;
        past_kv.make_room(n_blocks);

        let mut h = self.embed_rows(seqs, offsets);
        let mut captured: Vec<(usize, Vec<f32>)> = req
            .capture_layers
            .iter()
            .map(|&l| (l, Vec::new()))
            .collect();
        let hook = |layer: usize,
                    h: &mut [f32],
                    captured: &mut Vec<(usize, Vec<f32>)>,
                    user: &mut dyn Hook| {
            self.intervene(layer, h, offsets, &req.interventions);
            if layer < nl {
                user.residual(layer, h, &rows.rowpos);
            }
            for (l, buf) in captured.iter_mut() {
                if *l == layer {
                    *buf = gather(h, d, offsets, req.capture_positions);
                }
            }
        };
        hook(0, &mut h, &mut captured, user);

        let mut scratch = Scratch::new(self.cfg, rows.rowpos.len());
        for li in 0..n_blocks {
            self.block(li, &rows, &mut past_kv, &mut h, &mut scratch);
            if li + 1 < nl {
                hook(li + 1, &mut h, &mut captured, user);
            } else {
                // The last block's output before the final norm, where the reference's block
                // hooks edit it: only the user hook sees it (the request's index-L edits and
                // captures are after the norm, as HF numbers it).
                user.residual(nl, &mut h, &rows.rowpos);
            }
        }
        if let Past::Own(c) = past_kv {
            for (i, cache) in c.iter_mut().enumerate() {
                cache.len += seqs[i].len();
            }
        }
        let logits = self.finish(
            &h,
            offsets,
            req,
            n_blocks,
            &rows.rowpos,
            user,
            &mut |hn: &mut [f32], user: &mut dyn Hook| hook(nl, hn, &mut captured, user),
        )?;
        Ok(Output { captured, logits })
    }

    /// Decoder block `li` on the packed residual stream `h` (`[t, d]`), in place: the
    /// attention branch, then the MLP branch, each added to `h`. The family switches live
    /// here and in what it calls: q|k|v bias and q/k norms (`norm_bias_rope`), local RoPE and
    /// sliding windows on sliding layers, attention soft-capping (`QueryBlock`), the
    /// activation, and Gemma's sandwich norms (`add_branch`).
    fn block(
        &self,
        li: usize,
        rows: &Packed<'_>,
        past_kv: &mut Past<'_>,
        h: &mut [f32],
        s: &mut Scratch,
    ) {
        let (cfg, lw, mode) = (self.cfg, &self.w.layers[li], self.compute);
        let (t, eps, ff) = (rows.rowpos.len(), cfg.rms_norm_eps, cfg.intermediate_size);
        rms_norm(h, &lw.attn_norm, eps, &mut s.x);
        lw.wqkv.linear(&s.x, t, &mut s.qkv, false, mode);
        let (cos, sin) = rows.rope(cfg, li);
        self.norm_bias_rope(lw, &mut s.qkv, &rows.rowpos, cos, sin);
        self.attention_block(
            li,
            rows.seqs,
            &rows.offsets,
            &rows.past,
            past_kv,
            &s.qkv,
            &mut s.att,
        );
        let post_attn = lw.extra.post_attn_norm.as_deref();
        self.add_branch(&lw.wo, &s.att, post_attn, h, &mut s.x, &mut s.normed);
        rms_norm(h, &lw.mlp_norm, eps, &mut s.x);
        lw.w_gate_up.linear(&s.x, t, &mut s.gu, false, mode);
        match cfg.features.act {
            Act::Silu => silu_mul(&s.gu, ff, &mut s.act),
            Act::GeluTanh => gelu_tanh_mul(&s.gu, ff, &mut s.act),
        }
        let post_mlp = lw.extra.post_mlp_norm.as_deref();
        self.add_branch(&lw.w_down, &s.act, post_mlp, h, &mut s.x, &mut s.normed);
    }

    /// Adds a branch's output `m · input` to the residual stream `h`: straight into it, or,
    /// with Gemma's post-norm gain `post_norm`, through `x` and its norm `normed`.
    fn add_branch(
        &self,
        m: &Matrix,
        input: &[f32],
        post_norm: Option<&[f32]>,
        h: &mut [f32],
        x: &mut [f32],
        normed: &mut [f32],
    ) {
        let t = h.len() / self.cfg.hidden_size;
        match post_norm {
            None => m.linear(input, t, h, true, self.compute),
            Some(g) => {
                m.linear(input, t, x, false, self.compute);
                rms_norm(x, g, self.cfg.rms_norm_eps, normed);
                axpy(1.0, normed, h);
            }
        }
    }

    /// Adds the qkv bias (Qwen2), normalises each q and k head (Qwen3, Gemma 3) and rotates
    /// them to the row's position.
    fn norm_bias_rope(
        &self,
        lw: &crate::weights::LayerWeights,
        qkv: &mut [f32],
        rowpos: &[RowPos],
        cos: &[f32],
        sin: &[f32],
    ) {
        let cfg = self.cfg;
        let (hd, heads) = (cfg.head_dim, cfg.num_heads + cfg.num_kv_heads);
        let half = hd / 2;
        let bias = lw.bqkv.as_deref();
        let qk_norm = lw.extra.q_norm.as_deref().zip(lw.extra.k_norm.as_deref());
        let eps = cfg.rms_norm_eps;
        qkv.par_chunks_mut(cfg.qkv_width())
            .zip(rowpos)
            .for_each(|(row, rp)| {
                if let Some(b) = bias {
                    for (o, &bb) in row.iter_mut().zip(b) {
                        *o += bb;
                    }
                }
                if let Some((qn, kn)) = qk_norm {
                    let mut head = vec![0.0f32; hd];
                    for (i, x) in row[..heads * hd].chunks_mut(hd).enumerate() {
                        head.copy_from_slice(x);
                        rms_norm_row(&head, if i < cfg.num_heads { qn } else { kn }, eps, x);
                    }
                }
                let p = rp.pos;
                let (c, s) = (
                    &cos[p * half..(p + 1) * half],
                    &sin[p * half..(p + 1) * half],
                );
                rope_row(&mut row[..heads * hd], heads, hd, c, s);
            });
    }

    /// Attention of block `li` for every sequence into `att`. An owned cache first takes the
    /// new keys and values and is attended in place; otherwise the earlier keys and values
    /// (from a read-only cache) and the new ones are gathered into blocks for the kernel.
    #[allow(clippy::too_many_arguments)]
    fn attention_block(
        &self,
        li: usize,
        seqs: &[&[u32]],
        offsets: &[usize],
        past: &[usize],
        past_kv: &mut Past<'_>,
        qkv: &[f32],
        att: &mut [f32],
    ) {
        let cfg = self.cfg;
        let (hd, nh, nkv) = (cfg.head_dim, cfg.num_heads, cfg.num_kv_heads);
        let (qkv_w, kv_w) = (cfg.qkv_width(), nkv * hd);
        let (koff, voff) = (nh * hd, nh * hd + kv_w);
        let rows_of = |i: usize| &qkv[offsets[i] * qkv_w..offsets[i + 1] * qkv_w];
        let seq_out: Vec<(usize, &mut [f32])> = split_rows(att, offsets, nh * hd);
        if let Past::Own(caches) = past_kv {
            seq_out
                .into_par_iter()
                .zip(caches.par_iter_mut())
                .for_each(|((i, out), cache)| {
                    let (rows, len, np) = (rows_of(i), seqs[i].len(), past[i]);
                    cache.append(li, &rows[koff..], &rows[voff..], qkv_w, np, len, nkv, hd);
                    let mut q = QueryBlock::new(self.cfg, li, len, np);
                    for g in 0..nkv {
                        let (kt, vb, cap) = cache.head(li, g, kv_w, hd);
                        q.attend(rows, g, kt, cap, vb, out);
                    }
                });
            return;
        }
        let past_ref = &*past_kv;
        seq_out.into_par_iter().for_each(|(i, out)| {
            let (rows, len, np) = (rows_of(i), seqs[i].len(), past[i]);
            let src = match past_ref.cache(i) {
                Some(c) if np > 0 => Some(c),
                _ => None,
            };
            let nk = np + len;
            let nkp = nk.div_ceil(ATT_KB) * ATT_KB;
            let mut kt = vec![0.0f32; hd * nkp];
            let mut vb = vec![0.0f32; nk * hd];
            let mut q = QueryBlock::new(self.cfg, li, len, np);
            for g in 0..nkv {
                if let Some(c) = src {
                    let (ckt, cv, cap) = c.head(li, g, kv_w, hd);
                    for dd in 0..hd {
                        kt[dd * nkp..dd * nkp + np].copy_from_slice(&ckt[dd * cap..dd * cap + np]);
                    }
                    vb[..np * hd].copy_from_slice(&cv[..np * hd]);
                }
                for j in 0..len {
                    let r = &rows[j * qkv_w..];
                    let (k, v) = (&r[koff + g * hd..][..hd], &r[voff + g * hd..][..hd]);
                    for (dd, &x) in k.iter().enumerate() {
                        kt[dd * nkp + np + j] = x;
                    }
                    vb[(np + j) * hd..(np + j + 1) * hd].copy_from_slice(v);
                }
                q.attend(rows, g, &kt, nkp, &vb, out);
            }
        });
    }

    /// The rows of `seqs` packed at `offsets`, as token embeddings `[t, d]`.
    fn embed_rows(&self, seqs: &[&[u32]], offsets: &[usize]) -> Vec<f32> {
        let d = self.cfg.hidden_size;
        let mut h = vec![0.0f32; offsets[seqs.len()] * d];
        for (i, s) in seqs.iter().enumerate() {
            for (j, &tok) in s.iter().enumerate() {
                let r = offsets[i] + j;
                self.w
                    .embed
                    .row_into(tok as usize, &mut h[r * d..(r + 1) * d]);
            }
        }
        if let Some(scale) = self.cfg.features.embed_scale {
            h.iter_mut().for_each(|x| *x *= scale);
        }
        h
    }

    /// After the last block: the final norm of the rows that are captured or feed logits
    /// (passed to `last_hook`, which applies the request's index-`L` edits and captures), the
    /// hook's logits in chunks, and the request's last-position logits.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        h: &[f32],
        offsets: &[usize],
        req: &Request,
        n_blocks: usize,
        rowpos: &[RowPos],
        user: &mut dyn Hook,
        last_hook: &mut dyn FnMut(&mut [f32], &mut dyn Hook),
    ) -> Result<Option<Vec<f32>>> {
        let cfg = self.cfg;
        let w = self.w;
        let (d, nl) = (cfg.hidden_size, cfg.num_layers);
        let n = offsets.len() - 1;
        let t = offsets[n];
        let hook_rows = user.logit_rows(rowpos);
        if let Some(&r) = hook_rows.iter().find(|&&r| r >= t) {
            return Err(LmError::Input(format!(
                "hook asked for logits at row {r} of {t}"
            )));
        }
        let mut wanted = vec![false; t];
        for &r in &hook_rows {
            wanted[r] = true;
        }
        let wants_final = req.logits
            || !hook_rows.is_empty()
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
                    || wanted[r]
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
            last_hook(&mut hn, user);
            let v = cfg.vocab_size;
            for chunk in hook_rows.chunks(LOGIT_CHUNK) {
                let rows: Vec<f32> = chunk
                    .iter()
                    .flat_map(|&r| hn[r * d..(r + 1) * d].iter().copied())
                    .collect();
                let mut lg = vec![0.0f32; chunk.len() * v];
                w.head()
                    .linear(&rows, chunk.len(), &mut lg, false, self.compute);
                self.softcap_logits(&mut lg);
                let pos: Vec<RowPos> = chunk.iter().map(|&r| rowpos[r]).collect();
                user.logits(&pos, &lg);
            }
            if req.logits {
                let last = gather(&hn, d, offsets, Positions::Last);
                let mut lg = vec![0.0f32; n * v];
                w.head().linear(&last, n, &mut lg, false, self.compute);
                self.softcap_logits(&mut lg);
                logits = Some(lg);
            }
        }
        Ok(logits)
    }

    /// Gemma 2's final soft-capping, `cap·tanh(z/cap)`.
    fn softcap_logits(&self, lg: &mut [f32]) {
        if let Some(cap) = self.cfg.features.final_softcap {
            lg.iter_mut().for_each(|z| *z = cap * (*z / cap).tanh());
        }
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

/// The rows of one forward call, packed sequence after sequence, and where each sits; what
/// every block reads besides the residual stream.
struct Packed<'s> {
    seqs: &'s [&'s [u32]],
    /// Where each sequence starts, and the total (see [`row_offsets`]).
    offsets: Vec<usize>,
    /// Positions before each sequence's new tokens (its cached ones).
    past: Vec<usize>,
    /// Each row's sequence ([`SHARED`] for a prefix's) and position.
    rowpos: Vec<RowPos>,
    /// RoPE `cos` and `sin` for every position used (see [`rope_tables`]), and those of the
    /// sliding layers when their frequencies differ.
    rope_global: (Vec<f32>, Vec<f32>),
    rope_local: Option<(Vec<f32>, Vec<f32>)>,
}

impl<'s> Packed<'s> {
    fn new(cfg: &Config, seqs: &'s [&'s [u32]], past: Vec<usize>, shared: bool) -> Self {
        let n = seqs.len();
        let max_pos = (0..n).map(|i| past[i] + seqs[i].len()).max().unwrap_or(0);
        let rowpos = (0..n)
            .flat_map(|i| {
                let (seq, p0) = (if shared { SHARED } else { i }, past[i]);
                (0..seqs[i].len()).map(move |j| RowPos { seq, pos: p0 + j })
            })
            .collect();
        Packed {
            seqs,
            offsets: row_offsets(seqs),
            past,
            rowpos,
            rope_global: rope_tables(cfg, max_pos, false),
            rope_local: cfg.local_rope().then(|| rope_tables(cfg, max_pos, true)),
        }
    }

    /// The RoPE `cos` and `sin` tables block `li` rotates with.
    fn rope(&self, cfg: &Config, li: usize) -> (&[f32], &[f32]) {
        match &self.rope_local {
            Some(l) if cfg.features.is_sliding(li) => (&l.0[..], &l.1[..]),
            _ => (&self.rope_global.0[..], &self.rope_global.1[..]),
        }
    }
}

/// What a block writes between its reads of the residual stream, for `t` rows; allocated
/// once per call and reused by every block.
struct Scratch {
    /// A normed residual stream `[t, d]` (the input of a branch), or a branch's output.
    x: Vec<f32>,
    qkv: Vec<f32>,
    /// Attention output `[t, heads·head_dim]`.
    att: Vec<f32>,
    /// gate|up `[t, 2·ff]`.
    gu: Vec<f32>,
    /// The activated product `[t, ff]`.
    act: Vec<f32>,
    /// Gemma's post-norms: a branch's output normalised before its residual add (empty
    /// for the other families).
    normed: Vec<f32>,
}

impl Scratch {
    fn new(cfg: &Config, t: usize) -> Self {
        let (d, ff) = (cfg.hidden_size, cfg.intermediate_size);
        Scratch {
            x: vec![0.0f32; t * d],
            qkv: vec![0.0f32; t * cfg.qkv_width()],
            att: vec![0.0f32; t * cfg.num_heads * cfg.head_dim],
            gu: vec![0.0f32; t * 2 * ff],
            act: vec![0.0f32; t * ff],
            normed: if cfg.features.sandwich_norms {
                vec![0.0f32; t * d]
            } else {
                Vec::new()
            },
        }
    }
}

/// One sequence's query vectors of one key/value head's group, in the block `attend` takes,
/// with its causal limits and output scratch (reused across the groups).
struct QueryBlock {
    qb: Vec<f32>,
    ob: Vec<f32>,
    limits: Vec<usize>,
    len: usize,
    gs: usize,
    hd: usize,
    nh: usize,
    qkv_w: usize,
    scores: Scores,
}

impl QueryBlock {
    fn new(cfg: &Config, li: usize, len: usize, np: usize) -> Self {
        let (hd, nh) = (cfg.head_dim, cfg.num_heads);
        let gs = nh / cfg.num_kv_heads;
        let nq = len * gs;
        QueryBlock {
            qb: vec![0.0f32; nq.div_ceil(ATT_QB) * ATT_QB * hd],
            ob: vec![0.0f32; nq * hd],
            limits: (0..nq).map(|r| np + r / gs + 1).collect(),
            len,
            gs,
            hd,
            nh,
            qkv_w: cfg.qkv_width(),
            scores: Scores {
                scale: cfg.attn_scale(),
                window: cfg.features.window(li),
                softcap: cfg.features.attn_softcap,
            },
        }
    }

    /// Attention of group `g`'s query heads (from the sequence's qkv `rows`) over keys `kt`
    /// (`[hd, nkp]` transposed) and values `vb` into the sequence's output rows `out`.
    fn attend(
        &mut self,
        rows: &[f32],
        g: usize,
        kt: &[f32],
        nkp: usize,
        vb: &[f32],
        out: &mut [f32],
    ) {
        // the group's query heads are adjacent in a qkv row and in an output row
        let gw = self.gs * self.hd;
        for j in 0..self.len {
            self.qb[j * gw..(j + 1) * gw].copy_from_slice(&rows[j * self.qkv_w + g * gw..][..gw]);
        }
        attend(
            self.hd,
            &self.qb,
            &self.limits,
            kt,
            nkp,
            vb,
            self.scores,
            &mut self.ob,
        );
        for j in 0..self.len {
            out[j * self.nh * self.hd + g * gw..][..gw]
                .copy_from_slice(&self.ob[j * gw..(j + 1) * gw]);
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

/// `cos` and `sin` of every position below `max_pos` for the model's RoPE frequencies (of its
/// sliding layers when `local`), `[max_pos, head_dim/2]` each.
fn rope_tables(cfg: &Config, max_pos: usize, local: bool) -> (Vec<f32>, Vec<f32>) {
    let inv_freq: Vec<f32> = cfg
        .inv_freq_of(local)
        .into_iter()
        .map(|f| f as f32)
        .collect();
    let half = cfg.head_dim / 2;
    let mut cos = vec![0.0f32; max_pos * half];
    let mut sin = vec![0.0f32; max_pos * half];
    for p in 0..max_pos {
        for i in 0..half {
            let a = (p as f32 * inv_freq[i]) as f64;
            cos[p * half + i] = a.cos() as f32;
            sin[p * half + i] = a.sin() as f32;
        }
    }
    if let Some(lr) = &cfg.features.longrope {
        // transformers scales cos and sin by longrope's attention factor
        let f = lr.attention_factor as f32;
        cos.iter_mut().chain(sin.iter_mut()).for_each(|x| *x *= f);
    }
    (cos, sin)
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
