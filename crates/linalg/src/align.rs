//! How the components drift across depth: `|cos|` between components of different layers.

use crate::matrix::{abs_cos, Matrix};

/// One `|cos|` between component `component_a` of `layer_a` and `component_b` of `layer_b`
/// (components 0-based here; 1-based in every human-facing output).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alignment {
    /// First layer.
    pub layer_a: usize,
    /// 0-based component index in `layer_a`.
    pub component_a: usize,
    /// Second layer.
    pub layer_b: usize,
    /// 0-based component index in `layer_b`.
    pub component_b: usize,
    /// `|cos|` of the angle between the two (sign-free, so the sign convention plays no part).
    pub abs_cos: f64,
}

/// For `layers` (in the given order; each `(layer, k x d components)`):
/// - the dominant components (C1) of every pair of layers `a < b` (by position in the list);
/// - each layer's first `top` components against the next layer's first `top`, all pairs.
///
/// Each pair appears once (C1–C1 of neighbours belongs to both groups). Sorted by
/// `(layer_a, layer_b, component_a, component_b)` positions. Layers with no components, or a
/// dimension different from the others, contribute nothing.
pub fn alignment(layers: &[(usize, &Matrix)], top: usize) -> Vec<Alignment> {
    let mut out = Vec::new();
    for a in 0..layers.len() {
        for b in a + 1..layers.len() {
            let (la, ca) = layers[a];
            let (lb, cb) = layers[b];
            if ca.cols() != cb.cols() {
                continue;
            }
            let (ka, kb) = if b == a + 1 {
                (top.min(ca.rows()), top.min(cb.rows()))
            } else {
                (1.min(ca.rows()), 1.min(cb.rows()))
            };
            for i in 0..ka {
                for j in 0..kb {
                    out.push(Alignment {
                        layer_a: la,
                        component_a: i,
                        layer_b: lb,
                        component_b: j,
                        abs_cos: abs_cos(ca.row(i), cb.row(j)),
                    });
                }
            }
        }
    }
    out
}
