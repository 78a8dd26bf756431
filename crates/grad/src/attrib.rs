//! Attribution on the differentiable decoder: gradient × input with the exact gradient or the
//! AttnLRP rules ([`Rules`]), for the token maps of `dir-label tokens`, the component
//! relevances of `dir-interact` and the trigger-token search of `token-prune`.
//!
//! A [`Traced`] forward keeps the graph of one packed batch (sequences on their own, no
//! shared prefix, so every row's gradient belongs to one sequence). Each [`Target`] is summed
//! over the batch's sequences and back-propagated once; sequences do not see each other, so
//! one backward gives every sequence its own gradient. Several targets (components) reuse
//! the same forward.
//!
//! With [`Traced::run_shared`], a prefix common to the batch (the chat template's system
//! turn, typically half of a short prompt) is run once and every sequence attends to it.
//! Positions past the prefix get exactly what a separate run would give them; the shared
//! rows' gradients are summed over the batch, so they are not any one sequence's and
//! [`Traced::row`] refuses them.
//!
//! The projection target is seeded as in the paper's reference (`lxt`): the gradient at
//! `h_ℓ` of the last position is `c / (c·h_ℓ)`, so AttnLRP relevances sum to about 1 per
//! sequence and do not depend on the sign of `c`.

use crate::diff::{DiffModel, DiffRequest, Packed};
use crate::error::{GradError, Result};
use crate::ops::Rules;
use candle_core::{Device, Tensor, Var};

/// What to explain, per sequence, at its last position.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// `c·h_ℓ` for hidden-state index `layer` (HF numbering) and direction `c` (`[d]`),
    /// seeded with `1/(c·h_ℓ)`.
    Projection {
        /// Hidden-state index ℓ.
        layer: usize,
        /// The direction `c`.
        direction: &'a [f32],
    },
    /// The log-odds of a token set at the next position, `log Σ_{t∈ids} p_t − log Σ_{t∉ids} p_t`
    /// (the first-token refusal score), seeded with 1.
    LogOdds {
        /// Token ids of the set (sorted, distinct, in range).
        ids: &'a [u32],
    },
}

/// A forward pass kept for attribution.
pub struct Traced<'m> {
    model: &'m DiffModel,
    packed: Packed,
    lengths: Vec<usize>,
    input_layer: usize,
    input: Var,
    hidden: Vec<(usize, Tensor)>,
    logits: Option<Tensor>,
    /// Each sequence's last packed row.
    last_rows: Vec<usize>,
}

impl std::fmt::Debug for Traced<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traced")
            .field("lengths", &self.lengths)
            .field("input_layer", &self.input_layer)
            .finish_non_exhaustive()
    }
}

fn cpu() -> Device {
    Device::Cpu
}

/// A packed batch and its states at some hidden-state indices, from one plain forward (no
/// gradients): the starting points of [`Traced::run_from`].
#[derive(Debug, Clone)]
pub struct Batch {
    packed: Packed,
    lengths: Vec<usize>,
    states: Vec<(usize, Tensor)>,
}

impl Batch {
    /// Packs `seqs` (sharing their common prefix up to `max_prefix` tokens, see
    /// [`Traced::run_shared`]) and runs the plain forward as far as the highest of `layers`,
    /// keeping those states (index 0: the token embeddings).
    pub fn new(
        model: &DiffModel,
        seqs: &[&[u32]],
        layers: &[usize],
        max_prefix: usize,
    ) -> Result<Self> {
        let packed = if max_prefix > 0 {
            Packed::with_shared_prefix(seqs, max_prefix)
        } else {
            Packed::new(seqs)
        };
        let lengths: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let mut want: Vec<usize> = layers.to_vec();
        want.sort_unstable();
        want.dedup();
        let mut states = Vec::with_capacity(want.len());
        if want.first() == Some(&0) {
            states.push((0, model.embed_tokens(&packed)?));
        }
        let above: Vec<usize> = want.iter().copied().filter(|&l| l > 0).collect();
        if !above.is_empty() {
            let req = DiffRequest {
                capture: above,
                ..Default::default()
            };
            states.extend(model.forward(&packed, &req)?.hidden);
        }
        Ok(Batch {
            packed,
            lengths,
            states,
        })
    }

    fn states_of(&self, layer: usize) -> Result<&Tensor> {
        self.states
            .iter()
            .find(|(l, _)| *l == layer)
            .map(|(_, t)| t)
            .ok_or_else(|| GradError::Input(format!("the batch holds no states of layer {layer}")))
    }
}

