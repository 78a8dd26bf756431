//! What both subcommands share: reading component directions with their checks, component
//! names, prompt categories and CSV formatting.

use std::path::Path;

use anyhow::Result;
use hd_formats::components::{self, ComponentId};
use hd_formats::prompts::PromptTable;
use hd_formats::tensors::TensorFile;

/// `L{layer}-C{k}` with 1-based `k` (the paper's naming) of 0-based row `k0`.
pub fn comp_name(layer: usize, k0: usize) -> String {
    ComponentId::from_row(layer, k0).to_string()
}

/// Parses `L14-C6` into (14, 5) (0-based component).
pub fn parse_comp_name(s: &str) -> Option<(usize, usize)> {
    s.parse::<ComponentId>().ok().map(|c| (c.layer, c.row()))
}

/// The first `k` directions of `components.{layer}` as rows of width `d`, checked by
/// [`hd_formats::components::read_directions`] (shape against the model, `k` in range,
/// finite, unit rows); `_path` is the file's, already in `file`.
pub fn read_dirs(
    file: &TensorFile,
    _path: &Path,
    layer: usize,
    k: usize,
    d: usize,
) -> Result<Vec<Vec<f32>>> {
    Ok(components::read_first(file, layer, k, d)?)
}

/// The `category` of each row (`all` when the table has no such column).
pub fn categories(table: &PromptTable) -> Vec<String> {
    (0..table.len())
        .map(|i| table.get(i, "category").unwrap_or("all").to_string())
        .collect()
}

/// Categories in first-seen order.
pub fn category_order(cats: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in cats {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

pub use hd_formats::csvout::num;

/// [`hd_formats::csvout::csv_bytes`], as this crate's result.
pub fn csv_bytes(header: &str, rows: impl IntoIterator<Item = Vec<String>>) -> Result<Vec<u8>> {
    Ok(hd_formats::csvout::csv_bytes(header, rows)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_comp_name("L14-C6"), Some((14, 5)));
        assert_eq!(comp_name(14, 5), "L14-C6");
        for bad in ["L14-C0", "14-C6", "L14C6", "Lx-C1", "L1-C", ""] {
            assert_eq!(parse_comp_name(bad), None, "{bad}");
        }
    }
}
