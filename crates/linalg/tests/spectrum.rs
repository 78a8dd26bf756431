//! Effective rank and explained ratios on hand-computable cases.

use hd_linalg::spectrum::{effective_rank, spectrum};

#[test]
fn effective_rank_hand_cases() {
    // λ ∝ s² = [4, 1, 1, 1, 1, 1, 1], Σ = 10: cumulative shares 0.4, 0.5, ..., 1.0 exactly.
    let s = [2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
    for (tau, want) in [
        (0.4, 1),
        (0.41, 2),
        (0.5, 2),
        (0.6, 3),
        (0.7, 4),
        (0.8, 5),
        (0.9, 6),
        (0.95, 7),
        (1.0, 7),
    ] {
        assert_eq!(effective_rank(&s, tau).unwrap(), want, "tau {tau}");
    }
    // One dominant value: 9 / 10 = 0.9 reaches 0.9.
    assert_eq!(effective_rank(&[3.0, 1.0], 0.9).unwrap(), 1);
    assert_eq!(effective_rank(&[3.0, 1.0], 0.91).unwrap(), 2);
    // Rank one: 1 at every τ.
    for tau in [0.4, 0.6, 0.7, 0.8, 0.9, 1.0] {
        assert_eq!(effective_rank(&[5.0, 0.0, 0.0], tau).unwrap(), 1);
    }
    // Equal values: ceil(τ · m).
    let flat = [1.0; 10];
    assert_eq!(effective_rank(&flat, 0.4).unwrap(), 4);
    assert_eq!(effective_rank(&flat, 0.9).unwrap(), 9);
    assert_eq!(effective_rank(&flat, 0.91).unwrap(), 10);
    // Only λ > 0 count; none at all gives 0.
    assert_eq!(effective_rank(&[1.0, 1.0, 0.0, 0.0], 1.0).unwrap(), 2);
    assert_eq!(effective_rank(&[0.0, 0.0], 0.5).unwrap(), 0);
    assert_eq!(effective_rank(&[], 0.5).unwrap(), 0);
}

#[test]
fn tau_out_of_range_is_an_error() {
    for tau in [0.0, -0.1, 1.01, f64::NAN, 40.0] {
        let err = effective_rank(&[1.0], tau).unwrap_err();
        assert!(err.to_string().contains("expected 0 < tau <= 1"), "{err}");
    }
}

#[test]
fn spectrum_shares() {
    let sp = spectrum(&[2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    assert_eq!(sp[0].explained_ratio, 0.4);
    assert_eq!(sp[1].explained_ratio, 0.1);
    let cum: Vec<f64> = sp.iter().map(|e| e.cumulative).collect();
    assert_eq!(cum, vec![0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]);
    assert_eq!(sp[6].singular_value, 1.0);
    // Last share is exactly 1 even when the sums are inexact.
    let s: Vec<f64> = (1..50).map(|i| 1.0 / (i as f64).sqrt()).collect();
    assert_eq!(spectrum(&s).last().unwrap().cumulative, 1.0);
    // All-zero spectrum: zeros, not NaN.
    let z = spectrum(&[0.0, 0.0]);
    assert!(z
        .iter()
        .all(|e| e.explained_ratio == 0.0 && e.cumulative == 0.0));
}
