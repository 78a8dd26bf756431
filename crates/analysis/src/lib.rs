//! What several hidden-dims tools share, as a library (no command line, no printing):
//!
//! - [`classify`]: components as refusal classifiers, and the probe baselines;
//! - [`estimate`]: the first-order estimate of every candidate intervention (gradients of the
//!   refusal score at every layer, one backward per batch);
//! - [`intervene`]: edits of the residual stream and what they do (refusal score, answers,
//!   read-out projection, teacher-forced perplexity);
//! - [`judge`]: the refusal judge of generated answers (phrase matching);
//! - [`prune`]: trigger-token pruning (attribution-guided deletion and its controls);
//! - [`refusal`]: the first-token refusal score (log-odds of a refusal-token set);
//! - [`relevance`]: component relevance across layers (which earlier direction feeds which
//!   later one);
//! - [`stats`]: rank correlation and the Wilson interval of a rate;
//! - [`tokens`]: token attribution maps of components (AttnLRP or gradient × input) and the
//!   reference's greedy top-token cut.
//!
//! # From another crate
//! The pieces of the study that work on any `hd-lm` model and plain vectors: judge answers
//! as refusals ([`judge`]), score a prompt's refusal at its first token ([`refusal`]), test a
//! direction as a refusal classifier ([`classify`]), edit the residual stream and measure the
//! effect ([`intervene`]).
#![deny(missing_docs)]

pub mod classify;
mod error;
pub mod estimate;
pub mod intervene;
pub mod judge;
pub mod prune;
pub mod refusal;
pub mod relevance;
pub mod stats;
pub mod tokens;

pub use error::{AnalysisError, Result};

impl From<hd_grad::GradError> for AnalysisError {
    fn from(e: hd_grad::GradError) -> Self {
        AnalysisError::Input(e.to_string())
    }
}
