//! Seeded fixtures and an independent SVD oracle for the linalg tests.
#![allow(dead_code)]

use faer::{Mat, MatRef};
use hd_linalg::Matrix;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Standard normal (Box–Muller; the workspace has no rand_distr).
pub fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

pub fn gaussian(rng: &mut StdRng, rows: usize, cols: usize) -> Matrix {
    let data = (0..rows * cols).map(|_| normal(rng)).collect();
    Matrix::new(rows, cols, data).unwrap()
}

/// Random unit vector.
pub fn unit(rng: &mut StdRng, d: usize) -> Vec<f64> {
    let v: Vec<f64> = (0..d).map(|_| normal(rng)).collect();
    let n = hd_linalg::matrix::norm(&v);
    v.iter().map(|x| x / n).collect()
}

/// Orthonormal columns (`rows x cols`, `rows >= cols`) via faer QR of a Gaussian matrix.
pub fn orthonormal(rng: &mut StdRng, rows: usize, cols: usize) -> Mat<f64> {
    let g = Mat::from_fn(rows, cols, |_, _| normal(rng));
    g.qr().compute_thin_Q()
}

/// `Σ_j σ_j a_j b_jᵀ` with orthonormal `a` (n) and `b` (d), plus `noise · N(0,1)`.
pub fn planted(
    rng: &mut StdRng,
    n: usize,
    d: usize,
    sigmas: &[f64],
    noise: f64,
) -> (Matrix, Mat<f64>) {
    let k = sigmas.len();
    let a = orthonormal(rng, n, k);
    let b = orthonormal(rng, d, k);
    let mut data = vec![0.0; n * d];
    for i in 0..n {
        for j in 0..d {
            let mut v = 0.0;
            for (c, s) in sigmas.iter().enumerate() {
                v += s * a[(i, c)] * b[(j, c)];
            }
            data[i * d + j] = v + noise * normal(rng);
        }
    }
    (Matrix::new(n, d, data).unwrap(), b)
}

/// Oracle: faer's direct (bidiagonal) thin SVD, a different algorithm from the Gram route.
/// Returns singular values and right singular vectors as rows (`r x d`).
pub fn oracle(a: &Matrix) -> (Vec<f64>, Vec<Vec<f64>>) {
    let m = MatRef::from_row_major_slice(a.as_slice(), a.rows(), a.cols());
    let svd = m.thin_svd().unwrap();
    let s = svd.S().column_vector();
    let r = a.rows().min(a.cols());
    let v = svd.V();
    let sv = (0..r).map(|i| s[i]).collect();
    let rows = (0..r)
        .map(|i| (0..a.cols()).map(|j| v[(j, i)]).collect())
        .collect();
    (sv, rows)
}

/// `‖D vᵀ‖` for a unit row `v`.
pub fn image_norm(a: &Matrix, v: &[f64]) -> f64 {
    a.row_iter()
        .map(|row| hd_linalg::matrix::dot(row, v).powi(2))
        .sum::<f64>()
        .sqrt()
}
