//! Shift constructions: identity, numpy-style min-norm lstsq, single-model contrast.

#![allow(clippy::needless_range_loop)] // index loops read like the math here

mod common;

use common::*;
use faer::linalg::solvers::Solve;
use faer::{Mat, MatRef};
use hd_linalg::align::alignment;
use hd_linalg::shift::{contrast_shift, identity_shift, lstsq_shift, Operand};
use hd_linalg::{LinalgError, Matrix};

fn f32s(m: &Matrix) -> Vec<f32> {
    m.as_slice().iter().map(|&x| x as f32).collect()
}

#[test]
fn identity_is_tuned_minus_base_exactly() {
    let base = [1.0f32, 2.5, -3.0, 1e-8];
    let tuned = [1.5f32, 2.5, 3.0, 0.0];
    let d = identity_shift(2, 2, &base, &tuned).unwrap();
    let want: Vec<f64> = base
        .iter()
        .zip(&tuned)
        .map(|(&x, &y)| f64::from(y) - f64::from(x))
        .collect();
    assert_eq!(d.as_slice(), want.as_slice());
}

#[test]
fn lstsq_full_row_rank_equals_identity() {
    // n < d and X of full row rank: X X⁺ = I, so D = Y - X exactly.
    let mut r = rng(21);
    let x = f32s(&gaussian(&mut r, 8, 20));
    let y = f32s(&gaussian(&mut r, 8, 20));
    let (d, rank) = lstsq_shift(8, 20, &x, &y).unwrap();
    assert_eq!(rank, 8);
    assert_eq!(d, identity_shift(8, 20, &x, &y).unwrap());
}

#[test]
fn lstsq_identical_rows_projects_on_the_mean() {
    // Every row of X is the same vector x: col(X) = span(1), so X X⁺ Y = 1 · mean(Y) and
    // D_i = mean(Y) - x for every row. (The paper's layer 0, where every prompt ends in the
    // same template token.)
    let mut r = rng(22);
    let (n, d) = (6, 10);
    let row: Vec<f32> = (0..d).map(|_| normal(&mut r) as f32).collect();
    let x: Vec<f32> = (0..n).flat_map(|_| row.clone()).collect();
    let y = f32s(&gaussian(&mut r, n, d));
    let (shift, rank) = lstsq_shift(n, d, &x, &y).unwrap();
    assert_eq!(rank, 1);
    let ym = Matrix::from_slice(n, d, &y).unwrap().mean_row();
    for i in 0..n {
        for j in 0..d {
            let want = ym[j] - f64::from(row[j]);
            assert!((shift.row(i)[j] - want).abs() < 1e-12, "({i},{j})");
        }
    }
}

#[test]
fn lstsq_tall_matches_normal_equations() {
    // n > d, X of full column rank: W = (XᵀX)⁻¹XᵀY, D = XW - X.
    let mut r = rng(23);
    let (n, d) = (30, 7);
    let x = f32s(&gaussian(&mut r, n, d));
    let y = f32s(&gaussian(&mut r, n, d));
    let (shift, rank) = lstsq_shift(n, d, &x, &y).unwrap();
    assert_eq!(rank, d);
    let xm = Matrix::from_slice(n, d, &x).unwrap();
    let ym = Matrix::from_slice(n, d, &y).unwrap();
    let xr = MatRef::from_row_major_slice(xm.as_slice(), n, d);
    let yr = MatRef::from_row_major_slice(ym.as_slice(), n, d);
    let xtx: Mat<f64> = xr.transpose() * xr;
    let xty: Mat<f64> = xr.transpose() * yr;
    let w = xtx.llt(faer::Side::Lower).unwrap().solve(&xty);
    let want: Mat<f64> = xr * &w - xr;
    for i in 0..n {
        for j in 0..d {
            assert!((shift.row(i)[j] - want[(i, j)]).abs() < 1e-10, "({i},{j})");
        }
    }
}

#[test]
fn shift_errors_name_operand_row_and_column() {
    let base = [1.0f32, 2.0, 3.0, 4.0];
    let tuned = [1.0f32, 2.0, 3.0, f32::INFINITY];
    let err = identity_shift(2, 2, &base, &tuned).unwrap_err();
    assert_eq!(err.operand, Some(Operand::Tuned));
    assert_eq!(
        err.to_string(),
        "tuned: row 1, column 1 is inf, expected a finite number"
    );
    let err = lstsq_shift(2, 2, &[f32::NAN, 0.0, 0.0, 0.0], &base).unwrap_err();
    assert_eq!(err.operand, Some(Operand::Base));
    let err = identity_shift::<f32, f32>(0, 3, &[], &[]).unwrap_err();
    assert!(matches!(err.error, LinalgError::Empty { .. }));
    let err = identity_shift(2, 2, &base, &tuned[..3]).unwrap_err();
    assert!(
        err.to_string()
            .contains("tuned has 3 values, expected 2 x 2 = 4"),
        "{err}"
    );
}

#[test]
fn contrast_is_harmful_minus_harmless_mean() {
    let acts = [1.0f32, 1.0, 3.0, 5.0, 0.0, 2.0, 10.0, 0.0];
    let harmful = [Some(true), Some(false), Some(false), Some(true)];
    let d = contrast_shift(4, 2, &acts, &harmful).unwrap();
    // harmless mean = ([3,5] + [0,2]) / 2 = [1.5, 3.5]
    assert_eq!(d.rows(), 2);
    assert_eq!(d.row(0), &[-0.5, -2.5]);
    assert_eq!(d.row(1), &[8.5, -3.5]);
    // Unlabelled rows are left out of both sides; f64 input works the same.
    let acts64: Vec<f64> = acts.iter().map(|&x| f64::from(x)).collect();
    let d = contrast_shift(4, 2, &acts64, &[Some(true), None, Some(false), None]).unwrap();
    assert_eq!(d.row(0), &[1.0, -1.0]);
    assert!(matches!(
        contrast_shift(2, 2, &acts[..4], &[Some(true), Some(true)]),
        Err(LinalgError::NoRows { side: "harmless" })
    ));
    assert!(matches!(
        contrast_shift(2, 2, &acts[..4], &[Some(false), None]),
        Err(LinalgError::NoRows { side: "harmful" })
    ));
}

#[test]
fn alignment_pairs() {
    let s = std::f64::consts::FRAC_1_SQRT_2;
    let l0 = Matrix::new(2, 2, vec![1.0, 0.0, 0.0, 1.0]).unwrap();
    let l1 = Matrix::new(2, 2, vec![s, s, -s, s]).unwrap();
    let l2 = Matrix::new(1, 2, vec![0.0, -1.0]).unwrap();
    let got = alignment(&[(3, &l0), (5, &l1), (9, &l2)], 5);
    let keys: Vec<_> = got
        .iter()
        .map(|a| (a.layer_a, a.component_a, a.layer_b, a.component_b))
        .collect();
    assert_eq!(
        keys,
        vec![
            (3, 0, 5, 0),
            (3, 0, 5, 1),
            (3, 1, 5, 0),
            (3, 1, 5, 1),
            (3, 0, 9, 0),
            (5, 0, 9, 0),
            (5, 1, 9, 0),
        ]
    );
    assert!((got[0].abs_cos - s).abs() < 1e-15);
    assert_eq!(got[4].abs_cos, 0.0);
    assert!((got[6].abs_cos - s).abs() < 1e-15);
}
