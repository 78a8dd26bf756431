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
//!
//! # From another crate
//! Read or write the study's files without its tools: [`prompts::PromptTable::read`] for a
//! prompt CSV, [`tensors::TensorFile`] for an activation or components file (any of the three
//! formats, or a pipe), [`tensors::resid_name`] and its siblings for the tensor names, and
//! [`atomic`] for writes that never leave half a file. `examples/dump-layer` in the
//! repository writes an activation file with it.

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
