//! A plain row-major `f64` matrix: rows are prompts, columns hidden dimensions.

use crate::error::{LinalgError, Result};

/// Dense row-major `f64` matrix. Row `i` is `data[i * cols..(i + 1) * cols]`.
///
/// Row-major `n x d` is the same memory as a column-major `d x n` matrix, which is how the
/// faer calls in [`crate::svd`] see it without a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// Wraps `data` (row-major). Errors if the length is not `rows * cols`.
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Result<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(LinalgError::Length {
                what: "matrix data",
                rows,
                cols,
                len: data.len(),
            });
        }
        Ok(Matrix { rows, cols, data })
    }

    /// All-zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Widens a row-major `f32` (or copies an `f64`) slice, checking that every value is
    /// finite.
    pub fn from_slice<T: Element>(rows: usize, cols: usize, data: &[T]) -> Result<Self> {
        check_len("matrix data", rows, cols, data.len())?;
        check_finite(rows, cols, data)?;
        Ok(Matrix {
            rows,
            cols,
            data: data.iter().map(|&x| x.into()).collect(),
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The row-major values.
    pub fn as_slice(&self) -> &[f64] {
        &self.data
    }

    /// The row-major values, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f64] {
        &mut self.data
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Row `i`, mutable.
    pub fn row_mut(&mut self, i: usize) -> &mut [f64] {
        &mut self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Iterator over the rows.
    pub fn row_iter(&self) -> impl Iterator<Item = &[f64]> {
        // `max(1)` keeps `chunks_exact` happy for a 0-column matrix (which has no data).
        self.data.chunks_exact(self.cols.max(1))
    }

    /// Consumes the matrix, returning its row-major values.
    pub fn into_vec(self) -> Vec<f64> {
        self.data
    }

    /// Values narrowed to `f32` (for writing tensors).
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&x| x as f32).collect()
    }

    /// The mean of the rows (`[cols]`), accumulated in order in `f64`.
    pub fn mean_row(&self) -> Vec<f64> {
        let mut mean = vec![0.0; self.cols];
        for row in self.row_iter() {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += x;
            }
        }
        if self.rows > 0 {
            let inv = 1.0 / self.rows as f64;
            mean.iter_mut().for_each(|m| *m *= inv);
        }
        mean
    }

    /// Subtracts `v` from every row.
    pub fn sub_row(&mut self, v: &[f64]) {
        assert_eq!(v.len(), self.cols, "sub_row: vector length");
        let cols = self.cols.max(1);
        for row in self.data.chunks_exact_mut(cols) {
            for (x, &m) in row.iter_mut().zip(v) {
                *x -= m;
            }
        }
    }

    /// Squared Frobenius norm.
    pub fn frobenius_sq(&self) -> f64 {
        self.data.iter().map(|x| x * x).sum()
    }

    /// Errors on the first NaN or infinite value, naming its row and column.
    pub fn check_finite(&self) -> Result<()> {
        match self.data.iter().position(|x| !x.is_finite()) {
            None => Ok(()),
            Some(p) => Err(LinalgError::NonFinite {
                row: p / self.cols.max(1),
                col: p % self.cols.max(1),
                value: self.data[p],
            }),
        }
    }
}

/// Errors if `len != rows * cols`.
pub(crate) fn check_len(what: &'static str, rows: usize, cols: usize, len: usize) -> Result<()> {
    if rows.checked_mul(cols) != Some(len) {
        return Err(LinalgError::Length {
            what,
            rows,
            cols,
            len,
        });
    }
    Ok(())
}

/// An input element type: `f32` (activation dumps) or `f64` (numpy's default), widened to
/// `f64` exactly.
pub trait Element: Copy + Into<f64> + Send + Sync {}
impl Element for f32 {}
impl Element for f64 {}

/// Errors on the first NaN or infinite value of a row-major matrix, naming its row and
/// column (0-based).
pub fn check_finite<T: Element>(rows: usize, cols: usize, data: &[T]) -> Result<()> {
    check_len("matrix data", rows, cols, data.len())?;
    match data.iter().position(|&x| !x.into().is_finite()) {
        None => Ok(()),
        Some(p) => Err(LinalgError::NonFinite {
            row: p / cols.max(1),
            col: p % cols.max(1),
            value: data[p].into(),
        }),
    }
}

/// Dot product, accumulated in order.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Euclidean norm.
pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `|cos|` of the angle between two vectors; 0 when either is zero.
pub fn abs_cos(a: &[f64], b: &[f64]) -> f64 {
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    // Rounding can push |cos| of (nearly) parallel unit vectors a hair past 1.
    (dot(a, b).abs() / (na * nb)).min(1.0)
}
