//! What several hidden-dims tools share, as a library (no command line, no printing):
//!
//! - [`classify`]: components as refusal classifiers, and the probe baselines;
//! - [`judge`]: the refusal judge of generated answers (phrase matching);
//! - [`refusal`]: the first-token refusal score (log-odds of a refusal-token set).
#![deny(missing_docs)]

mod error;
pub mod classify;
pub mod judge;
pub mod refusal;

pub use error::{AnalysisError, Result};
