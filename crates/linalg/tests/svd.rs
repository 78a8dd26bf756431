//! Invariants of `top_k_svd` over a seeded sweep of shapes, checked against faer's direct
//! SVD (a different algorithm) and against planted structure.

#![allow(clippy::needless_range_loop)] // index loops read like the math here

mod common;

use common::*;
use hd_linalg::matrix::{abs_cos, dot, norm};
use hd_linalg::svd::{orient, top_k_svd};
use hd_linalg::Matrix;

const EPS: f64 = f64::EPSILON;

/// Shapes: tall, wide, square, rank-deficient, degenerate.
fn sweep() -> Vec<(String, Matrix)> {
    let mut out = Vec::new();
    let mut r = rng(7);
    for &(n, d) in &[
        (1, 1),
        (1, 9),
        (9, 1),
        (2, 2),
        (3, 7),
        (7, 3),
        (20, 50),
        (50, 20),
        (64, 64),
        (120, 300),
        (300, 120),
    ] {
        out.push((format!("gaussian {n}x{d}"), gaussian(&mut r, n, d)));
    }
    // Rank-deficient: product of thin Gaussians.
    for &(n, d, rank) in &[(30, 80, 5), (80, 30, 5), (40, 40, 1)] {
        let a = gaussian(&mut r, n, rank);
        let b = gaussian(&mut r, rank, d);
        let mut data = vec![0.0; n * d];
        for i in 0..n {
            for j in 0..d {
                data[i * d + j] = (0..rank).map(|c| a.row(i)[c] * b.row(c)[j]).sum();
            }
        }
        out.push((
            format!("rank {rank} {n}x{d}"),
            Matrix::new(n, d, data).unwrap(),
        ));
    }
    // Identical rows (the paper's early layers): rank 1.
    let row: Vec<f64> = (0..40).map(|_| normal(&mut r)).collect();
    let data = (0..10).flat_map(|_| row.clone()).collect();
    out.push((
        "identical rows 10x40".into(),
        Matrix::new(10, 40, data).unwrap(),
    ));
    out.push(("zeros 4x6".into(), Matrix::zeros(4, 6)));
    out.push(("1x1 value".into(), Matrix::new(1, 1, vec![-3.5]).unwrap()));
    out.push(("1x1 zero".into(), Matrix::zeros(1, 1)));
    // Widely spread spectrum, condition 1e6.
    let (n, d) = (60, 90);
    let sig: Vec<f64> = (0..n)
        .map(|i| 10f64.powf(-6.0 * i as f64 / (n - 1) as f64))
        .collect();
    out.push(("graded 60x90".into(), planted(&mut r, n, d, &sig, 0.0).0));
    out
}

