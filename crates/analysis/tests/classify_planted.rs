//! Planted directions: activations built from known directions per category, scored with
//! components that include them, must name the right component, category and accuracy.

use hd_analysis::classify::{categories, classify, splitmix64, ClassifyOptions, LayerInput};

/// Deterministic standard normals (Box–Muller on SplitMix64).
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(1);
        ((splitmix64(self.0) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn next(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

const N: usize = 240;
const D: usize = 24;
const K: usize = 6;

/// Components: the standard basis vectors e0..e5, so the planted directions are exactly
/// components (e0 = "harmful", e2 = "roleplay", shifted the other way).
fn components() -> Vec<f64> {
    let mut c = vec![0.0; K * D];
    for j in 0..K {
        c[j * D + j] = 1.0;
    }
    c
}

#[test]
fn planted_category_and_accuracy_are_found() {
    let names = ["roleplay", "weapons", "benign", "borderline"];
    let category: Vec<String> = (0..N).map(|i| names[i % 4].to_string()).collect();
    let y: Vec<bool> = (0..N).map(|i| i % 4 < 2).collect();
    let mut rng = Normal(7);
    // Layer 5: harmful rows +4 along e0 (separable), roleplay rows -3 along e2.
    // Layer 6: noise only.
    let mut x5 = vec![0.0; N * D];
    let mut x6 = vec![0.0; N * D];
    for i in 0..N {
        for j in 0..D {
            x5[i * D + j] = rng.next();
            x6[i * D + j] = rng.next();
        }
        if y[i] {
            x5[i * D] += 4.0;
        }
        if category[i] == "roleplay" {
            x5[i * D + 2] -= 3.0;
        }
    }
    let comps = components();
    let cats = categories(&category, &y);
    let layers = [
        LayerInput {
            layer: 5,
            x: &x5,
            components: &comps,
        },
        LayerInput {
            layer: 6,
            x: &x6,
            components: &comps,
        },
    ];
    let opts = ClassifyOptions {
        k: K,
        ..Default::default()
    };
    let reps = classify(&layers, D, &y, &cats, &opts).unwrap().layers;
    let (l5, l6) = (&reps[0], &reps[1]);

    // C1 separates harmful from harmless: about Φ(2) ≈ 0.977 per class at the midpoint.
    assert_eq!(l5.best, 0, "layer 5: best component");
    let c1 = l5.components[0];
    assert!(c1.acc > 0.93 && c1.auc > 0.98, "layer 5 C1: {c1:?}");
    // Stored orientation: harmful projects higher, so the reference's rule on -c fails.
    assert!(c1.acc_paper < 0.1 && c1.sep > 1.5, "layer 5 C1: {c1:?}");
    assert!(
        l5.probe.acc > 0.9 && l5.pooled_probe_acc > 0.7 && l5.dim_acc > 0.9,
        "{l5:?}"
    );
    assert!(
        l5.cos_probe_c1 > 0.7,
        "probe weight vs C1: {}",
        l5.cos_probe_c1
    );

    // C3 is the roleplay direction: roleplay has the largest |AUC - 0.5| against harmless
    // rows, on the low side, with a large negative effect size.
    let role = cats.iter().position(|c| c.name == "roleplay").unwrap();
    let c3 = &l5.categories[2];
    let top = (0..cats.len())
        .max_by(|&a, &b| {
            (c3[a].auc_vs_harmless - 0.5)
                .abs()
                .total_cmp(&(c3[b].auc_vs_harmless - 0.5).abs())
        })
        .unwrap();
    assert_eq!(top, role, "component 3's strongest category: {c3:?}");
    assert!(
        c3[role].auc_vs_harmless < 0.05 && c3[role].cohen_d < -2.0,
        "{:?}",
        c3[role]
    );
    assert_eq!(c3[role].n, N / 4);
    // ...and on C1 the harmful categories sit high, the harmless low.
    let weapons = cats.iter().position(|c| c.name == "weapons").unwrap();
    assert!(l5.categories[0][weapons].auc_vs_harmless > 0.98);

    // Noise: nothing separates.
    assert!(
        l6.components.iter().all(|s| s.auc > 0.3 && s.auc < 0.7),
        "{:?}",
        l6.components
    );
    assert!(l6.probe.acc < 0.75 && l6.dim_acc < 0.75, "{l6:?}");
}
