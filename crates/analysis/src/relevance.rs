//! Component relevance across layers (the paper's `plrp_relevance_components.py`): how much
//! each component of a source layer S feeds a component of a later layer L at the last
//! prompt token.
//!
//! For target component `c_j` of layer L, the seed at `h_L` (last position) is
//! `c_j/(c_j·h_L)` and `g` is its gradient at `h_S` (last position) under the chosen rules
//! (AttnLRP: the reference's). Decomposing `h_S = Σ_k z_k v_k + r` on the top source
//! components, `R(k→j) = z_k (v_k·g)` with `z_k = v_k·h_S`, which is lxt's `linear_epsilon`
//! relevance of the reference in gradient form. One plain forward per batch gives every source
//! layer's states; one traced forward from S per pair, one backward per target component.

use crate::error::{AnalysisError, Result};
use hd_grad::attrib::{Batch, Target, Traced};
use hd_grad::diff::DiffModel;
use hd_grad::Rules;

/// One layer pair to explain.
#[derive(Debug, Clone)]
pub struct Pair<'a> {
    /// Source hidden-state index S.
    pub source: usize,
    /// Target hidden-state index L > S.
    pub target: usize,
    /// Source components `v_k` (unit rows, `[k_S][d]`).
    pub source_dirs: &'a [Vec<f32>],
    /// Target components `c_j` (`[k_L][d]`).
    pub target_dirs: &'a [Vec<f32>],
}

/// `R(k→j)` of every prompt: `values[prompt][k * k_L + j]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRelevance {
    /// Source components.
    pub k_source: usize,
    /// Target components.
    pub k_target: usize,
    /// Per prompt, row-major `[k_source, k_target]`.
    pub values: Vec<Vec<f64>>,
}

/// Relevances of one layer pair for every sequence (token ids), `batch` sequences per
/// traced forward; `progress` gets the number of sequences done.
pub fn pair_relevance(
    model: &DiffModel,
    seqs: &[Vec<u32>],
    pair: &Pair,
    rules: Rules,
    batch: usize,
    progress: impl FnMut(usize),
) -> Result<PairRelevance> {
    let mut all = pairs_relevance(
        model,
        seqs,
        std::slice::from_ref(pair),
        rules,
        batch,
        progress,
    )?;
    Ok(all.remove(0))
}

/// [`pair_relevance`] of several pairs: per batch of sequences, one plain forward gives the
/// states of every source layer, and each pair is traced from its own (the lower layers are
/// not re-run per pair). Results in the order of `pairs`.
pub fn pairs_relevance(
    model: &DiffModel,
    seqs: &[Vec<u32>],
    pairs: &[Pair],
    rules: Rules,
    batch: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<PairRelevance>> {
    for pair in pairs {
        check_pair(model, pair)?;
    }
    let d = model.config.hidden_size;
    let sources: Vec<usize> = pairs.iter().map(|p| p.source).collect();
    let mut out: Vec<PairRelevance> = pairs
        .iter()
        .map(|p| PairRelevance {
            k_source: p.source_dirs.len(),
            k_target: p.target_dirs.len(),
            values: Vec::with_capacity(seqs.len()),
        })
        .collect();
    let b = batch.max(1);
    for (bi, chunk) in seqs.chunks(b).enumerate() {
        let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        // Only the last positions are read: any common prefix is run once.
        let states = Batch::new(model, &refs, &sources, usize::MAX)?;
        for (pair, res) in pairs.iter().zip(out.iter_mut()) {
            let t = Traced::run_from(model, &states, pair.source, &[pair.target], false, rules)?;
            let h = t.input()?;
            let kt = res.k_target;
            let mut per: Vec<Vec<f64>> = vec![vec![0.0; res.k_source * kt]; chunk.len()];
            for (j, c) in pair.target_dirs.iter().enumerate() {
                let g = t.input_grad(&Target::Projection {
                    layer: pair.target,
                    direction: c,
                })?;
                for (i, p) in per.iter_mut().enumerate() {
                    let r = t.row(i, t.lengths()[i] - 1);
                    let (hr, gr) = (&h[r * d..(r + 1) * d], &g[r * d..(r + 1) * d]);
                    for (k, v) in pair.source_dirs.iter().enumerate() {
                        p[k * kt + j] = dot64(v, hr) * dot64(v, gr);
                    }
                }
            }
            res.values.extend(per);
        }
        progress((bi * b + chunk.len()).min(seqs.len()));
    }
    Ok(out)
}

fn check_pair(model: &DiffModel, pair: &Pair) -> Result<()> {
    let nl = model.config.num_layers;
    let d = model.config.hidden_size;
    if pair.source >= pair.target || pair.target > nl {
        return Err(AnalysisError::Input(format!(
            "layer pair {} -> {}: expected source < target <= {nl}",
            pair.source, pair.target
        )));
    }
    if let Some(v) = pair
        .source_dirs
        .iter()
        .chain(pair.target_dirs)
        .find(|v| v.len() != d)
    {
        return Err(AnalysisError::Input(format!(
            "a component has {} values, the model's width is {d}",
            v.len()
        )));
    }
    Ok(())
}

fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Mean, sample standard deviation (0 for one value) and count of `xs`.
pub fn mean_std(xs: impl Iterator<Item = f64>) -> (f64, f64, usize) {
    let v: Vec<f64> = xs.collect();
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, 0);
    }
    let m = v.iter().sum::<f64>() / n as f64;
    let s = if n > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    (m, s, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_std() {
        let (m, s, n) = mean_std([1.0, 2.0, 3.0, 4.0].into_iter());
        assert_eq!((m, n), (2.5, 4));
        assert!((s - 1.2909944487358056).abs() < 1e-12);
        assert_eq!(mean_std([5.0].into_iter()), (5.0, 0.0, 1));
        assert_eq!(mean_std(std::iter::empty()).2, 0);
    }
}