#[test]
fn invariants_over_shapes() {
    for (name, a) in sweep() {
        let (n, d) = (a.rows(), a.cols());
        let r = n.min(d);
        let (s_ref, v_ref) = oracle(&a);
        let s1 = s_ref[0];
        let scale = EPS * ((n.max(d)) as f64).sqrt();
        for k in [r, 1, r.div_ceil(2)] {
            let got = top_k_svd(&a, k).unwrap();
            let s = &got.singular_values;
            let c = &got.components;
            assert_eq!(s.len(), r, "{name}: number of singular values");
            assert_eq!((c.rows(), c.cols()), (k, d), "{name}: components shape");
            // Descending, non-negative, finite.
            for w in s.windows(2) {
                assert!(w[0] >= w[1], "{name} k={k}: not descending: {s:?}");
            }
            assert!(
                s.iter().all(|v| v.is_finite() && *v >= 0.0),
                "{name}: {s:?}"
            );
            // Values: the top k to direct-SVD accuracy, the tail to the Gram route's.
            for i in 0..r {
                let err = (s[i] - s_ref[i]).abs();
                let tol = if i < k {
                    1e-9 * s_ref[i] + 64.0 * scale * s1
                } else {
                    1e-7 * s1 + 1e-300
                };
                assert!(
                    err <= tol,
                    "{name} k={k}: s[{i}] = {} vs {} (err {err:e})",
                    s[i],
                    s_ref[i]
                );
            }
            // Orthonormal rows.
            for i in 0..k {
                for j in 0..k {
                    let want = if i == j { 1.0 } else { 0.0 };
                    let got = dot(c.row(i), c.row(j));
                    assert!(
                        (got - want).abs() <= 1e3 * scale,
                        "{name} k={k}: <c{i},c{j}> = {got}"
                    );
                }
            }
            // Each component's image has norm s_i: ‖D vᵢ‖ = sᵢ.
            for i in 0..k {
                let img = image_norm(&a, c.row(i));
                assert!(
                    (img - s[i]).abs() <= 1e-9 * s1 + 1e-300,
                    "{name}: ‖D v{i}‖ = {img} vs {}",
                    s[i]
                );
            }
            // Components match the oracle's up to sign where the gap allows.
            for i in 0..k {
                let gap = [i.checked_sub(1), Some(i + 1)]
                    .into_iter()
                    .flatten()
                    .filter(|&j| j < r)
                    .map(|j| (s_ref[i] - s_ref[j]).abs())
                    .fold(f64::INFINITY, f64::min);
                if s1 > 0.0 && gap > 1e-3 * s1 {
                    let cos = abs_cos(c.row(i), &v_ref[i]);
                    assert!(
                        cos >= 0.9999,
                        "{name} k={k}: |cos| of component {i} = {cos}"
                    );
                }
            }
            // Reconstruction with every component: D = D Vᵀ V.
            if k == r {
                let mut err = 0.0f64;
                for row in a.row_iter() {
                    let mut rec = vec![0.0; d];
                    for i in 0..k {
                        let p = dot(row, c.row(i));
                        rec.iter_mut().zip(c.row(i)).for_each(|(x, v)| *x += p * v);
                    }
                    err += row
                        .iter()
                        .zip(&rec)
                        .map(|(x, y)| (x - y).powi(2))
                        .sum::<f64>();
                }
                let fro = a.frobenius_sq().sqrt();
                assert!(
                    err.sqrt() <= 1e-10 * fro + 1e-300,
                    "{name}: reconstruction {:e}",
                    err.sqrt()
                );
            }
        }
    }
}

#[test]
fn planted_low_rank_is_recovered() {
    let sig = [100.0, 50.0, 20.0, 10.0, 5.0];
    for &(n, d, seed) in &[(200, 500, 1), (500, 200, 2), (700, 1024, 3)] {
        let mut r = rng(seed);
        let (a, b) = planted(&mut r, n, d, &sig, 1e-3);
        let got = top_k_svd(&a, 10).unwrap();
        for (j, s) in sig.iter().enumerate() {
            let v: Vec<f64> = (0..d).map(|i| b[(i, j)]).collect();
            let cos = abs_cos(got.components.row(j), &v);
            assert!(
                cos >= 0.9999,
                "{n}x{d}: planted direction {j}: |cos| = {cos}"
            );
            let rel = (got.singular_values[j] - s).abs() / s;
            assert!(
                rel < 1e-3,
                "{n}x{d}: s[{j}] = {} vs planted {s}",
                got.singular_values[j]
            );
        }
        // Past the planted rank only noise: ~ noise * (sqrt(n) + sqrt(d)).
        let bound = 1e-3 * ((n as f64).sqrt() + (d as f64).sqrt()) * 1.2;
        assert!(got.singular_values[5] < bound, "{}", got.singular_values[5]);
    }
}

#[test]
fn mean_shift_dominates_uncentred_first_component() {
    // Every row = m + small noise: the uncentred C1 is m/|m|, oriented along m.
    let mut r = rng(11);
    let (n, d) = (50, 120);
    let m: Vec<f64> = unit(&mut r, d).iter().map(|x| 10.0 * x).collect();
    let data = (0..n)
        .flat_map(|_| {
            m.iter()
                .map(|x| x + 0.01 * normal(&mut r))
                .collect::<Vec<_>>()
        })
        .collect();
    let a = Matrix::new(n, d, data).unwrap();
    let mut got = top_k_svd(&a, 3).unwrap();
    let mean = a.mean_row();
    let proj = orient(&mut got.components, &mean);
    assert!(dot(got.components.row(0), &m) > 0.0);
    assert!(abs_cos(got.components.row(0), &m) > 0.9999);
    assert!(proj.iter().all(|&p| p >= 0.0), "{proj:?}");
}

