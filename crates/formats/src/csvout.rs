//! The CSV tables the analysis tools write: fixed six decimals, an empty cell where a figure
//! is undefined, `\n` line ends.

use crate::Error;

/// Fixed six decimals; an undefined (non-finite) value is an empty cell.
pub fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        String::new()
    }
}

/// A CSV with `header` (comma-separated names) and `rows`, `\n` line ends.
pub fn csv_bytes(
    header: &str,
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<Vec<u8>, Error> {
    let fail = |e: &dyn std::fmt::Display| Error::invalid("<csv>", e.to_string());
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(header.split(',')).map_err(|e| fail(&e))?;
    for r in rows {
        w.write_record(&r).map_err(|e| fail(&e))?;
    }
    w.into_inner().map_err(|e| fail(&e))
}
