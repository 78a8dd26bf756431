//! What both subcommands share: reading component directions with their checks, component
//! names, prompt categories and CSV formatting.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use hd_formats::prompts::PromptTable;
use hd_formats::tensors::{components_name, TensorFile};

/// `L{layer}-C{k}` with 1-based `k` (the paper's naming).
pub fn comp_name(layer: usize, k0: usize) -> String {
    format!("L{layer}-C{}", k0 + 1)
}

/// Parses `L14-C6` into (14, 5) (0-based component).
pub fn parse_comp_name(s: &str) -> Option<(usize, usize)> {
    let rest = s.strip_prefix('L')?;
    let (l, c) = rest.split_once("-C")?;
    let (l, c): (usize, usize) = (l.parse().ok()?, c.parse().ok()?);
    (c >= 1).then_some((l, c - 1))
}

/// The first `k` directions of `components.{layer}` as rows of width `d`, checked: present,
/// `[k_file, d]` with `k <= k_file`, finite; the error names the file and tensor.
pub fn read_dirs(
    file: &TensorFile,
    path: &Path,
    layer: usize,
    k: usize,
    d: usize,
) -> Result<Vec<Vec<f32>>> {
    let name = components_name(layer);
    let t = file
        .get(&name)
        .map_err(|_| anyhow!("{}: no tensor '{name}'", path.display()))?;
    if t.shape.len() != 2 || t.shape[1] != d {
        bail!(
            "{}: tensor '{name}' has shape {:?}, expected [_, {d}] (the model's hidden size)",
            path.display(),
            t.shape
        );
    }
    if k > t.shape[0] {
        bail!(
            "{}: tensor '{name}' holds {} components, {k} asked for",
            path.display(),
            t.shape[0]
        );
    }
    let v = t.to_f32_vec();
    if let Some(i) = v[..k * d].iter().position(|x| !x.is_finite()) {
        bail!(
            "{}: tensor '{name}' has a non-finite value in component {}",
            path.display(),
            i / d + 1
        );
    }
    Ok(v[..k * d].chunks(d).map(<[f32]>::to_vec).collect())
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

/// Fixed six decimals; an undefined value is an empty cell.
pub fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        String::new()
    }
}

/// A CSV with `header` (comma-separated) and `rows`, `\n` line ends.
pub fn csv_bytes(header: &str, rows: impl IntoIterator<Item = Vec<String>>) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(header.split(','))?;
    for r in rows {
        w.write_record(&r)?;
    }
    w.into_inner().map_err(|e| anyhow!("{e}"))
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