#[test]
fn orientation_convention_and_tie_break() {
    let mut r = rng(5);
    let a = gaussian(&mut r, 30, 40);
    let mean = a.mean_row();
    let mut got = top_k_svd(&a, 30).unwrap();
    let proj = orient(&mut got.components, &mean);
    for (i, p) in proj.iter().enumerate() {
        assert!(*p >= 0.0);
        assert_eq!(*p, dot(&mean, got.components.row(i)));
    }
    // Orientation is a function of the direction only: flipping the input rows' signs of a
    // component before orienting gives the same result.
    let mut flipped = got.components.clone();
    flipped.as_mut_slice().iter_mut().for_each(|x| *x = -*x);
    orient(&mut flipped, &mean);
    assert_eq!(flipped, got.components);
    // Zero mean: the largest-magnitude entry becomes positive.
    let mut c = Matrix::new(2, 3, vec![0.1, -0.9, 0.3, -0.5, 0.5, 0.1]).unwrap();
    orient(&mut c, &[0.0; 3]);
    assert_eq!(c.row(0), &[-0.1, 0.9, -0.3]);
    assert_eq!(
        c.row(1),
        &[0.5, -0.5, -0.1],
        "first of tied magnitudes wins"
    );
}

#[test]
fn deterministic_byte_for_byte() {
    let mut r = rng(99);
    let a = gaussian(&mut r, 150, 400);
    let x = top_k_svd(&a, 20).unwrap();
    let y = top_k_svd(&a, 20).unwrap();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&x.singular_values), bits(&y.singular_values));
    assert_eq!(bits(x.components.as_slice()), bits(y.components.as_slice()));
}

#[test]
fn k_is_clamped_and_zero_k_gives_values_only() {
    let mut r = rng(3);
    let a = gaussian(&mut r, 4, 9);
    let got = top_k_svd(&a, 100).unwrap();
    assert_eq!(got.components.rows(), 4);
    let got = top_k_svd(&a, 0).unwrap();
    assert_eq!(got.components.rows(), 0);
    assert_eq!(got.singular_values.len(), 4);
}

#[test]
fn bad_input_is_an_error() {
    use hd_linalg::LinalgError;
    assert!(matches!(
        top_k_svd(&Matrix::zeros(0, 5), 1),
        Err(LinalgError::Empty { rows: 0, cols: 5 })
    ));
    let a = Matrix::new(2, 2, vec![1.0, 2.0, f64::NAN, 0.0]).unwrap();
    let err = top_k_svd(&a, 1).unwrap_err();
    assert!(
        matches!(err, LinalgError::NonFinite { row: 1, col: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("row 1, column 0 is NaN"), "{err}");
}

#[test]
fn one_by_one() {
    let got = top_k_svd(&Matrix::new(1, 1, vec![-3.5]).unwrap(), 1).unwrap();
    assert_eq!(got.singular_values, vec![3.5]);
    assert_eq!(got.components.as_slice()[0].abs(), 1.0);
    let mut c = got.components.clone();
    orient(&mut c, &[-3.5]);
    assert_eq!(c.as_slice(), &[-1.0]);
    let z = top_k_svd(&Matrix::zeros(1, 1), 1).unwrap();
    assert_eq!(z.singular_values, vec![0.0]);
    assert_eq!(norm(z.components.row(0)), 1.0);
}

#[test]
fn sequential_result_is_independent_of_the_thread_count() {
    use hd_linalg::svd::top_k_svd_par;
    use hd_linalg::Par;
    let mut r = rng(41);
    let a = gaussian(&mut r, 90, 200);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| top_k_svd_par(&a, 30, Par::Seq).unwrap())
    };
    let (one, two) = (run(1), run(2));
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&one.singular_values), bits(&two.singular_values));
    assert_eq!(
        bits(one.components.as_slice()),
        bits(two.components.as_slice())
    );
    // And the parallel path agrees to rounding.
    let par = top_k_svd_par(&a, 30, Par::rayon(2)).unwrap();
    for (x, y) in one.singular_values.iter().zip(&par.singular_values) {
        assert!((x - y).abs() <= 1e-12 * one.singular_values[0]);
    }
    for i in 0..30 {
        assert!(abs_cos(one.components.row(i), par.components.row(i)) > 1.0 - 1e-10);
    }
}
