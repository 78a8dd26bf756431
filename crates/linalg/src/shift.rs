//! The shift matrix `D` (`n x d`) whose SVD is the safety residual space.
//!
//! Three ways to build it:
//! - [`identity_shift`]: `D = Y - X`, tuned minus base activations (the paper's rank script).
//! - [`lstsq_shift`]: `D = X W - X` with `W` the minimum-norm least-squares solution of
//!   `X W = Y`, as numpy's `lstsq` (the reference scripts' `method="matrix"`).
//! - [`contrast_shift`]: one model, `D = harmful rows - mean of harmless rows` (the
//!   difference-in-means family).
//!
//! All inputs are `f32` activations (checked finite); all arithmetic is `f64`.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};

use crate::error::{LinalgError, Result};
use crate::matrix::{check_finite, check_len, Element, Matrix};

/// Which operand of a shift holds a bad value (for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// The base (`X`) activations.
    Base,
    /// The tuned (`Y`) activations.
    Tuned,
}

/// An error tagged with the operand it was found in.
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftError {
    /// Where the problem is; `None` when it is not about one operand.
    pub operand: Option<Operand>,
    /// What the problem is.
    pub error: LinalgError,
}

impl std::fmt::Display for ShiftError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.operand {
            Some(Operand::Base) => write!(f, "base: {}", self.error),
            Some(Operand::Tuned) => write!(f, "tuned: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for ShiftError {}

fn tag(operand: Operand) -> impl Fn(LinalgError) -> ShiftError {
    move |error| ShiftError {
        operand: Some(operand),
        error,
    }
}

fn untagged(error: LinalgError) -> ShiftError {
    ShiftError {
        operand: None,
        error,
    }
}

fn check_pair<X: Element, Y: Element>(
    rows: usize,
    cols: usize,
    base: &[X],
    tuned: &[Y],
) -> Result<(), ShiftError> {
    if rows == 0 || cols == 0 {
        return Err(untagged(LinalgError::Empty { rows, cols }));
    }
    check_len("base", rows, cols, base.len()).map_err(tag(Operand::Base))?;
    check_len("tuned", rows, cols, tuned.len()).map_err(tag(Operand::Tuned))?;
    check_finite(rows, cols, base).map_err(tag(Operand::Base))?;
    check_finite(rows, cols, tuned).map_err(tag(Operand::Tuned))?;
    Ok(())
}

/// `D = Y - X` for row-major `rows x cols` base `X` and tuned `Y`.
///
/// This is the same IEEE operation as numpy's `Y.astype(float64) - X.astype(float64)`, so
/// `D` equals it bit for bit (and is exact unless the two values differ in scale by > 2^29).
pub fn identity_shift<X: Element, Y: Element>(
    rows: usize,
    cols: usize,
    base: &[X],
    tuned: &[Y],
) -> Result<Matrix, ShiftError> {
    check_pair(rows, cols, base, tuned)?;
    let data = base
        .iter()
        .zip(tuned)
        .map(|(&x, &y)| y.into() - x.into())
        .collect();
    Matrix::new(rows, cols, data).map_err(untagged)
}

/// `D = X W - X`, with `W` the minimum-norm least-squares solution of `X W = Y`.
///
/// `X W = X X⁺ Y = P Y`, where `P = U_r U_rᵀ` projects onto the column space of `X`, spanned
/// by the left singular vectors whose singular value exceeds `rcond * s_max` with
/// `rcond = f64::EPSILON * max(rows, cols)`: numpy's `lstsq(rcond=None)` cut-off (LAPACK
/// `gelsd` treats `s <= rcond * s_max` as zero). `W` itself (`cols x cols`) is never formed.
///
/// The SVD of `X` is a direct one (faer, no Gram matrix), so the rank decision sees the same
/// singular values numpy does. When `rows <= cols` and `X` has full row rank, `P = I` and
/// `D = Y - X` exactly; the code then computes `D = (Y - X) - U_⊥ U_⊥ᵀ Y` with the discarded
/// vectors `U_⊥` (empty in that case). When `rows > cols`, `D = U_r (U_rᵀ Y) - X`.
///
/// Returns `D` and the numerical rank of `X`.
pub fn lstsq_shift<X: Element, Y: Element>(
    rows: usize,
    cols: usize,
    base: &[X],
    tuned: &[Y],
) -> Result<(Matrix, usize), ShiftError> {
    lstsq_shift_par(rows, cols, base, tuned, Par::rayon(0))
}

/// [`lstsq_shift`] with an explicit parallelism (see [`crate::svd::top_k_svd_par`]).
pub fn lstsq_shift_par<X: Element, Y: Element>(
    rows: usize,
    cols: usize,
    base: &[X],
    tuned: &[Y],
    par: Par,
) -> Result<(Matrix, usize), ShiftError> {
    check_pair(rows, cols, base, tuned)?;
    let x = Matrix::from_slice(rows, cols, base).map_err(tag(Operand::Base))?;
    let y = Matrix::from_slice(rows, cols, tuned).map_err(tag(Operand::Tuned))?;
    let xr = MatRef::from_row_major_slice(x.as_slice(), rows, cols);
    let yr = MatRef::from_row_major_slice(y.as_slice(), rows, cols);

    let size = rows.min(cols);
    let (s, u) = left_svd(xr, par)?;
    let s_max = s.first().copied().unwrap_or(0.0);
    let rcond = f64::EPSILON * rows.max(cols) as f64;
    let rank = s.iter().filter(|&&v| v > rcond * s_max).count();

    let mut d = Matrix::zeros(rows, cols);
    {
        let mut dm = faer::MatMut::from_row_major_slice_mut(d.as_mut_slice(), rows, cols);
        if rows <= cols {
            // D = (Y - X) - U_⊥ (U_⊥ᵀ Y)
            for i in 0..rows {
                for j in 0..cols {
                    dm[(i, j)] = yr[(i, j)] - xr[(i, j)];
                }
            }
            if rank < rows {
                let u_perp = u.as_ref().subcols(rank, size - rank);
                let mut t = Mat::<f64>::zeros(size - rank, cols);
                matmul(&mut t, Accum::Replace, u_perp.transpose(), yr, 1.0, par);
                matmul(&mut dm, Accum::Add, u_perp, &t, -1.0, par);
            }
        } else {
            // D = U_r (U_rᵀ Y) - X
            let u_r = u.as_ref().subcols(0, rank);
            let mut t = Mat::<f64>::zeros(rank, cols);
            matmul(&mut t, Accum::Replace, u_r.transpose(), yr, 1.0, par);
            matmul(&mut dm, Accum::Replace, u_r, &t, 1.0, par);
            for i in 0..rows {
                for j in 0..cols {
                    dm[(i, j)] -= xr[(i, j)];
                }
            }
        }
    }
    Ok((d, rank))
}

/// Singular values (descending) and thin left singular vectors of `a`.
fn left_svd(a: MatRef<'_, f64>, par: Par) -> Result<(Vec<f64>, Mat<f64>), ShiftError> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::svd::{svd, svd_scratch, ComputeSvdVectors};
    let (m, n) = a.shape();
    let size = m.min(n);
    let mut s = faer::diag::Diag::<f64>::zeros(size);
    let mut u = Mat::<f64>::zeros(m, size);
    let mut buf = MemBuffer::new(svd_scratch::<f64>(
        m,
        n,
        ComputeSvdVectors::Thin,
        ComputeSvdVectors::No,
        par,
        Default::default(),
    ));
    svd(
        a,
        s.as_mut(),
        Some(u.as_mut()),
        None,
        par,
        MemStack::new(&mut buf),
        Default::default(),
    )
    .map_err(|_| untagged(LinalgError::NoConvergence("SVD of the base activations")))?;
    let s = (0..size).map(|i| s.column_vector()[i]).collect();
    Ok((s, u))
}

/// `D = harmful rows - mean of the harmless rows`, from one model's activations.
///
/// `acts` is row-major `rows x cols`; `harmful[i]` says which side row `i` is on
/// (`Some(true)` harmful, `Some(false)` harmless, `None` left out). `D` has one row per
/// harmful row, in input order. The mean is accumulated in `f64`, in row order.
pub fn contrast_shift<T: Element>(
    rows: usize,
    cols: usize,
    acts: &[T],
    harmful: &[Option<bool>],
) -> Result<Matrix, LinalgError> {
    if rows == 0 || cols == 0 {
        return Err(LinalgError::Empty { rows, cols });
    }
    check_len("activations", rows, cols, acts.len())?;
    if harmful.len() != rows {
        return Err(LinalgError::Shape {
            what: "labels",
            rows,
            cols: 1,
            found_rows: harmful.len(),
            found_cols: 1,
        });
    }
    check_finite(rows, cols, acts)?;
    let n_harmful = harmful.iter().filter(|&&h| h == Some(true)).count();
    let n_harmless = harmful.iter().filter(|&&h| h == Some(false)).count();
    if n_harmful == 0 {
        return Err(LinalgError::NoRows { side: "harmful" });
    }
    if n_harmless == 0 {
        return Err(LinalgError::NoRows { side: "harmless" });
    }
    let mut mean = vec![0.0f64; cols];
    for (row, _) in acts
        .chunks_exact(cols)
        .zip(harmful)
        .filter(|(_, &h)| h == Some(false))
    {
        for (m, &x) in mean.iter_mut().zip(row) {
            *m += x.into();
        }
    }
    let inv = 1.0 / n_harmless as f64;
    mean.iter_mut().for_each(|m| *m *= inv);
    let mut data = Vec::with_capacity(n_harmful * cols);
    for (row, _) in acts
        .chunks_exact(cols)
        .zip(harmful)
        .filter(|(_, &h)| h == Some(true))
    {
        data.extend(row.iter().zip(&mean).map(|(&x, &m)| x.into() - m));
    }
    Matrix::new(n_harmful, cols, data)
}
