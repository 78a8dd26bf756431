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
//!
//! # From another crate
//! A seeded, resumable LoRA or full fine-tuning loop (SFT or DPO) of a Llama/Qwen2 model on
//! the CPU, and export of the result as a Hugging Face directory that `hd-lm` and
//! transformers load; the `safety-tune` tool's source is the worked example.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod data;
mod error;
pub mod export;
pub mod optim;
pub mod train;

pub use error::{Result, TrainError};
