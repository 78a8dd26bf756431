//! `dir-label`: what each direction of the safety residual space means (the paper's
//! "dir-label" stage), one subcommand per question.
//!
//! - [`classify`]: each component as a refusal classifier, beside a logistic-regression
//!   probe, the reference's pooled probe and the difference in means, layer by layer, and
//!   how each prompt category projects on each component.
//! - [`tokens`]: which input tokens drive each component (AttnLRP token maps on the
//!   `hd-grad` engine), the top tokens per component and an editable labels table.
//!
//! The command line (`src/args.rs`) only builds each subcommand's `Options` and calls its
//! `run`; the math is in `hd_analysis`.

#![deny(missing_docs)]

pub mod classify;
pub mod tokens;
