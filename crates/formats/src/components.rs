//! The components file's contract, in one place: the name `L{layer}-C{k}` (1-based `k`, as
//! in the paper and every human-facing output) and the checked read of component
//! directions (present, `[k_file, d]` with `d` the model's width, `k` in range, finite,
//! unit rows).

use std::fmt;
use std::str::FromStr;

use crate::error::fmt_shape;
use crate::tensors::{components_name, Tensor, TensorFile};
use crate::Error;

/// How far a component row's norm may be from 1 (shift-svd writes unit rows to f32
/// precision; a row off by more was not written by it, or was edited).
pub const UNIT_TOLERANCE: f64 = 1e-3;

/// A component of a layer's safety residual space: `L{layer}-C{k}`, `k` 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    /// Hidden-state index of the layer (HF `output_hidden_states` numbering).
    pub layer: usize,
    /// 1-based component number (C1 is the first row of `components.{layer}`).
    pub k: usize,
}

impl ComponentId {
    /// From a layer and a 1-based component number (`k >= 1`; panics on 0).
    pub fn new(layer: usize, k: usize) -> Self {
        assert!(k >= 1, "component numbers are 1-based");
        ComponentId { layer, k }
    }

    /// From a layer and a 0-based row of `components.{layer}`.
    pub fn from_row(layer: usize, row: usize) -> Self {
        ComponentId { layer, k: row + 1 }
    }

    /// The 0-based row of `components.{layer}`.
    pub fn row(self) -> usize {
        self.k - 1
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}-C{}", self.layer, self.k)
    }
}

/// A string that is not a component name; the one message for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadComponentId(pub String);

impl fmt::Display for BadComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "'{}' is not a component name: expected L{{layer}}-C{{k}} with k from 1 (e.g. L14-C6)",
            self.0
        )
    }
}

impl std::error::Error for BadComponentId {}

impl FromStr for ComponentId {
    type Err = BadComponentId;

    /// Only canonical names parse (`L14-C6`; not `L14-C06`, `L+14-C6` or `L14-C0`), so
    /// parse and display round-trip exactly.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadComponentId(s.to_string());
        let (l, k) = s
            .strip_prefix('L')
            .and_then(|r| r.split_once("-C"))
            .ok_or_else(bad)?;
        let canonical = |t: &str| {
            !t.is_empty()
                && t.bytes().all(|b| b.is_ascii_digit())
                && (t == "0" || !t.starts_with('0'))
        };
        if !canonical(l) || !canonical(k) {
            return Err(bad());
        }
        let (layer, k): (usize, usize) =
            (l.parse().map_err(|_| bad())?, k.parse().map_err(|_| bad())?);
        if k == 0 {
            return Err(bad());
        }
        Ok(ComponentId { layer, k })
    }
}

/// Checks rows of `components.{layer}` (row-major, width `d`, the first row being C1):
/// every value finite and every row of unit norm within [`UNIT_TOLERANCE`]. The error names
/// the file, the tensor and the row as `L{layer}-C{k}`.
pub fn check_rows(path: &str, layer: usize, rows: &[f64], d: usize) -> Result<(), Error> {
    check_rows_from(path, ComponentId::new(layer, 1), rows, d)
}

/// [`check_rows`] of rows whose first is `first` (C1 for a whole tensor).
fn check_rows_from(path: &str, first: ComponentId, rows: &[f64], d: usize) -> Result<(), Error> {
    let name = components_name(first.layer);
    for (r, row) in rows.chunks(d.max(1)).enumerate() {
        let id = ComponentId::from_row(first.layer, first.row() + r);
        if let Some(v) = row.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid(
                path,
                format!("tensor '{name}': {id} has a non-finite value ({v}); components must be finite unit rows"),
            ));
        }
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        if (norm - 1.0).abs() > UNIT_TOLERANCE {
            return Err(Error::invalid(
                path,
                format!(
                    "tensor '{name}': {id} has norm {norm:.6}, expected 1 (unit rows, within \
                     {UNIT_TOLERANCE}); a components file as shift-svd writes it has unit rows"
                ),
            ));
        }
    }
    Ok(())
}

/// The directions `ks` (1-based) of `components.{layer}`, each a row of width `d`, checked:
/// the tensor is present and `[k_file, d]` (`d` the model's hidden size), every asked `k`
/// is at most `k_file` (else a usage error: the numbers come from the command line), and the
/// rows asked for are finite and unit ([`check_rows`]).
pub fn read_directions(
    file: &TensorFile,
    layer: usize,
    ks: &[usize],
    d: usize,
) -> Result<Vec<Vec<f32>>, Error> {
    let name = components_name(layer);
    let t = file.get(&name)?;
    if t.shape.len() != 2 || t.shape[1] != d {
        return Err(Error::TensorShape {
            path: file.path.clone(),
            tensor: name,
            found: fmt_shape(&t.shape),
            expected: format!("[_, {d}] (the model's hidden size)"),
        });
    }
    let k_file = t.shape[0];
    if let Some(&k) = ks.iter().filter(|&&k| k == 0 || k > k_file).max() {
        return Err(Error::usage(format!(
            "{}: tensor '{name}' holds {k_file} components (L{layer}-C1..L{layer}-C{k_file}); \
             component {k} was asked for",
            file.path
        )));
    }
    let all = t.to_f64_vec();
    let mut out = Vec::with_capacity(ks.len());
    for &k in ks {
        let row = &all[(k - 1) * d..k * d];
        check_rows_from(&file.path, ComponentId::new(layer, k), row, d)?;
        out.push(row.iter().map(|&v| v as f32).collect());
    }
    Ok(out)
}

/// [`read_directions`] of the first `k` components (C1..Ck).
pub fn read_first(
    file: &TensorFile,
    layer: usize,
    k: usize,
    d: usize,
) -> Result<Vec<Vec<f32>>, Error> {
    let ks: Vec<usize> = (1..=k).collect();
    read_directions(file, layer, &ks, d)
}

/// `sha256:<hex>` of a components tensor's shape and values (as f32, little-endian): names
/// the directions themselves, whichever file or metadata holds them, so that a table made
/// from them can be checked against the file a later tool is given.
pub fn directions_hash(t: &Tensor) -> String {
    let mut bytes = Vec::with_capacity(8 * t.shape.len() + 4 * t.numel());
    for d in &t.shape {
        bytes.extend_from_slice(&(*d as u64).to_le_bytes());
    }
    for v in t.to_f32_vec() {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    crate::meta::sha256_bytes(&bytes)
}
