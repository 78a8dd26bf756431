//! Small statistics the tools share.

/// z of a two-sided 95% interval (the normal distribution's 0.975 quantile).
pub const Z95: f64 = 1.959_963_984_540_054;

/// The 95% Wilson score interval of a proportion of `k` successes in `n` trials:
/// `(lo, hi)`, clamped to [0, 1]; `(NaN, NaN)` for `n = 0`. Unlike the normal approximation it
/// stays inside [0, 1] and is not empty at 0 or n successes, which the sweep's small
/// per-category counts hit often.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let (k, n, z) = (k.min(n) as f64, n as f64, Z95);
    let p = k / n;
    let d = 1.0 + z * z / n;
    let c = (p + z * z / (2.0 * n)) / d;
    let h = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / d;
    ((c - h).max(0.0), (c + h).min(1.0))
}

/// Whether two intervals leave a gap between them (the rule for calling a difference of two
/// rates a finding).
pub fn disjoint(a: (f64, f64), b: (f64, f64)) -> bool {
    a.1 < b.0 || b.1 < a.0
}

/// Spearman's rank correlation (average ranks for ties); NaN below 3 pairs.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    if a.len() < 3 || a.len() != b.len() {
        return f64::NAN;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            r[k] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_against_closed_form_values() {
        // statsmodels.stats.proportion.proportion_confint(k, n, method="wilson"), and the
        // closed form by hand: centre (p + z²/2n)/(1 + z²/n), half-width
        // z·sqrt(p(1−p)/n + z²/4n²)/(1 + z²/n).
        let cases = [
            (5, 10, 0.236_593_090_512_564, 0.763_406_909_487_436),
            (0, 10, 0.0, 0.277_532_799_862_889),
            (10, 10, 0.722_467_200_137_111, 1.0),
            (64, 70, 0.825_343_275_076_605, 0.960_123_330_354_888),
            (1, 70, 0.002_526_246_457_890, 0.076_581_871_312_083),
            (81, 100, 0.722_211_546_209_356, 0.874_852_484_902_313),
        ];
        for (k, n, lo, hi) in cases {
            let (a, b) = wilson(k, n);
            assert!(
                (a - lo).abs() < 1e-12 && (b - hi).abs() < 1e-12,
                "{k}/{n}: {a} {b}"
            );
        }
        assert!(wilson(0, 0).0.is_nan());
        assert!(disjoint((0.0, 0.2), (0.3, 0.5)));
        assert!(!disjoint((0.0, 0.35), (0.3, 0.5)));
    }

    #[test]
    fn spearman_against_hand_values() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // scipy.stats.spearmanr([1,2,3,4,5],[2,1,4,3,5]) = 0.8
        assert!(
            (spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 1.0, 4.0, 3.0, 5.0]) - 0.8).abs() < 1e-12
        );
        assert!(spearman(&[1.0, 2.0], &[1.0, 2.0]).is_nan());
    }
}
