//! The training side of hidden-dims: what `safety-tune` is made of, on top of the
//! differentiable decoder of `hd-grad`.
//!
//! - [`data`]: training examples (refusal or guard targets, loss on target tokens only).
//! - [`optim`], [`train`]: AdamW with warm-up and cosine decay, gradient clipping, the
//!   seeded training loop.
//! - [`checkpoint`]: save / resume, refusing a checkpoint of another run.
//! - [`export`]: a Hugging Face directory with the adapters merged.
//!
//! No printing and no command line: the `safety-tune` tool wires these together.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod data;
mod error;
pub mod export;
pub mod optim;
pub mod train;

pub use error::{Result, TrainError};
