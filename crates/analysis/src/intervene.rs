//! Interventions on the residual stream and what they do: the first-token refusal score,
//! greedy answers, the projection on a read-out direction, and the teacher-forced perplexity
//! of given answers (the paper's `intervention.py` and `perplexity_evaluation.py`).
//!
//! An [`Edit`] changes `h` at chosen hidden-state indices, from a start position on: every
//! position, or the last prompt token and every token after it (the reference hooks the last
//! token of each forward call, which under generation is each new token). The same rule
//! applies in a teacher-forced pass over prompt + answer, so perplexity sees the model that
//! generated.

use crate::error::{AnalysisError, Result};
use hd_lm::{Hook, KvCache, Model, Positions, Request, RowPos, SHARED};

/// The named sets of hidden-state indices an edit may hook (`--at`), for a model of `L`
/// blocks. The final norm's output is in none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookSet {
    /// 1..L−1: the block outputs that feed another block (this tool's first definition).
    Inner,
    /// 1..L: every block's output, the last one before the final norm included (the paper's
    /// code hooks every decoder layer's output).
    Blocks,
    /// 0..L: the embeddings and every block's output (Arditi et al.'s directional ablation).
    All,
}

impl HookSet {
    /// Every set with its names (`all-layers` is the old name of `inner`).
    pub const NAMES: [(&'static str, HookSet); 4] = [
        ("inner", HookSet::Inner),
        ("all-layers", HookSet::Inner),
        ("blocks", HookSet::Blocks),
        ("all", HookSet::All),
    ];

    /// The set a name stands for.
    pub fn parse(s: &str) -> Option<HookSet> {
        HookSet::NAMES.iter().find(|(n, _)| *n == s).map(|p| p.1)
    }

    /// Its hidden-state indices for `nl` blocks.
    pub fn layers(self, nl: usize) -> Vec<usize> {
        match self {
            HookSet::Inner => (1..nl).collect(),
            HookSet::Blocks => (1..=nl).collect(),
            HookSet::All => (0..=nl).collect(),
        }
    }
}

/// What an edit does to `h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `h ← h − α v`.
    Sub,
    /// `h ← h − α (h·v̂) v̂`.
    Project,
}

impl Op {
    /// `sub` or `project`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Sub => "sub",
            Op::Project => "project",
        }
    }
}

/// Where an edit starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Every position.
    All,
    /// The last prompt token and everything after it.
    LastPrompt,
}

/// One edit of the residual stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    /// Hidden-state indices, 0..=L: 0 the embeddings, i the output of block i−1, L the last
    /// block's output before the final norm (the final norm's output is never edited).
    pub layers: Vec<usize>,
    /// The operation.
    pub op: Op,
    /// Its scale α.
    pub alpha: f32,
    /// The direction (used as given for `Sub`, normalised for `Project`).
    pub v: Vec<f32>,
    /// Start position.
    pub start: Start,
}

impl Edit {
    fn apply(&self, row: &mut [f32]) {
        match self.op {
            Op::Sub => {
                for (x, v) in row.iter_mut().zip(&self.v) {
                    *x -= self.alpha * v;
                }
            }
            Op::Project => {
                let nn: f64 = self.v.iter().map(|&v| v as f64 * v as f64).sum();
                if nn > 0.0 {
                    let c: f64 = row
                        .iter()
                        .zip(&self.v)
                        .map(|(&x, &v)| x as f64 * v as f64)
                        .sum::<f64>()
                        / nn;
                    let s = (self.alpha as f64 * c) as f32;
                    for (x, v) in row.iter_mut().zip(&self.v) {
                        *x -= s * v;
                    }
                }
            }
        }
    }
}

/// The edits of one run over a batch whose prompts have `prompt_lens` tokens.
#[derive(Debug, Clone)]
pub struct Edits<'a> {
    /// Edits, applied in order.
    pub edits: &'a [Edit],
    /// Prompt length of each sequence of the batch.
    pub prompt_lens: Vec<usize>,
}

impl Edits<'_> {
    fn first(&self, e: &Edit, seq: usize) -> usize {
        match e.start {
            Start::All => 0,
            // A shared prefix ends before every sequence's last prompt token.
            Start::LastPrompt if seq == SHARED => usize::MAX,
            Start::LastPrompt => self.prompt_lens[seq].saturating_sub(1),
        }
    }
}

