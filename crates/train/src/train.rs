//! The training loop: seeded batches, a loss on target tokens only, AdamW with warm-up and
//! cosine decay, gradient clipping.
//!
//! A step takes `batch_size` examples of the epoch's seeded permutation, packs them (with
//! their common prefix — the system prompt and user header of the chat template — computed
//! once), runs the differentiable forward with logits only at the rows that predict target
//! tokens, and minimises the mean over the batch of each example's mean target-token
//! negative log-likelihood (every row counts the same, however long its target).
//!
//! With [`Objective::Dpo`] the examples come in preference pairs (chosen, rejected, chosen,
//! rejected, ...: [`crate::data::Pair`]s flattened by [`flatten_pairs`]), a batch is
//! `batch_size` pairs, and the loss is DPO's (Rafailov et al. 2023):
//! `mean over pairs of -log sigmoid(beta * ((log pi(c) - log ref(c)) - (log pi(r) - log ref(r))))`,
//! where `log pi(y)` is the summed log-probability of the completion's tokens. The reference
//! is the model before any update: its log-probabilities are computed once, in
//! [`Trainer::new`], before the adapters (or trainable weights) are attached. With LoRA that is
//! exactly the adapter-off forward, and no second copy of the weights is kept. With `nll > 0`
//! the chosen completions' mean token negative log-likelihood, times `nll`, is added (RPO,
//! Pang et al. 2024): DPO alone may lower the chosen answer's likelihood along with the
//! rejected one's, and the term keeps the chosen answers likely.
//!
//! Everything a step does depends only on the step number, the seed, the examples and the
//! parameters, so a run resumed from a checkpoint continues exactly as the uninterrupted run.

use crate::data::{Example, Pair};
use crate::error::{Result, TrainError};
use crate::optim::{clip_global_norm, lr_at, AdamW};
use candle_core::{Device, Tensor};
use hd_grad::diff::{to_vec, DiffModel, DiffRequest, Method, Packed};
use hd_grad::ops;
use hd_rng::SplitMix64;
use std::ops::Range;

/// What is minimised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// Mean target-token negative log-likelihood (supervised fine-tuning).
    Sft,
    /// Direct preference optimisation on (chosen, rejected) pairs, reference = the initial
    /// model.
    Dpo {
        /// Inverse temperature of the implicit reward (TRL's default 0.1).
        beta: f64,
        /// Weight of the chosen completions' mean token NLL added to the loss (0: plain DPO).
        nll: f64,
    },
}

impl Objective {
    /// `sft` or `dpo beta=<beta>`, for metadata and checkpoint fingerprints.
    pub fn describe(&self) -> String {
        match self {
            Objective::Sft => "sft".into(),
            // Plain DPO keeps its old description, so its checkpoints stay resumable.
            Objective::Dpo { beta, nll } if *nll == 0.0 => format!("dpo beta={beta}"),
            Objective::Dpo { beta, nll } => format!("dpo beta={beta} nll={nll}"),
        }
    }
}

/// Pairs as the example list [`Trainer::new`] takes for [`Objective::Dpo`].
pub fn flatten_pairs(pairs: Vec<Pair>) -> Vec<Example> {
    pairs
        .into_iter()
        .flat_map(|p| [p.chosen, p.rejected])
        .collect()
}

/// Hyper-parameters of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// What is minimised.
    pub objective: Objective,
    /// What is trained.
    pub method: Method,
    /// Blocks that are trained (the others stay frozen).
    pub layers: Range<usize>,
    /// Peak learning rate.
    pub lr: f64,
    /// Passes over the examples.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Fraction of the steps spent warming up.
    pub warmup_ratio: f64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Gradient clipping (global L2 norm; 0 = off).
    pub clip: f64,
    /// Seed of the shuffles and the adapter initialisation.
    pub seed: u64,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLog {
    /// 1-based step number.
    pub step: usize,
    /// Fractional epoch at the end of the step.
    pub epoch: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Batch loss (SFT: mean per-example target NLL; DPO: mean pair loss).
    pub loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Target tokens in the batch.
    pub target_tokens: usize,
}

/// A model being trained, its optimiser and where it is.
pub struct Trainer {
    /// The model (adapters or trainable weights attached).
    pub model: DiffModel,
    /// Hyper-parameters.
    pub config: TrainConfig,
    /// Steps done.
    pub step: usize,
    /// One entry per step done.
    pub history: Vec<StepLog>,
    opt: AdamW,
    examples: Vec<Example>,
    /// DPO: the reference log-probability of every example's completion.
    ref_logp: Vec<f64>,
}

