//! `dir-interact`: how the directions of the safety residual space drive each other, and
//! what removing one does.
//!
//! - [`relevance`]: component relevance between layers (AttnLRP, the paper's
//!   `plrp_relevance_components.py`), for one layer pair or every adjacent pair (a network);
//! - [`sweep`]: interventions on the tuned model (subtract or project out a component
//!   direction), beside no intervention, a random direction and the difference-in-means
//!   baseline, with first-token and generated pass rates, the dominant direction's
//!   projection and the benign perplexity; candidates ranked first by a first-order estimate.

pub mod common;
pub mod relevance;
pub mod sweep;