impl<'m> Traced<'m> {
    /// Runs `seqs` (token ids, each non-empty) with gradients tracked from hidden-state index
    /// `input_layer` (0: the token embeddings), keeping the states of `capture` and, when
    /// `logits`, the logits at every sequence's last position.
    pub fn run(
        model: &'m DiffModel,
        seqs: &[&[u32]],
        input_layer: usize,
        capture: &[usize],
        logits: bool,
        rules: Rules,
    ) -> Result<Self> {
        Self::run_shared(model, seqs, input_layer, capture, logits, rules, 0)
    }

    /// [`Traced::run`] with the longest prefix common to all sequences, at most `max_prefix`
    /// tokens, run once for the batch. Use it when no position below `max_prefix` is needed
    /// per sequence (`0`: nothing shared).
    pub fn run_shared(
        model: &'m DiffModel,
        seqs: &[&[u32]],
        input_layer: usize,
        capture: &[usize],
        logits: bool,
        rules: Rules,
        max_prefix: usize,
    ) -> Result<Self> {
        let states = Batch::new(model, seqs, &[input_layer], max_prefix)?;
        Self::run_from(model, &states, input_layer, capture, logits, rules)
    }

    /// Traces from hidden-state index `input_layer`, taking its states from `batch` (which
    /// must hold them): several runs from different layers share one plain forward.
    pub fn run_from(
        model: &'m DiffModel,
        batch: &Batch,
        input_layer: usize,
        capture: &[usize],
        logits: bool,
        rules: Rules,
    ) -> Result<Self> {
        let packed = batch.packed.clone();
        let lengths = batch.lengths.clone();
        let start_states = batch.states_of(input_layer)?;
        let input = Var::from_tensor(start_states)?;
        let last_rows: Vec<usize> = (0..lengths.len())
            .map(|i| packed.row(i, lengths[i] - 1))
            .collect();
        let mut cap: Vec<usize> = capture.to_vec();
        cap.sort_unstable();
        cap.dedup();
        let out = model.forward(
            &packed,
            &DiffRequest {
                capture: cap,
                logit_rows: logits.then(|| last_rows.clone()),
                start: Some((input_layer, input.as_tensor().clone())),
                rules,
            },
        )?;
        Ok(Traced {
            model,
            packed,
            lengths,
            input_layer,
            input,
            hidden: out.hidden,
            logits: out.logits,
            last_rows,
        })
    }

    /// Number of sequences.
    pub fn n_seqs(&self) -> usize {
        self.lengths.len()
    }

    /// Token count of each sequence.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// Positions run once for the whole batch (0: none).
    pub fn prefix(&self) -> usize {
        self.packed.prefix
    }

    /// The packed row holding the forward state of position `pos` of sequence `seq`: a shared
    /// row for a position in the prefix (the states there are every sequence's).
    pub fn state_row(&self, seq: usize, pos: usize) -> usize {
        self.packed.row(seq, pos)
    }

    /// The packed row of position `pos` of sequence `seq`, for its gradient or relevance.
    ///
    /// # Panics
    /// When `pos` lies in the shared prefix: that row belongs to no one sequence.
    pub fn row(&self, seq: usize, pos: usize) -> usize {
        assert!(
            pos >= self.packed.prefix,
            "position {pos} is in the shared prefix of {} rows",
            self.packed.prefix
        );
        self.packed.row(seq, pos)
    }

    /// Hidden-state index the gradients start from (0: the embeddings).
    pub fn input_layer(&self) -> usize {
        self.input_layer
    }

    /// The input states (embeddings or `h_S`), `[n_rows, d]` row-major.
    pub fn input(&self) -> Result<Vec<f32>> {
        crate::diff::to_vec(self.input.as_tensor())
    }

    /// The captured states of hidden-state index `layer`, `[n_rows, d]` row-major.
    pub fn states(&self, layer: usize) -> Result<Vec<f32>> {
        crate::diff::to_vec(self.hidden_tensor(layer)?)
    }

    fn hidden_tensor(&self, layer: usize) -> Result<&Tensor> {
        self.hidden
            .iter()
            .find(|(l, _)| *l == layer)
            .map(|(_, t)| t)
            .ok_or_else(|| GradError::Input(format!("layer {layer} was not captured")))
    }