impl Hook for Edits<'_> {
    fn residual(&mut self, layer: usize, h: &mut [f32], rows: &[RowPos]) {
        for e in self.edits.iter().filter(|e| e.layers.contains(&layer)) {
            let d = e.v.len();
            for (r, row) in rows.iter().zip(h.chunks_mut(d)) {
                if r.pos >= self.first(e, r.seq) {
                    e.apply(row);
                }
            }
        }
    }
}

/// Checks edits against the model: width, layers, finite values.
pub fn check_edits(model: &Model, edits: &[Edit]) -> Result<()> {
    let (d, nl) = (model.config.hidden_size, model.config.num_layers);
    for e in edits {
        if e.v.len() != d {
            return Err(AnalysisError::Input(format!(
                "edit direction has {} values, the model's width is {d}",
                e.v.len()
            )));
        }
        if let Some(l) = e.layers.iter().find(|&&l| l > nl) {
            return Err(AnalysisError::Input(format!(
                "edit at layer {l}: the residual stream has indices 0..={nl}"
            )));
        }
        if !e.alpha.is_finite() || e.v.iter().any(|x| !x.is_finite()) {
            return Err(AnalysisError::Input("edit with a non-finite value".into()));
        }
    }
    Ok(())
}

/// Per prompt, under `edits`: the refusal log-odds of the next token after the prompt
/// (`ids`: the refusal-token set) and the projection of the state at `readout` (last prompt
/// token) on `c` (unit).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FirstToken {
    /// Refusal log-odds (`> 0`: refused).
    pub score: Vec<f64>,
    /// `h_readout · c`.
    pub projection: Vec<f64>,
}

/// A prefill of every prompt but its last token, reused by every run whose edits start at
/// the last prompt token (they cannot change earlier rows, so the cache is exact).
pub struct Prefill {
    caches: Vec<KvCache>,
}

impl Prefill {
    /// Prefills `prompts[i][..len−1]` (prompts of one token get an empty cache).
    pub fn new(model: &Model, prompts: &[Vec<u32>]) -> Result<Self> {
        let heads: Vec<&[u32]> = prompts.iter().map(|p| &p[..p.len() - 1]).collect();
        let mut caches = vec![KvCache::default(); prompts.len()];
        let req = Request {
            capture_layers: vec![],
            capture_positions: Positions::Last,
            interventions: vec![],
            logits: false,
        };
        let (with, idx): (Vec<&[u32]>, Vec<usize>) = heads
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(|(i, h)| (*h, i))
            .unzip();
        let mut sub = vec![KvCache::default(); with.len()];
        if !with.is_empty() {
            model.forward().run_cached(&with, &mut sub, &req)?;
        }
        for (c, i) in sub.into_iter().zip(idx) {
            caches[i] = c;
        }
        Ok(Prefill { caches })
    }
}

/// Refusal score and read-out projection of each prompt under `edits` (one batch). With a
/// `prefill` of the same prompts, only the last token runs (edits must start there).
pub fn first_token(
    model: &Model,
    prompts: &[Vec<u32>],
    edits: &[Edit],
    prefill: Option<&Prefill>,
    refusal_ids: &[u32],
    readout: (usize, &[f32]),
) -> Result<FirstToken> {
    let req = Request {
        capture_layers: vec![readout.0],
        capture_positions: Positions::Last,
        interventions: vec![],
        logits: true,
    };
    let mut hook = Edits {
        edits,
        prompt_lens: prompts.iter().map(Vec::len).collect(),
    };
    let fw = model.forward();
    let out = match prefill {
        Some(p) => {
            let tails = last_tokens(p, prompts, edits)?;
            fw.run_after(&tails, &p.caches, &req, &mut hook)?
        }
        None => {
            let seqs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
            fw.run_hooked(&seqs, &req, &mut hook)?
        }
    };
    let v = model.config.vocab_size;
    let d = model.config.hidden_size;
    let logits = out.logits.unwrap_or_default();
    let states = &out.captured[0].1;
    let mut score = Vec::with_capacity(prompts.len());
    let mut projection = Vec::with_capacity(prompts.len());
    for i in 0..prompts.len() {
        score.push(refusal_score(&logits[i * v..(i + 1) * v], refusal_ids));
        projection.push(project(&states[i * d..(i + 1) * d], readout.1));
    }
    Ok(FirstToken { score, projection })
}

