//! The training side of hidden-dims: what `safety-tune` is made of, and the differentiable
//! forward the attribution stages build on.
//!
//! - [`ops`]: fused CPU ops (projection, LoRA projection, RMSNorm, RoPE + causal GQA
//!   attention, SwiGLU, cross-entropy) as candle custom ops with hand-written backward
//!   passes — candle's own fused kernels have none — each checked against finite
//!   differences.
//! - [`diff`]: the decoder written with those ops over packed sequences ([`diff::DiffModel`]);
//!   it returns hidden states as candle tensors that carry gradients, can start from a given
//!   hidden state, and carries LoRA adapters or trainable weights.
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
pub mod diff;
mod error;
pub mod export;
pub mod ops;
pub mod optim;
pub mod rng;
pub mod testing;
pub mod train;

pub use error::{Result, TrainError};
