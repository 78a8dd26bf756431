//! Thin SVD of a shift matrix: all singular values, the top `k` right singular vectors.
//!
//! # Method
//!
//! With `D` of shape `n x d` and `r = min(n, d)`:
//!
//! 1. **Gram.** `G = D Dᵀ` (`n x n`) when `n <= d`, else `G = Dᵀ D` (`d x d`), lower half
//!    only, in `f64` (faer, parallel). Its eigenvalues are `s²`, so the cost grows with the
//!    smaller side, not with `n·d·r` as a bidiagonal SVD of `D` does.
//! 2. **Eigen.** Symmetric eigendecomposition of `G`; `s = sqrt(max(λ, 0))` for all `r`.
//! 3. **Rayleigh–Ritz on the top `k`.** The Gram route squares the condition number: a
//!    singular value `s_i` comes out with absolute error about `eps·s₁²/s_i`. For the top `k`
//!    we take the basis `Q` of their right subspace (`Q = qr(Dᵀ U_k)` for `n <= d`, which is
//!    one step of subspace iteration; the eigenvectors themselves for `n > d`), then the SVD of
//!    the small `B = D Q` (`n x k`): `B = P Σ Wᵀ`. The components are the rows of `(Q W)ᵀ` and
//!    the top `k` singular values are `Σ`. These carry the error of a direct SVD (`eps·s₁`
//!    absolute) instead of the Gram's, and the components are orthonormal by construction
//!    (Householder `Q` times orthogonal `W`), even past the numerical rank of `D`.
//! 4. The tail (`k..r`) keeps the Gram values, clamped to be non-increasing after the refined
//!    head (`s_j <= s_{j-1}`). Their error is below `sqrt(eps)·s₁ ≈ 1.5e-8·s₁`.
//!
//! Singular vectors come out in a deterministic but arbitrary sign; see [`orient`].

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatMut, MatRef, Par};

use crate::error::{LinalgError, Result};
use crate::matrix::{dot, norm, Matrix};

/// The result of [`top_k_svd`].
#[derive(Debug, Clone, PartialEq)]
pub struct TopSvd {
    /// All `min(n, d)` singular values, non-increasing, non-negative.
    pub singular_values: Vec<f64>,
    /// `k x d`: the top `k` right singular vectors as unit rows, in the order of
    /// `singular_values`.
    pub components: Matrix,
}

/// All singular values of `a` and its top `k` right singular vectors (see the module docs),
/// on all of rayon's threads.
///
/// `k` is clamped to `min(n, d)`; compare `components.rows()` with the `k` asked for.
pub fn top_k_svd(a: &Matrix, k: usize) -> Result<TopSvd> {
    top_k_svd_par(a, k, Par::rayon(0))
}

/// [`top_k_svd`] with an explicit parallelism. Every faer call inside uses `par`, so with
/// [`Par::Seq`] the result is bit-for-bit independent of the thread count (faer's parallel
/// kernels split reductions by thread count, so `Par::rayon(n)` results depend on `n`).
/// Callers with many matrices get both speed and that independence by running one
/// `Par::Seq` decomposition per thread.
pub fn top_k_svd_par(a: &Matrix, k: usize, par: Par) -> Result<TopSvd> {
    let (n, d) = (a.rows(), a.cols());
    if n == 0 || d == 0 {
        return Err(LinalgError::Empty { rows: n, cols: d });
    }
    a.check_finite()?;
    let r = n.min(d);
    let k = k.min(r);
    // Row-major n x d is column-major d x n: this is Dᵀ, without a copy.
    let at = MatRef::from_column_major_slice(a.as_slice(), d, n);

    let mut g = Mat::<f64>::zeros(r, r);
    let (lhs, rhs) = if n <= d {
        (at.transpose(), at)
    } else {
        (at, at.transpose())
    };
    triangular::matmul(
        g.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        lhs,
        BlockStructure::Rectangular,
        rhs,
        BlockStructure::Rectangular,
        1.0,
        par,
    );
    let (lambda, vecs) = sym_eigen_desc(g.as_ref(), k, par)?;
    drop(g);
    let mut s: Vec<f64> = lambda.iter().map(|&l| l.max(0.0).sqrt()).collect();
    if k == 0 {
        return Ok(TopSvd {
            singular_values: s,
            components: Matrix::zeros(0, d),
        });
    }

    // Orthonormal basis of the (approximate) top-k right singular subspace, d x k.
    let q: Mat<f64> = if n <= d {
        let mut y = Mat::<f64>::zeros(d, k);
        matmul(&mut y, Accum::Replace, at, &vecs, 1.0, par);
        thin_q(y.as_ref(), par)
    } else {
        vecs
    };

    // Rayleigh–Ritz: B = D Q (n x k), B = P Σ Wᵀ.
    let mut b = Mat::<f64>::zeros(n, k);
    matmul(&mut b, Accum::Replace, at.transpose(), &q, 1.0, par);
    let (sigma, w) = small_svd(b.as_ref(), par)?;
    drop(b);

    // Components, k x d row-major = (Q W) as column-major d x k.
    let mut comps = vec![0.0f64; k * d];
    matmul(
        MatMut::from_column_major_slice_mut(&mut comps, d, k),
        Accum::Replace,
        &q,
        &w,
        1.0,
        par,
    );
    s[..k].copy_from_slice(&sigma);
    for j in k.max(1)..r {
        s[j] = s[j].min(s[j - 1]);
    }
    Ok(TopSvd {
        singular_values: s,
        components: Matrix::new(k, d, comps)?,
    })
}

