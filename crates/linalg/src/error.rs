//! The one error type of this crate.

/// What can go wrong in the math. Messages say what was expected and what was found; the
/// caller adds the file and the layer.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum LinalgError {
    /// A matrix has no rows or no columns.
    #[error("empty matrix: {rows} rows x {cols} columns, expected at least 1 x 1")]
    Empty {
        /// Rows found.
        rows: usize,
        /// Columns found.
        cols: usize,
    },
    /// A value is NaN or infinite.
    #[error("row {row}, column {col} is {value}, expected a finite number")]
    NonFinite {
        /// 0-based row (prompt) index.
        row: usize,
        /// 0-based column (hidden dimension) index.
        col: usize,
        /// The offending value.
        value: f64,
    },
    /// Two matrices that must agree in shape do not.
    #[error("shape mismatch: {what} is [{found_rows}, {found_cols}], expected [{rows}, {cols}]")]
    Shape {
        /// Which operand.
        what: &'static str,
        /// Expected rows.
        rows: usize,
        /// Expected columns.
        cols: usize,
        /// Rows found.
        found_rows: usize,
        /// Columns found.
        found_cols: usize,
    },
    /// A slice length does not match the stated shape.
    #[error("{what} has {len} values, expected {rows} x {cols} = {}", rows * cols)]
    Length {
        /// Which operand.
        what: &'static str,
        /// Stated rows.
        rows: usize,
        /// Stated columns.
        cols: usize,
        /// Values found.
        len: usize,
    },
    /// A contrast needs at least one row on each side.
    #[error("contrast needs at least one {side} row, found none")]
    NoRows {
        /// `"harmful"` or `"harmless"`.
        side: &'static str,
    },
    /// An iterative decomposition did not converge (never seen on finite input).
    #[error("{0} did not converge")]
    NoConvergence(&'static str),
    /// A parameter is out of its range.
    #[error("{0}")]
    Parameter(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = LinalgError> = std::result::Result<T, E>;
