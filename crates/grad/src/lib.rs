//! The differentiable decoder of hidden-dims, shared by training (`hd-train`) and attribution
//! (`dir-label`, `dir-interact`, `token-prune`).
//!
//! - [`ops`]: fused CPU ops (projection, LoRA projection, RMSNorm, RoPE + causal GQA
//!   attention, SwiGLU and GeGLU, cross-entropy) as candle custom ops with hand-written
//!   backward passes — candle's own fused kernels have none — each checked against finite
//!   differences. The backward pass is exact, or follows the linearised AttnLRP rules
//!   ([`Rules`]).
//! - [`diff`]: the decoder written with those ops over packed sequences ([`diff::DiffModel`]);
//!   it returns hidden states as candle tensors that carry gradients, can start from a given
//!   hidden state, and carries LoRA adapters or trainable weights.
//!
//! - [`attrib`]: gradient × input attribution of a component projection or the refusal
//!   log-odds to input tokens or to an intermediate layer's states, on one saved forward.
//!
//! No printing and no command line.
//!
//! # From another crate
//! What an outside user gets: gradients through a Llama, Qwen2/3, Mistral, Gemma 2/3 or Phi-3
//! decoder on the CPU without PyTorch ([`diff::DiffModel`] over an `hd-lm` model's weights),
//! and token or layer
//! attributions of a direction or of the refusal log-odds under exact or AttnLRP rules
//! ([`attrib`]), checked against the lxt reference implementation (AttnLRP is refused where
//! lxt defines no rule: Gemma 2's soft-capping).
#![deny(missing_docs)]

pub mod attrib;
pub mod diff;
mod error;
pub mod memory;
pub mod ops;
/// The seeded generator, now in its own crate; re-exported for the decoder's callers.
pub use hd_rng as rng;

pub use error::{GradError, Result};
pub use ops::Rules;
