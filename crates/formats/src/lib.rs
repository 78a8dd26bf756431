//! File contracts of hidden-dims (see DESIGN.md, "Files between stages").
//!
//! - [`prompts`]: the prompt CSV (`id`, `prompt`, any other columns kept).
//! - [`tensors`]: activation and component files in safetensors, `.npz` or `.npy`, and the
//!   one place tensor names (`resid.{i}`, `components.{i}`, ...) are built and parsed.
//! - [`components`]: the component name `L{l}-C{k}` and the checked read of directions.
//! - [`csvout`]: number cells and CSV bytes of the analysis tables.
//! - [`layers`]: the `--layers` spec.
//! - [`meta`]: the standard `__metadata__` keys and the prompt-set check between files.
//! - [`atomic`]: every output is written through [`atomic::write_atomic`].
//!
//! No printing, no command line: errors are one [`Error`] type whose message is one line
//! naming the file and what in it is wrong.

#![deny(missing_docs)]

pub mod atomic;
pub mod components;
pub mod csvout;
pub mod error;
pub mod layers;
pub mod meta;
pub mod prompts;
pub mod tensors;

pub use error::Error;
