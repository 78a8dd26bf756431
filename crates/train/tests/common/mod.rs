#![allow(dead_code)]
pub use hd_train::testing::{tiny_config, tiny_weights};