/// Longest shared prefix computed once per batch; longer prompts share little beyond the
/// template header anyway.
const MAX_SHARED_PREFIX: usize = 256;

impl Trainer {
    /// Attaches the trainable parameters and a fresh optimiser.
    pub fn new(mut model: DiffModel, examples: Vec<Example>, config: TrainConfig) -> Result<Self> {
        if examples.is_empty() {
            return Err(TrainError::Input("no training examples".into()));
        }
        if config.batch_size == 0 || config.epochs == 0 {
            return Err(TrainError::Input(
                "batch size and epochs must be at least 1".into(),
            ));
        }
        if !(config.lr > 0.0 && config.lr.is_finite()) {
            return Err(TrainError::Input(format!(
                "learning rate {} must be positive",
                config.lr
            )));
        }
        let ref_logp = match config.objective {
            Objective::Sft => Vec::new(),
            Objective::Dpo { beta, nll } => {
                if !(beta > 0.0 && beta.is_finite()) {
                    return Err(TrainError::Input(format!(
                        "DPO beta {beta} must be positive"
                    )));
                }
                if !(nll >= 0.0 && nll.is_finite()) {
                    return Err(TrainError::Input(format!(
                        "DPO's NLL weight {nll} must be 0 or positive"
                    )));
                }
                check_pairs(&examples)?;
                // Before the trainable parameters exist: the frozen model is the reference.
                let mut lp = Vec::with_capacity(examples.len());
                let idx: Vec<usize> = (0..examples.len()).collect();
                for chunk in idx.chunks(2 * config.batch_size) {
                    let (t, _) = seq_logp(&model, &examples, chunk, 0)?;
                    lp.extend(to_vec(&t)?.into_iter().map(f64::from));
                }
                lp
            }
        };
        model.make_trainable(&config.method, config.layers.clone(), config.seed)?;
        let sizes: Vec<usize> = model
            .trainable()
            .iter()
            .map(|(_, v)| v.elem_count())
            .collect();
        let opt = AdamW::new(&sizes, config.weight_decay);
        Ok(Trainer {
            model,
            config,
            step: 0,
            history: Vec::new(),
            opt,
            examples,
            ref_logp,
        })
    }

    /// What a batch is made of: examples (SFT) or pairs (DPO).
    fn n_units(&self) -> usize {
        match self.config.objective {
            Objective::Sft => self.examples.len(),
            Objective::Dpo { .. } => self.examples.len() / 2,
        }
    }

