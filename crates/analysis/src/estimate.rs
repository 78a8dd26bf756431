//! The first-order estimate of every candidate intervention at once.
//!
//! For each prompt, one backward pass gives `g_ℓ = ∂score/∂h_ℓ` at the last prompt token for
//! every hidden-state index ℓ (score: the refusal log-odds of the next token, exact
//! gradients). An edit of the last prompt token `h_ℓ ← h_ℓ + δ_ℓ` at layers A then changes
//! the score by about `Σ_{ℓ∈A} g_ℓ·δ_ℓ`: `−α Σ g_ℓ·v` for `sub`, `−α Σ (h_ℓ·v̂)(g_ℓ·v̂)` for
//! `project`. candle keeps gradients of leaves only, so the backward runs block by block:
//! each block is re-run from its input as a leaf and given the gradient of its output.

use crate::error::{AnalysisError, Result};
use candle_core::{Tensor, Var};
use hd_grad::attrib::{Target, Traced};
use hd_grad::diff::{DiffModel, DiffRequest, Packed};
use hd_grad::Rules;

/// Per prompt of a batch: `g[ℓ]` and `h[ℓ]` at the last prompt token, ℓ in `0..L`.
#[derive(Debug, Clone)]
pub struct LastTokenGrads {
    /// `∂score/∂h_ℓ`, `[L][d]`.
    pub g: Vec<Vec<f32>>,
    /// `h_ℓ`, `[L][d]`.
    pub h: Vec<Vec<f32>>,
}

/// Gradients of the refusal log-odds (`ids`) at every layer's last-token state, per prompt.
pub fn last_token_grads(
    model: &DiffModel,
    seqs: &[Vec<u32>],
    ids: &[u32],
) -> Result<Vec<LastTokenGrads>> {
    let nl = model.config.num_layers;
    let d = model.config.hidden_size;
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let packed = Packed::new(&refs);
    let last: Vec<usize> = (0..seqs.len())
        .map(|i| packed.row(i, seqs[i].len() - 1))
        .collect();
    let states = model
        .forward(
            &packed,
            &DiffRequest {
                capture: (0..nl).collect(),
                ..Default::default()
            },
        )?
        .hidden;
    let top = Traced::run(model, &refs, nl - 1, &[], true, Rules::Exact)?;
    let cpu = candle_core::Device::Cpu;
    let mut grad = Tensor::from_vec(
        top.input_grad(&Target::LogOdds { ids })?,
        (packed.n_rows(), d),
        &cpu,
    )
    .map_err(ce)?;
    let mut per_layer: Vec<Vec<f32>> = vec![Vec::new(); nl];
    per_layer[nl - 1] = hd_grad::diff::to_vec(&grad)?;
    for l in (0..nl - 1).rev() {
        let h = Var::from_tensor(&states[l].1).map_err(ce)?;
        let out = model.forward(
            &packed,
            &DiffRequest {
                capture: vec![l + 1],
                start: Some((l, h.as_tensor().clone())),
                ..Default::default()
            },
        )?;
        let loss = (&out.hidden[0].1 * &grad)
            .and_then(|t| t.sum_all())
            .map_err(ce)?;
        let gs = loss.backward().map_err(ce)?;
        grad = match gs.get(h.as_tensor()) {
            Some(g) => g.clone(),
            None => {
                Tensor::zeros((packed.n_rows(), d), candle_core::DType::F32, &cpu).map_err(ce)?
            }
        };
        per_layer[l] = hd_grad::diff::to_vec(&grad)?;
    }
    let hs: Vec<Vec<f32>> = states
        .iter()
        .map(|(_, t)| hd_grad::diff::to_vec(t))
        .collect::<std::result::Result<_, _>>()?;
    Ok(last
        .iter()
        .map(|&r| LastTokenGrads {
            g: per_layer
                .iter()
                .map(|g| g[r * d..(r + 1) * d].to_vec())
                .collect(),
            h: hs.iter().map(|h| h[r * d..(r + 1) * d].to_vec()).collect(),
        })
        .collect())
}

/// The estimated change of the score of one prompt for an edit of the last prompt token at
/// `layers` with direction `v`, scale `alpha` (`project`: `v` normalised).
pub fn estimate(g: &LastTokenGrads, layers: &[usize], v: &[f32], alpha: f64, project: bool) -> f64 {
    let dot =
        |a: &[f32], b: &[f32]| -> f64 { a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum() };
    let nn = dot(v, v);
    layers
        .iter()
        .filter(|&&l| l < g.g.len())
        .map(|&l| {
            if project {
                if nn > 0.0 {
                    -alpha * dot(&g.h[l], v) * dot(&g.g[l], v) / nn
                } else {
                    0.0
                }
            } else {
                -alpha * dot(&g.g[l], v)
            }
        })
        .sum()
}

fn ce(e: candle_core::Error) -> AnalysisError {
    AnalysisError::Input(format!("gradient of the refusal score: {e}"))
}