/// Eigenvalues of the symmetric `g` (lower half read) in non-increasing order, and the
/// eigenvectors of the top `k` as columns, in the same order.
fn sym_eigen_desc(g: MatRef<'_, f64>, k: usize, par: Par) -> Result<(Vec<f64>, Mat<f64>)> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
    let m = g.nrows();
    let mut lam = faer::diag::Diag::<f64>::zeros(m);
    let mut u = Mat::<f64>::zeros(m, m);
    let want = if k > 0 {
        ComputeEigenvectors::Yes
    } else {
        ComputeEigenvectors::No
    };
    let mut buf = MemBuffer::new(self_adjoint_evd_scratch::<f64>(
        m,
        want,
        par,
        Default::default(),
    ));
    self_adjoint_evd(
        g,
        lam.as_mut(),
        if k > 0 { Some(u.as_mut()) } else { None },
        par,
        MemStack::new(&mut buf),
        Default::default(),
    )
    .map_err(|_| LinalgError::NoConvergence("eigendecomposition of the Gram matrix"))?;
    // faer sorts ascending.
    let lam_col = lam.column_vector();
    let desc: Vec<f64> = (0..m).rev().map(|i| lam_col[i]).collect();
    let top = Mat::from_fn(m, k, |i, j| u[(i, m - 1 - j)]);
    Ok((desc, top))
}

/// Singular values and right singular vectors (`ncols x ncols`) of `b` (`nrows >= ncols`),
/// with an explicit parallelism (faer's `thin_svd` uses the global one).
fn small_svd(b: MatRef<'_, f64>, par: Par) -> Result<(Vec<f64>, Mat<f64>)> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::svd::{svd, svd_scratch, ComputeSvdVectors};
    let (m, n) = b.shape();
    let size = m.min(n);
    let mut s = faer::diag::Diag::<f64>::zeros(size);
    let mut v = Mat::<f64>::zeros(n, size);
    let mut buf = MemBuffer::new(svd_scratch::<f64>(
        m,
        n,
        ComputeSvdVectors::No,
        ComputeSvdVectors::Thin,
        par,
        Default::default(),
    ));
    svd(
        b,
        s.as_mut(),
        None,
        Some(v.as_mut()),
        par,
        MemStack::new(&mut buf),
        Default::default(),
    )
    .map_err(|_| LinalgError::NoConvergence("SVD of the projected shift"))?;
    let s = s.column_vector();
    Ok(((0..size).map(|i| s[i]).collect(), v))
}

/// First `ncols` columns of the Householder `Q` of `y` (`nrows >= ncols`).
fn thin_q(y: MatRef<'_, f64>, par: Par) -> Mat<f64> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::householder::{
        apply_block_householder_sequence_on_the_left_in_place_scratch,
        apply_block_householder_sequence_on_the_left_in_place_with_conj,
    };
    use faer::linalg::qr::no_pivoting::factor::{
        qr_in_place, qr_in_place_scratch, recommended_block_size,
    };
    let (m, n) = y.shape();
    let mut qr = y.to_owned();
    let bs = recommended_block_size::<f64>(m, n);
    let mut coeff = Mat::<f64>::zeros(bs, n.min(m));
    {
        let mut buf = MemBuffer::new(qr_in_place_scratch::<f64>(
            m,
            n,
            bs,
            par,
            Default::default(),
        ));
        qr_in_place(
            qr.as_mut(),
            coeff.as_mut(),
            par,
            MemStack::new(&mut buf),
            Default::default(),
        );
    }
    let size = m.min(n);
    let mut q = Mat::<f64>::identity(m, size);
    let mut buf = MemBuffer::new(
        apply_block_householder_sequence_on_the_left_in_place_scratch::<f64>(m, bs, size),
    );
    apply_block_householder_sequence_on_the_left_in_place_with_conj(
        qr.as_ref().subcols(0, size),
        coeff.as_ref(),
        faer::Conj::No,
        q.as_mut(),
        par,
        MemStack::new(&mut buf),
    );
    q
}

/// Orients each row of `components` so that its projection on `mean_shift` (the mean of the
/// shift rows, i.e. the mean projection of `D`) is `>= 0`.
///
/// When that projection is indistinguishable from rounding (`|m·v| <= 1e-10·|m|`, which is
/// every component when the mean shift is zero, and the components orthogonal to it in
/// planted cases), the tie-break makes the entry of largest magnitude positive (the first such
/// entry on exact ties). Flipping a sign is exact, so this changes no value otherwise.
///
/// Returns the projection `m·v` of each (oriented) component.
pub fn orient(components: &mut Matrix, mean_shift: &[f64]) -> Vec<f64> {
    assert_eq!(components.cols(), mean_shift.len(), "orient: dimension");
    let tol = 1e-10 * norm(mean_shift);
    let mut proj = Vec::with_capacity(components.rows());
    for i in 0..components.rows() {
        let v = components.row_mut(i);
        let p = dot(mean_shift, v);
        let flip = if p.abs() > tol {
            p < 0.0
        } else {
            let mut best = 0;
            for (j, x) in v.iter().enumerate() {
                if x.abs() > v[best].abs() {
                    best = j;
                }
            }
            v[best] < 0.0
        };
        if flip {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        proj.push(if flip { -p } else { p });
    }
    proj
}
