//! The math of hidden-dims: shift matrices, their SVD, effective rank, and how directions
//! drift across layers. Pure functions over in-memory `f64` matrices; no file IO, no printing.
//!
//! # Pieces
//!
//! - [`shift`]: build the per-prompt shift matrix `D` (`n x d`) from base and tuned
//!   activations (`identity`, `lstsq`) or from one model's harmful and harmless rows.
//! - [`svd`]: all singular values and the top `k` right singular vectors of `D`, through the
//!   smaller Gram matrix plus a Rayleigh–Ritz refinement, and the sign convention.
//! - [`spectrum`]: explained ratios and the paper's effective rank.
//! - [`align`]: `|cos|` between components of different layers.
//!
//! # From another crate
//! Everything works on in-memory matrices ([`matrix`]), so the safety residual space of any
//! two sets of activations is a few calls: [`shift`], then [`svd`], then [`spectrum`];
//! nothing here knows a model or a file.
//!
//! # Numbers
//!
//! Inputs are `f32` (or `f64`) activations; everything is computed in `f64`. Results are
//! deterministic for a given CPU and parallelism: the `*_par` functions with [`Par::Seq`]
//! give the same bits whatever the thread count; with `Par::rayon(n)` they depend on `n`.
#![deny(missing_docs)]

pub mod align;
pub mod error;
pub mod matrix;
pub mod shift;
pub mod spectrum;
pub mod svd;

pub use error::{LinalgError, Result};
/// faer's parallelism switch, for the `*_par` functions: `Par::Seq` or `Par::rayon(n)`.
pub use faer::Par;
pub use matrix::Matrix;