    /// Steps per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.n_units().div_ceil(self.config.batch_size)
    }

    /// Steps of the whole run.
    pub fn total_steps(&self) -> usize {
        self.steps_per_epoch() * self.config.epochs
    }

    /// Number of trainable scalars.
    pub fn n_trainable(&self) -> usize {
        self.model
            .trainable()
            .iter()
            .map(|(_, v)| v.elem_count())
            .sum()
    }

    /// The examples (in input order).
    pub fn examples(&self) -> &[Example] {
        &self.examples
    }

    /// Example (SFT) or pair (DPO) indices of step `step` (0-based): a slice of the epoch's
    /// seeded permutation; the `ceil(n / batch_size)` batches of an epoch differ in size by at
    /// most one.
    pub fn batch_of(&self, step: usize) -> Vec<usize> {
        let spe = self.steps_per_epoch();
        let (epoch, b) = (step / spe, step % spe);
        let mut order: Vec<usize> = (0..self.n_units()).collect();
        SplitMix64::derive(&[self.config.seed, epoch as u64, 0x5EED_BA7C]).shuffle(&mut order);
        // Batches of near-equal size (never a lone remainder of one or two rows).
        let n = order.len();
        order[b * n / spe..(b + 1) * n / spe].to_vec()
    }

    fn warmup_steps(&self) -> usize {
        ((self.total_steps() as f64) * self.config.warmup_ratio).ceil() as usize
    }

    /// Loss of a batch (example indices for SFT, pair indices for DPO) under the current
    /// parameters, as a tensor with a graph, and the number of target tokens in it.
    pub fn loss_of(&self, idx: &[usize]) -> Result<(Tensor, usize)> {
        match self.config.objective {
            Objective::Sft => self.sft_loss(idx),
            Objective::Dpo { beta, nll } => self.dpo_loss(idx, beta, nll),
        }
    }

    fn sft_loss(&self, idx: &[usize]) -> Result<(Tensor, usize)> {
        let (nll, spans) = token_nll(&self.model, &self.examples, idx, self.config.layers.start)?;
        let mut weights = Vec::with_capacity(nll.elem_count());
        for r in &spans {
            let nt = r.len();
            weights.extend(std::iter::repeat_n(
                1.0 / (nt as f32 * idx.len() as f32),
                nt,
            ));
        }
        let n = weights.len();
        let w = Tensor::from_vec(weights, n, &Device::Cpu)?;
        Ok(((nll * w)?.sum_all()?, n))
    }

    fn dpo_loss(&self, pairs: &[usize], beta: f64, nll: f64) -> Result<(Tensor, usize)> {
        let seqs: Vec<usize> = pairs.iter().flat_map(|&p| [2 * p, 2 * p + 1]).collect();
        let (lp, n) = seq_logp(&self.model, &self.examples, &seqs, self.config.layers.start)?;
        // d_p = log pi(c_p) - log pi(r_p), through a [2P, P] matrix of +1 / -1.
        let np = pairs.len();
        let mut sign = vec![0f32; 2 * np * np];
        for p in 0..np {
            sign[(2 * p) * np + p] = 1.0;
            sign[(2 * p + 1) * np + p] = -1.0;
        }
        let sign = Tensor::from_vec(sign, (2 * np, np), &Device::Cpu)?;
        let d = lp.unsqueeze(0)?.matmul(&sign)?.squeeze(0)?;
        // RPO's term: -nll / (|c_p| · P) on each chosen completion's summed log-probability.
        let chosen_nll = if nll > 0.0 {
            let w: Vec<f32> = pairs
                .iter()
                .flat_map(|&p| {
                    let nc = self.examples[2 * p].n_target().max(1) as f64;
                    [(-nll / (nc * np as f64)) as f32, 0.0]
                })
                .collect();
            let w = Tensor::from_vec(w, 2 * np, &Device::Cpu)?;
            Some((&lp * w)?.sum_all()?)
        } else {
            None
        };
        let ref_d: Vec<f32> = pairs
            .iter()
            .map(|&p| (self.ref_logp[2 * p] - self.ref_logp[2 * p + 1]) as f32)
            .collect();
        let ref_d = Tensor::from_vec(ref_d, np, &Device::Cpu)?;
        let z = ((d - ref_d)? * beta)?;
        // -log sigmoid(z) = softplus(-z) = relu(-z) + log(1 + exp(-|z|)), stable for any z.
        let loss = (z.neg()?.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?.mean_all()?;
        match chosen_nll {
            Some(c) => Ok(((loss + c)?, n)),
            None => Ok((loss, n)),
        }
    }

    /// Runs the next step.
    pub fn step(&mut self) -> Result<StepLog> {
        let total = self.total_steps();
        if self.step >= total {
            return Err(TrainError::Input(format!("all {total} steps are done")));
        }
        let idx = self.batch_of(self.step);
        let (loss, n_tgt) = self.loss_of(&idx)?;
        let loss_v = loss.to_scalar::<f32>()? as f64;
        if !loss_v.is_finite() {
            return Err(TrainError::Diverged {
                step: self.step + 1,
                loss: loss_v,
            });
        }
        let grads = loss.backward()?;
        let mut gs = Vec::with_capacity(self.model.trainable().len());
        for (_, v) in self.model.trainable() {
            gs.push(match grads.get(v.as_tensor()) {
                Some(g) => to_vec(g)?,
                None => vec![0.0; v.elem_count()],
            });
        }
        drop(grads);
        drop(loss);
        let norm = clip_global_norm(&mut gs, self.config.clip);
        let lr = lr_at(
            self.step,
            total,
            self.config.lr,
            self.warmup_steps(),
            self.config.min_lr_ratio,
        );
        let mut params = self.params()?;
        self.opt.step(&mut params, &gs, lr);
        self.set_params(&params)?;
        self.step += 1;
        let log = StepLog {
            step: self.step,
            epoch: self.step as f64 / self.steps_per_epoch() as f64,
            lr,
            loss: loss_v,
            grad_norm: norm,
            target_tokens: n_tgt,
        };
        self.history.push(log);
        Ok(log)
    }

    /// Current values of the trainable parameters.
    pub fn params(&self) -> Result<Vec<Vec<f32>>> {
        self.model
            .trainable()
            .iter()
            .map(|(_, v)| Ok(to_vec(v.as_tensor())?))
            .collect()
    }

    /// Sets the trainable parameters (in [`DiffModel::trainable`] order).
    pub fn set_params(&self, params: &[Vec<f32>]) -> Result<()> {
        for ((name, v), p) in self.model.trainable().iter().zip(params) {
            if p.len() != v.elem_count() {
                return Err(TrainError::Input(format!(
                    "parameter '{name}' has {} values, expected {}",
                    p.len(),
                    v.elem_count()
                )));
            }
            v.set(&Tensor::from_vec(p.clone(), v.dims(), &Device::Cpu)?)?;
        }
        Ok(())
    }

    /// Optimiser moments and step count.
    pub fn optimizer(&self) -> &AdamW {
        &self.opt
    }

    /// Restores a saved state (parameters, moments, step, history).
    pub fn restore(
        &mut self,
        params: &[Vec<f32>],
        m: Vec<Vec<f32>>,
        v: Vec<Vec<f32>>,
        step: usize,
        history: Vec<StepLog>,
    ) -> Result<()> {
        self.set_params(params)?;
        let sizes: Vec<usize> = params.iter().map(Vec::len).collect();
        let ok = |x: &Vec<Vec<f32>>| x.iter().map(Vec::len).eq(sizes.iter().copied());
        if !ok(&m) || !ok(&v) || history.len() != step || step > self.total_steps() {
            return Err(TrainError::Input(
                "optimiser state does not match the parameters".into(),
            ));
        }
        self.opt.m = m;
        self.opt.v = v;
        self.opt.t = step;
        self.step = step;
        self.history = history;
        Ok(())
    }
}

