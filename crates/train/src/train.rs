//! The training loop: seeded batches, a loss on target tokens only, AdamW with warm-up and
//! cosine decay, gradient clipping.
//!
//! A step takes `batch_size` examples of the epoch's seeded permutation, packs them (with
//! their common prefix — the system prompt and user header of the chat template — computed
//! once), runs the differentiable forward with logits only at the rows that predict target
//! tokens, and minimises the mean over the batch of each example's mean target-token
//! negative log-likelihood (every row counts the same, however long its target).
//!
//! Everything a step does depends only on the step number, the seed, the examples and the
//! parameters, so a run resumed from a checkpoint continues exactly as the uninterrupted run.

use crate::data::Example;
use crate::diff::{to_vec, DiffModel, DiffRequest, Method, Packed};
use crate::error::{Result, TrainError};
use crate::ops;
use crate::optim::{clip_global_norm, lr_at, AdamW};
use crate::rng::SplitMix64;
use candle_core::{Device, Tensor};
use std::ops::Range;

/// Hyper-parameters of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
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
    /// Batch loss (mean per-example target NLL).
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
                "--batch-size and --epochs must be at least 1".into(),
            ));
        }
        if !(config.lr > 0.0 && config.lr.is_finite()) {
            return Err(TrainError::Input(format!(
                "--lr {} must be positive",
                config.lr
            )));
        }
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
        })
    }

    /// Steps per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.examples.len().div_ceil(self.config.batch_size)
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

    /// Example indices of step `step` (0-based): a slice of the epoch's seeded permutation;
    /// the `ceil(n / batch_size)` batches of an epoch differ in size by at most one.
    pub fn batch_of(&self, step: usize) -> Vec<usize> {
        let spe = self.steps_per_epoch();
        let (epoch, b) = (step / spe, step % spe);
        let mut order: Vec<usize> = (0..self.examples.len()).collect();
        SplitMix64::derive(&[self.config.seed, epoch as u64, 0x5EED_BA7C]).shuffle(&mut order);
        // Batches of near-equal size (never a lone remainder of one or two rows).
        let n = order.len();
        order[b * n / spe..(b + 1) * n / spe].to_vec()
    }

    fn warmup_steps(&self) -> usize {
        ((self.total_steps() as f64) * self.config.warmup_ratio).ceil() as usize
    }

    /// Loss of a set of examples under the current parameters, as a tensor with a graph.
    pub fn loss_of(&self, idx: &[usize]) -> Result<(Tensor, usize)> {
        let seqs: Vec<&[u32]> = idx
            .iter()
            .map(|&i| self.examples[i].tokens.as_slice())
            .collect();
        let packed = Packed::with_shared_prefix(&seqs, MAX_SHARED_PREFIX);
        let mut rows = Vec::new();
        let mut targets = Vec::new();
        let mut weights = Vec::new();
        for (s, &i) in idx.iter().enumerate() {
            let ex = &self.examples[i];
            let nt = ex.n_target();
            for p in ex.n_prompt..ex.tokens.len() {
                rows.push(packed.row(s, p - 1));
                targets.push(ex.tokens[p]);
                weights.push(1.0 / (nt as f32 * idx.len() as f32));
            }
        }
        // Blocks below the trained ones carry no parameters: run them without a graph.
        let first = self.config.layers.start;
        let start = if first > 0 {
            let h = self.model.forward(
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
        let out = self.model.forward(
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
        let nll = ops::cross_entropy(&logits, &targets)?;
        let n = weights.len();
        let w = Tensor::from_vec(weights, n, &Device::Cpu)?;
        Ok(((nll * w)?.sum_all()?, n))
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
            return Err(TrainError::Input(format!(
                "step {}: the loss is {loss_v}; lower --lr",
                self.step + 1
            )));
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
            .map(|(_, v)| to_vec(v.as_tensor()))
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
