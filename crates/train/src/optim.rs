//! AdamW, the learning-rate schedule (linear warm-up, cosine decay) and gradient clipping.

/// Learning rate at `step` (0-based) of `total`: linear warm-up over the first
/// `warmup_steps` steps to `base`, then cosine decay to `base · min_ratio` at the last step.
pub fn lr_at(step: usize, total: usize, base: f64, warmup_steps: usize, min_ratio: f64) -> f64 {
    if step < warmup_steps {
        return base * (step + 1) as f64 / warmup_steps as f64;
    }
    let span = total.saturating_sub(warmup_steps).saturating_sub(1).max(1);
    let progress = ((step - warmup_steps) as f64 / span as f64).min(1.0);
    let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    base * (min_ratio + (1.0 - min_ratio) * cos)
}

/// Scales all gradients so their global L2 norm is at most `max_norm` (when positive);
/// returns the norm before clipping.
pub fn clip_global_norm(grads: &mut [Vec<f32>], max_norm: f64) -> f64 {
    let norm = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&v| v as f64 * v as f64)
        .sum::<f64>()
        .sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let s = (max_norm / (norm + 1e-12)) as f32;
        for g in grads.iter_mut() {
            g.iter_mut().for_each(|v| *v *= s);
        }
    }
    norm
}

/// AdamW (Loshchilov & Hutter): Adam moments with bias correction and decoupled weight
/// decay, as `torch.optim.AdamW`.
#[derive(Debug, Clone)]
pub struct AdamW {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay (multiplied by the learning rate).
    pub weight_decay: f64,
    /// First moments, one vector per parameter.
    pub m: Vec<Vec<f32>>,
    /// Second moments.
    pub v: Vec<Vec<f32>>,
    /// Steps taken.
    pub t: usize,
}

impl AdamW {
    /// Zero moments for parameters of the given sizes.
    pub fn new(sizes: &[usize], weight_decay: f64) -> Self {
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            t: 0,
        }
    }

    /// One update of every parameter in place.
    pub fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>], lr: f64) {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        for (((p, g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(self.m.iter_mut())
            .zip(self.v.iter_mut())
        {
            for i in 0..p.len() {
                let gi = g[i] as f64;
                let mi = b1 * m[i] as f64 + (1.0 - b1) * gi;
                let vi = b2 * v[i] as f64 + (1.0 - b2) * gi * gi;
                m[i] = mi as f32;
                v[i] = vi as f32;
                let upd = (mi / c1) / ((vi / c2).sqrt() + self.eps);
                let pi = p[i] as f64;
                p[i] = (pi - lr * (upd + self.weight_decay * pi)) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_shape() {
        let (total, warm) = (100, 10);
        assert!((lr_at(0, total, 1.0, warm, 0.0) - 0.1).abs() < 1e-12);
        assert!((lr_at(9, total, 1.0, warm, 0.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(10, total, 1.0, warm, 0.0) - 1.0).abs() < 1e-12);
        assert!(lr_at(99, total, 1.0, warm, 0.0).abs() < 1e-12);
        assert!((lr_at(99, total, 1.0, warm, 0.1) - 0.1).abs() < 1e-12);
        let mid = lr_at(10 + 89 / 2, total, 1.0, warm, 0.0);
        assert!((mid - 0.5).abs() < 0.02, "{mid}");
        for s in 10..99 {
            assert!(lr_at(s + 1, total, 1.0, warm, 0.0) <= lr_at(s, total, 1.0, warm, 0.0));
        }
    }

    #[test]
    fn clipping() {
        let mut g = vec![vec![3.0f32], vec![4.0]];
        let n = clip_global_norm(&mut g, 1.0);
        assert!((n - 5.0).abs() < 1e-9);
        assert!((g[0][0] - 0.6).abs() < 1e-6 && (g[1][0] - 0.8).abs() < 1e-6);
        let mut g = vec![vec![0.3f32]];
        clip_global_norm(&mut g, 1.0);
        assert_eq!(g[0][0], 0.3);
    }

    #[test]
    fn adamw_matches_torch() {
        // torch.optim.AdamW([p], lr=0.1, weight_decay=0.01), p = [1.0, -2.0], grads
        // [0.5, 0.1] then [-0.2, 0.3]; values from the update rule written out by hand.
        let mut p = vec![vec![1.0f32, -2.0]];
        let mut opt = AdamW::new(&[2], 0.01);
        opt.step(&mut p, &[vec![0.5, 0.1]], 0.1);
        // First step: m̂/√v̂ = sign(g) → p − 0.1·(1 + 0.01·p)
        assert!((p[0][0] - (1.0 - 0.1 * (1.0 + 0.01))).abs() < 1e-6);
        assert!((p[0][1] - (-2.0 - 0.1 * (1.0 - 0.02))).abs() < 1e-6);
        opt.step(&mut p, &[vec![-0.2, 0.3]], 0.1);
        let (b1, b2) = (0.9f64, 0.999f64);
        let m = b1 * (0.1 * 0.5) + 0.1 * -0.2;
        let v = b2 * (0.001 * 0.25) + 0.001 * 0.04;
        let upd = (m / (1.0 - b1 * b1)) / ((v / (1.0 - b2 * b2)).sqrt() + 1e-8);
        let p0 = 1.0 - 0.1 * 1.01;
        let want = p0 - 0.1 * (upd + 0.01 * p0);
        assert!(
            (p[0][0] as f64 - want).abs() < 1e-6,
            "{} vs {want}",
            p[0][0]
        );
    }
}