/// The examples packed, their common prefix (the chat template's header) computed once.
fn packed_of(examples: &[Example], idx: &[usize]) -> Packed {
    let seqs: Vec<&[u32]> = idx.iter().map(|&i| examples[i].tokens.as_slice()).collect();
    Packed::with_shared_prefix(&seqs, MAX_SHARED_PREFIX)
}

/// Per-target-token negative log-likelihoods of examples `idx`, and which of them belong to
/// each example (in `idx` order). Blocks below `first` carry no parameters and run without a
/// graph.
fn token_nll(
    model: &DiffModel,
    examples: &[Example],
    idx: &[usize],
    first: usize,
) -> Result<(Tensor, Vec<Range<usize>>)> {
    let packed = packed_of(examples, idx);
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    let mut spans = Vec::with_capacity(idx.len());
    for (s, &i) in idx.iter().enumerate() {
        let ex = &examples[i];
        let from = rows.len();
        for p in ex.n_prompt..ex.tokens.len() {
            rows.push(packed.row(s, p - 1));
            targets.push(ex.tokens[p]);
        }
        spans.push(from..rows.len());
    }
    let start = if first > 0 {
        let h = model.forward(
            &packed,
            &DiffRequest {
                capture: vec![first],
                ..Default::default()
            },
        )?;
        Some((first, h.hidden[0].1.detach()))
    } else {
        None
    };
    let out = model.forward(
        &packed,
        &DiffRequest {
            logit_rows: Some(rows),
            start,
            ..Default::default()
        },
    )?;
    let logits = out
        .logits
        .ok_or_else(|| TrainError::Candle("no logits".into()))?;
    Ok((ops::cross_entropy(&logits, &targets)?, spans))
}

/// Summed log-probability of each example's target tokens `[idx.len()]`, and the number of
/// target tokens.
fn seq_logp(
    model: &DiffModel,
    examples: &[Example],
    idx: &[usize],
    first: usize,
) -> Result<(Tensor, usize)> {
    let (nll, spans) = token_nll(model, examples, idx, first)?;
    let n = nll.elem_count();
    let mut member = vec![0f32; n * idx.len()];
    for (s, r) in spans.iter().enumerate() {
        for row in r.clone() {
            member[row * idx.len() + s] = -1.0;
        }
    }
    let member = Tensor::from_vec(member, (n, idx.len()), &Device::Cpu)?;
    Ok((nll.unsqueeze(0)?.matmul(&member)?.squeeze(0)?, n))
}

/// DPO examples must alternate chosen / rejected completions of the same row.
fn check_pairs(examples: &[Example]) -> Result<()> {
    if !examples.len().is_multiple_of(2) {
        return Err(TrainError::Input(format!(
            "DPO needs (chosen, rejected) pairs, got an odd number of examples ({})",
            examples.len()
        )));
    }
    for p in examples.chunks(2) {
        if p[0].id != p[1].id || p[0].tokens[..p[0].n_prompt] != p[1].tokens[..p[1].n_prompt] {
            return Err(TrainError::Input(format!(
                "DPO pair '{}' / '{}': the two completions must answer the same prompt",
                p[0].id, p[1].id
            )));
        }
    }
    Ok(())
}
