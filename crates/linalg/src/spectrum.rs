//! Explained variance and the paper's effective rank.
//!
//! The paper's "eigenvalues" are `λ_i = s_i² / (n - 1)` (the covariance eigenvalues of the
//! uncentred shifts). Every quantity here is a ratio of sums of `λ`, so the `1 / (n - 1)`
//! cancels; we work on `s²` directly, which also keeps `n = 1` well defined.
//!
//! # Floating point at exactly `τ`
//!
//! Each cumulative share is one division, `(Σ_{j<=i} s_j²) / (Σ_j s_j²)`, of two running sums
//! taken in the same order, never a running sum of rounded shares. A correctly rounded division
//! of two exactly representable sums gives the double nearest to the true share, which is the
//! double a decimal literal such as `0.6` parses to. So hand cases whose share is exactly `τ`
//! (e.g. `s = [2, 1, 1, 1, 1, 1, 1]`, shares `0.4, 0.5, ..., 1.0`) reach `τ` where the
//! mathematics says they do, with no tolerance. The last share is exactly `1`.

use crate::error::{LinalgError, Result};

/// One row of `spectrum.csv` (without the layer and component columns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpectrumEntry {
    /// `s_i`.
    pub singular_value: f64,
    /// `λ_i / Σλ`.
    pub explained_ratio: f64,
    /// `Σ_{j<=i} λ_j / Σλ`.
    pub cumulative: f64,
}

/// Explained ratio and cumulative share of each singular value (all zeros when every
/// singular value is zero).
pub fn spectrum(singular_values: &[f64]) -> Vec<SpectrumEntry> {
    let total: f64 = singular_values.iter().map(|s| s * s).sum();
    let mut running = 0.0;
    singular_values
        .iter()
        .map(|&s| {
            let l = s * s;
            running += l;
            let (explained_ratio, cumulative) = if total > 0.0 {
                (l / total, running / total)
            } else {
                (0.0, 0.0)
            };
            SpectrumEntry {
                singular_value: s,
                explained_ratio,
                cumulative,
            }
        })
        .collect()
}

/// The paper's effective rank: the smallest `k` (1-based) such that the top `k` values of
/// `λ = s²/(n-1)` hold at least a share `τ` of `Σλ`, counting only `λ > 0`; 0 when there
/// are none. `singular_values` must be non-increasing (as [`crate::svd::top_k_svd`] returns
/// them). `τ` must lie in `(0, 1]`.
pub fn effective_rank(singular_values: &[f64], tau: f64) -> Result<usize> {
    check_tau(tau)?;
    let lambda: Vec<f64> = singular_values
        .iter()
        .map(|s| s * s)
        .filter(|&l| l > 0.0)
        .collect();
    let total: f64 = lambda.iter().sum();
    if lambda.is_empty() || total <= 0.0 {
        return Ok(0);
    }
    let mut running = 0.0;
    for (i, l) in lambda.iter().enumerate() {
        running += l;
        if running / total >= tau {
            return Ok(i + 1);
        }
    }
    // Unreachable for τ <= 1 (the last share is total/total = 1), kept total for safety.
    Ok(lambda.len())
}

/// Errors unless `0 < τ <= 1`.
pub fn check_tau(tau: f64) -> Result<()> {
    if tau > 0.0 && tau <= 1.0 {
        Ok(())
    } else {
        Err(LinalgError::Parameter(format!(
            "tau {tau} is out of range, expected 0 < tau <= 1"
        )))
    }
}