/// The refusal log-odds of one row of next-token logits.
fn refusal_score(logits: &[f32], refusal_ids: &[u32]) -> f64 {
    crate::refusal::score_from_logprobs(&log_softmax(logits), refusal_ids)
}

/// `h · c`, accumulated in f64.
pub(crate) fn project(h: &[f32], c: &[f32]) -> f64 {
    h.iter().zip(c).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Log-probabilities of a logit row: the runtime's (one home; the normaliser in f64).
pub(crate) use hd_lm::kernels::log_softmax;

/// Greedy answers (new token ids) of one batch under `edits`. With a `prefill` of the same
/// prompts (edits must start at the last prompt token), only the last prompt token and the
/// answers run.
pub fn generate(
    model: &Model,
    prompts: &[Vec<u32>],
    edits: &[Edit],
    max_new: usize,
    prefill: Option<&Prefill>,
) -> Result<Vec<Vec<u32>>> {
    let mut hook = Edits {
        edits,
        prompt_lens: prompts.iter().map(Vec::len).collect(),
    };
    generate_hooked(model, prompts, edits, max_new, prefill, &mut hook)
}

/// [`generate`] that also returns what [`first_token`] measures, read off the generation's
/// own pass over the last prompt token (same edits, same state; equal up to rounding), so a
/// run that generates needs no first-token pass of its own. `readout.0` must be a residual
/// index below the model's layer count (the hook never sees index L).
pub fn generate_probed(
    model: &Model,
    prompts: &[Vec<u32>],
    edits: &[Edit],
    max_new: usize,
    prefill: Option<&Prefill>,
    refusal_ids: &[u32],
    readout: (usize, &[f32]),
) -> Result<(Vec<Vec<u32>>, FirstToken)> {
    if readout.0 >= model.config.num_layers {
        return Err(AnalysisError::Input(format!(
            "read-out index {} is not in the residual stream 0..{}",
            readout.0, model.config.num_layers
        )));
    }
    if max_new == 0 {
        return Err(AnalysisError::Input(
            "a probed generation needs at least one new token".into(),
        ));
    }
    let n = prompts.len();
    let mut hook = Probed {
        edits: Edits {
            edits,
            prompt_lens: prompts.iter().map(Vec::len).collect(),
        },
        refusal_ids,
        readout,
        got: FirstToken {
            score: vec![f64::NAN; n],
            projection: vec![f64::NAN; n],
        },
    };
    let answers = generate_hooked(model, prompts, edits, max_new, prefill, &mut hook)?;
    Ok((answers, hook.got))
}

fn generate_hooked(
    model: &Model,
    prompts: &[Vec<u32>],
    edits: &[Edit],
    max_new: usize,
    prefill: Option<&Prefill>,
    hook: &mut dyn Hook,
) -> Result<Vec<Vec<u32>>> {
    let gens = match prefill {
        Some(p) => {
            let tails = last_tokens(p, prompts, edits)?;
            model.generate_from(p.caches.clone(), &tails, max_new, &[], hook)?
        }
        None => model.generate_hooked(prompts, max_new, &[], true, hook)?,
    };
    Ok(gens.into_iter().map(|g| g.tokens).collect())
}

/// The edits of a run, and the first-token measures taken at each prompt's last token.
struct Probed<'a> {
    edits: Edits<'a>,
    refusal_ids: &'a [u32],
    readout: (usize, &'a [f32]),
    got: FirstToken,
}

impl Probed<'_> {
    fn last_prompt_token(&self, r: &RowPos) -> bool {
        r.seq != SHARED && r.pos + 1 == self.edits.prompt_lens[r.seq]
    }
}

impl Hook for Probed<'_> {
    fn residual(&mut self, layer: usize, h: &mut [f32], rows: &[RowPos]) {
        self.edits.residual(layer, h, rows);
        if layer != self.readout.0 {
            return;
        }
        let c = self.readout.1;
        for (r, row) in rows.iter().zip(h.chunks(c.len())) {
            if self.last_prompt_token(r) {
                self.got.projection[r.seq] = project(row, c);
            }
        }
    }
    fn logit_rows(&self, rows: &[RowPos]) -> Vec<usize> {
        (0..rows.len())
            .filter(|&i| self.last_prompt_token(&rows[i]))
            .collect()
    }
    fn logits(&mut self, rows: &[RowPos], logits: &[f32]) {
        let v = logits.len() / rows.len().max(1);
        for (r, l) in rows.iter().zip(logits.chunks(v)) {
            self.got.score[r.seq] = refusal_score(l, self.refusal_ids);
        }
    }
}

