//! The paper's numbers, read off the reference repository's artifacts
//! (`shared/reference/paper.md` §4; Llama-Guard-3-8B before and after SSFT, 33 hidden
//! states). Kept as data so every figure can put them beside ours.

/// Hidden states of the paper's model (32 blocks + embedding output).
pub const LAYERS: usize = 33;

/// Effective rank of the SSFT shift at τ = 0.9, hidden states 0..=32 (`fig_rank.pdf`).
pub const RANK_SSFT_90: [f64; LAYERS] = [
    1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 2., 10., 38., 42., 48., 49., 70., 69., 72.,
    65., 57., 50., 45., 39., 34., 27., 23., 20., 14., 8., 4.,
];

/// Effective rank of the SSFT shift at τ = 0.8.
pub const RANK_SSFT_80: [f64; LAYERS] = [
    1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 2., 6., 7., 11., 10., 20., 19., 20., 17.,
    14., 11., 10., 8., 6., 4., 4., 3., 3., 2., 2.,
];

/// Effective rank of the DPO shift (Llama-3.1-8B-Instruct before and after DPO) at τ = 0.9,
/// hidden states 0..=32 (`fig_rank.pdf`).
pub const RANK_DPO_90: [f64; LAYERS] = [
    1., 1., 1., 1., 1., 2., 4., 9., 11., 15., 12., 14., 14., 18., 37., 49., 53., 56., 53., 58.,
    59., 64., 73., 67., 74., 91., 105., 109., 118., 132., 141., 143., 139.,
];

/// Accuracy of the dominant component (C1) as a refusal classifier, at the layers the
/// artifacts give exactly (17..29 are only given as the range 0.974..0.989).
pub const C1_ACC: [(usize, f64); 20] = [
    (0, 0.70),
    (1, 0.58),
    (2, 0.56),
    (3, 0.51),
    (4, 0.51),
    (5, 0.49),
    (6, 0.48),
    (7, 0.52),
    (8, 0.51),
    (9, 0.55),
    (10, 0.59),
    (11, 0.64),
    (12, 0.71),
    (13, 0.79),
    (14, 0.946),
    (15, 0.966),
    (16, 0.966),
    (30, 0.951),
    (31, 0.926),
    (32, 0.957),
];

/// Attack pass rates (%) of the intervention figure (`fig_supression.pdf`, n = 60 each):
/// condition, PAIR, FLIP, SR-raw.
pub const INTERVENTION: [(&str, f64, f64, f64); 4] = [
    ("before SSFT", 86.7, 80.0, 6.7),
    ("after SSFT", 1.7, 0.0, 0.0),
    ("after SSFT, -L14-C6", 51.7, 11.7, 8.3),
    ("after SSFT, -L25-C1", 100.0, 100.0, 100.0),
];

/// Maps a paper hidden-state index onto our model's depth, so profiles of models with
/// different depths share an x axis.
pub fn rescale(layer: usize, our_last: usize) -> f64 {
    layer as f64 * our_last as f64 / (LAYERS - 1) as f64
}

/// A per-layer profile of the paper (index = hidden state) on our depth: (layer, value).
pub fn rescaled_profile(values: &[f64], our_last: usize) -> Vec<(f64, f64)> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| (rescale(i, our_last), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_series_match_the_digitised_figure() {
        // Peaks as paper.md states them: τ=.9 peaks at 72 (layer 20), τ=.8 at 20.
        let (i, m) =
            RANK_SSFT_90
                .iter()
                .enumerate()
                .fold((0, 0.), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
        assert_eq!((i, m), (20, 72.));
        assert_eq!(RANK_SSFT_80.iter().cloned().fold(0., f64::max), 20.);
        assert_eq!(rescale(32, 30), 30.0);
    }
}