    fn last_rows(&self) -> Result<Tensor> {
        let rows: Vec<u32> = self.last_rows.iter().map(|&r| r as u32).collect();
        Ok(Tensor::from_vec(rows, self.n_seqs(), &cpu())?)
    }

    /// The target's value per sequence (`c·h_ℓ` or the log-odds), without gradients.
    pub fn values(&self, target: &Target) -> Result<Vec<f32>> {
        crate::diff::to_vec(&self.target_values(target)?)
    }

    fn target_values(&self, target: &Target) -> Result<Tensor> {
        match *target {
            Target::Projection { layer, direction } => {
                let h = self.hidden_tensor(layer)?;
                let d = h.dim(1)?;
                if direction.len() != d {
                    return Err(GradError::Input(format!(
                        "direction has {} values, the model's width is {d}",
                        direction.len()
                    )));
                }
                let c = Tensor::from_vec(direction.to_vec(), (d, 1), &cpu())?;
                Ok(h.index_select(&self.last_rows()?, 0)?
                    .matmul(&c)?
                    .flatten_all()?)
            }
            Target::LogOdds { ids } => {
                let lg = self.logits.as_ref().ok_or_else(|| {
                    GradError::Input("log-odds target without logits in the forward".into())
                })?;
                log_odds(lg, ids)
            }
        }
    }

    /// The gradient of the target, summed over sequences, with respect to the input states
    /// (the embeddings, or `h_S` for a run from layer S): `[n_rows, d]` row-major. candle
    /// keeps gradients of leaves only, so the gradient at a layer is had by starting there.
    pub fn input_grad(&self, target: &Target) -> Result<Vec<f32>> {
        let v = self.target_values(target)?;
        let seed = match target {
            // c·h / stop_grad(c·h): the gradient at h is c/(c·h).
            Target::Projection { .. } => {
                let denom = v.detach().to_vec1::<f32>()?;
                let inv: Vec<f32> = denom
                    .iter()
                    .map(|&x| {
                        let x = if x.abs() < 1e-12 {
                            1e-12f32.copysign(x)
                        } else {
                            x
                        };
                        1.0 / x
                    })
                    .collect();
                let inv = Tensor::from_vec(inv, v.dims(), &cpu())?;
                (&v * &inv)?.sum_all()?
            }
            Target::LogOdds { .. } => v.sum_all()?,
        };
        let grads = seed.backward()?;
        let x = self.input.as_tensor();
        match grads.get(x) {
            Some(g) => crate::diff::to_vec(g),
            None => Ok(vec![0.0; x.elem_count()]),
        }
    }

    /// Gradient × input summed over the width, per packed row: the relevance of each input
    /// token (or state) for the target.
    pub fn relevance(&self, target: &Target) -> Result<Vec<f32>> {
        let g = self.input_grad(target)?;
        let x = self.input()?;
        let d = self.model.config.hidden_size;
        Ok(x.chunks(d)
            .zip(g.chunks(d))
            .map(|(xr, gr)| {
                xr.iter()
                    .zip(gr)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>() as f32
            })
            .collect())
    }
}

/// `logsumexp(logits[:, ids]) − logsumexp(logits[:, others])` per row, differentiable.
fn log_odds(logits: &Tensor, ids: &[u32]) -> Result<Tensor> {
    let v = logits.dim(1)?;
    if ids.is_empty() || ids.iter().any(|&t| t as usize >= v) {
        return Err(GradError::Input(format!(
            "token set {ids:?}: expected distinct ids below the vocabulary size {v}"
        )));
    }
    let mut inside = vec![false; v];
    for &t in ids {
        inside[t as usize] = true;
    }
    let others: Vec<u32> = (0..v as u32).filter(|&t| !inside[t as usize]).collect();
    let pick = |set: Vec<u32>| -> Result<Tensor> {
        let n = set.len();
        Ok(logits.index_select(&Tensor::from_vec(set, n, &cpu())?, 1)?)
    };
    Ok((logsumexp(&pick(ids.to_vec())?)? - logsumexp(&pick(others)?)?)?)
}

fn logsumexp(x: &Tensor) -> Result<Tensor> {
    // The shift is a constant for the gradient (it cancels exactly).
    let m = x.max_keepdim(1)?.detach();
    Ok((x.broadcast_sub(&m)?.exp()?.sum_keepdim(1)?.log()? + m)?.flatten_all()?)
}