/// What runs after `p` (checked to serve `prompts` and `edits`): each prompt's last token.
fn last_tokens<'a>(p: &Prefill, prompts: &'a [Vec<u32>], edits: &[Edit]) -> Result<Vec<&'a [u32]>> {
    check_prefill(p, prompts, edits)?;
    Ok(prompts.iter().map(|q| &q[q.len() - 1..]).collect())
}

/// A prefill serves only edits from the last prompt token on, and only its own prompts.
fn check_prefill(p: &Prefill, prompts: &[Vec<u32>], edits: &[Edit]) -> Result<()> {
    if edits.iter().any(|e| e.start != Start::LastPrompt) {
        return Err(AnalysisError::Input(
            "a prefill serves only edits from the last prompt token on".into(),
        ));
    }
    if p.caches.len() != prompts.len()
        || p.caches
            .iter()
            .zip(prompts)
            .any(|(c, q)| c.len() + 1 != q.len())
    {
        return Err(AnalysisError::Input(
            "the prefill was made for other prompts".into(),
        ));
    }
    Ok(())
}

/// Collects `−log p(next token)` at the answer rows of prompt + answer sequences.
struct Nll<'a> {
    edits: Edits<'a>,
    seqs: &'a [Vec<u32>],
    nll: f64,
    count: usize,
}

impl Hook for Nll<'_> {
    fn residual(&mut self, layer: usize, h: &mut [f32], rows: &[RowPos]) {
        self.edits.residual(layer, h, rows);
    }
    fn logit_rows(&self, rows: &[RowPos]) -> Vec<usize> {
        rows.iter()
            .enumerate()
            .filter(|(_, r)| {
                r.seq != SHARED
                    && r.pos + 1 >= self.edits.prompt_lens[r.seq]
                    && r.pos + 1 < self.seqs[r.seq].len()
            })
            .map(|(i, _)| i)
            .collect()
    }
    fn logits(&mut self, rows: &[RowPos], logits: &[f32]) {
        let v = logits.len() / rows.len().max(1);
        for (r, l) in rows.iter().zip(logits.chunks(v)) {
            let next = self.seqs[r.seq][r.pos + 1] as usize;
            let lp = log_softmax(l);
            self.nll -= lp[next] as f64;
            self.count += 1;
        }
    }
}

/// Teacher-forced negative log-likelihood of `answers` after `prompts` under `edits`:
/// (sum over answer tokens, token count); perplexity is `exp(sum / count)`. With a
/// `prefill` of the prompts (edits from the last prompt token on), only the last prompt
/// token and the answers run.
pub fn answer_nll(
    model: &Model,
    prompts: &[Vec<u32>],
    answers: &[Vec<u32>],
    edits: &[Edit],
    prefill: Option<&Prefill>,
) -> Result<(f64, usize)> {
    let seqs: Vec<Vec<u32>> = prompts
        .iter()
        .zip(answers)
        .map(|(p, a)| p.iter().chain(a).copied().collect())
        .collect();
    let mut hook = Nll {
        edits: Edits {
            edits,
            prompt_lens: prompts.iter().map(Vec::len).collect(),
        },
        seqs: &seqs,
        nll: 0.0,
        count: 0,
    };
    let req = Request {
        capture_layers: vec![],
        capture_positions: Positions::Last,
        interventions: vec![],
        logits: false,
    };
    match prefill {
        Some(p) => {
            check_prefill(p, prompts, edits)?;
            let tails: Vec<&[u32]> = seqs
                .iter()
                .zip(prompts)
                .map(|(s, q)| &s[q.len() - 1..])
                .collect();
            model
                .forward()
                .run_after(&tails, &p.caches, &req, &mut hook)?;
        }
        None => {
            let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
            model.forward().run_hooked(&refs, &req, &mut hook)?;
        }
    }
    Ok((hook.nll, hook.count))
}
