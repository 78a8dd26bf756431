//! The AttnLRP rules of the ops against their formulas, and the attribution engine against
//! finite differences (exact rules) and its invariants (sign of the direction, batching,
//! starting layer).

use candle_core::{Device, Tensor, Var};
use hd_grad::attrib::{Target, Traced};
use hd_grad::diff::{to_vec, DiffModel, DiffRequest, Packed};
use hd_grad::ops::{self, AttnSpec};
use hd_grad::Rules;
use hd_lm::config::Act;
use hd_lm::Arch;
use hd_rng::SplitMix64;
use hd_testkit::{tiny_config, tiny_weights};

fn rand_vec(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|_| ((r.next_f64() * 2.0 - 1.0) as f32) * scale)
        .collect()
}

fn var(shape: &[usize], seed: u64, scale: f32) -> Var {
    let n = shape.iter().product();
    Var::from_vec(rand_vec(n, seed, scale), shape, &Device::Cpu).unwrap()
}

/// `Σ out ∘ R` for a fixed random `R`, and `R` itself (the upstream gradient).
fn probe(out: &Tensor, seed: u64) -> (Tensor, Vec<f32>) {
    let r = rand_vec(out.elem_count(), seed, 1.0);
    let rt = Tensor::from_vec(r.clone(), out.dims(), &Device::Cpu).unwrap();
    ((out * &rt).unwrap().sum_all().unwrap(), r)
}

fn assert_close(name: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{name}: sizes");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{name}: max abs diff {worst} (scale {scale}, tol {tol})"
    );
}

#[test]
fn lrp_rms_norm_holds_the_rsqrt_constant() {
    let (rows, d, eps) = (5, 8, 1e-5);
    let x = var(&[rows, d], 1, 1.0);
    let g = rand_vec(d, 2, 0.3)
        .iter()
        .map(|v| v + 1.0)
        .collect::<Vec<_>>();
    let gt = Tensor::from_vec(g.clone(), d, &Device::Cpu).unwrap();
    let y = ops::rms_norm_with(x.as_tensor(), &gt, eps, Rules::AttnLrp).unwrap();
    let (l, r) = probe(&y, 3);
    let got = to_vec(l.backward().unwrap().get(&x).unwrap()).unwrap();
    let xv = to_vec(x.as_tensor()).unwrap();
    let mut want = vec![0.0f32; rows * d];
    for i in 0..rows {
        let row = &xv[i * d..(i + 1) * d];
        let ms = row.iter().map(|v| (v * v) as f64).sum::<f64>() / d as f64;
        let inv = (1.0 / (ms + eps).sqrt()) as f32;
        for j in 0..d {
            want[i * d + j] = inv * g[j] * r[i * d + j];
        }
    }
    assert_close("rms_norm AttnLRP dx", &got, &want, 1e-5);
    // The exact rule differs (the test can fail).
    let y = ops::rms_norm(x.as_tensor(), &gt, eps).unwrap();
    let exact = to_vec(probe(&y, 3).0.backward().unwrap().get(&x).unwrap()).unwrap();
    let diff = exact
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff > 1e-3, "exact and AttnLRP gradients coincide");
}

#[test]
fn lrp_silu_mul_identity_and_uniform_rules() {
    let (rows, ff) = (4, 6);
    let gu = var(&[rows, 2 * ff], 4, 2.0);
    let y = ops::silu_mul_with(gu.as_tensor(), ff, Rules::AttnLrp).unwrap();
    let (l, r) = probe(&y, 5);
    let got = to_vec(l.backward().unwrap().get(&gu).unwrap()).unwrap();
    let v = to_vec(gu.as_tensor()).unwrap();
    let mut want = vec![0.0f32; v.len()];
    for i in 0..rows {
        for j in 0..ff {
            let (a, b) = (v[i * 2 * ff + j] as f64, v[i * 2 * ff + ff + j] as f64);
            let act_over_x = 1.0 / (1.0 + (-a).exp()); // silu(a)/a
            let dy = r[i * ff + j] as f64;
            want[i * 2 * ff + j] = (0.5 * dy * b * act_over_x) as f32;
            want[i * 2 * ff + ff + j] = (0.5 * dy * a * act_over_x) as f32;
        }
    }
    assert_close("silu_mul AttnLRP", &got, &want, 1e-5);
}

/// GeGLU as lxt's `gated_mlp_forward` on Gemma 3: `gelu_tanh(a)/a` in place of the slope
/// (identity rule), half the product's gradient to each factor (uniform rule).
#[test]
fn lrp_gelu_mul_identity_and_uniform_rules() {
    let (rows, ff) = (4, 6);
    let gu = var(&[rows, 2 * ff], 8, 3.0);
    let grad = |rules| {
        let y = ops::gated_mul_with(gu.as_tensor(), ff, Act::GeluTanh, rules).unwrap();
        let (l, r) = probe(&y, 9);
        (to_vec(l.backward().unwrap().get(&gu).unwrap()).unwrap(), r)
    };
    let ((got, r), (exact, _)) = (grad(Rules::AttnLrp), grad(Rules::Exact));
    let v = to_vec(gu.as_tensor()).unwrap();
    let mut want = vec![0.0f32; v.len()];
    for i in 0..rows {
        for j in 0..ff {
            let (a, b) = (v[i * 2 * ff + j] as f64, v[i * 2 * ff + ff + j] as f64);
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let gelu = 0.5 * a * (1.0 + (c * (a + 0.044715 * a.powi(3))).tanh());
            let dy = r[i * ff + j] as f64;
            want[i * 2 * ff + j] = (0.5 * dy * b * gelu / a) as f32;
            want[i * 2 * ff + ff + j] = (0.5 * dy * gelu) as f32;
        }
    }
    assert_close("gelu_mul AttnLRP", &got, &want, 1e-5);
    // The exact gradient differs (the test can fail).
    let diff = exact
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff > 1e-2, "exact and AttnLRP gradients coincide");
}

#[test]
fn lrp_attention_scales_q_k_by_a_quarter_and_v_by_a_half() {
    let (nh, nkv, hd) = (4, 2, 8);
    let lengths = [5, 3];
    let n: usize = lengths.iter().sum();
    let w = (nh + 2 * nkv) * hd;
    let qkv = var(&[n, w], 6, 1.0);
    let inv_freq: Vec<f64> = (0..hd / 2)
        .map(|i| 1.0 / 10_000f64.powf(2.0 * i as f64 / hd as f64))
        .collect();
    let spec = AttnSpec::packed(&lengths, nh, nkv, hd, &inv_freq).unwrap();
    let grad = |rules| {
        let y = ops::attention_with(qkv.as_tensor(), &spec, rules).unwrap();
        to_vec(probe(&y, 7).0.backward().unwrap().get(&qkv).unwrap()).unwrap()
    };
    let (exact, lrp) = (grad(Rules::Exact), grad(Rules::AttnLrp));
    let want: Vec<f32> = exact
        .iter()
        .enumerate()
        .map(|(i, &g)| {
            let c = i % w;
            g * if c < (nh + nkv) * hd { 0.25 } else { 0.5 }
        })
        .collect();
    assert_close("attention AttnLRP", &lrp, &want, 1e-6);
}

fn tiny(arch: Arch) -> DiffModel {
    let cfg = tiny_config(arch, 40, true);
    let w = tiny_weights(&cfg, 11);
    DiffModel::new(cfg, w).unwrap()
}

fn seqs() -> Vec<Vec<u32>> {
    vec![
        vec![3, 17, 5, 22, 9, 31, 2],
        vec![8, 1, 14, 27, 6],
        vec![12, 30, 19, 4, 25, 11, 7, 36, 21],
    ]
}

/// `c·h_layer` at the last row of each sequence for given embeddings (plain forward).
fn projections(m: &DiffModel, seqs: &[&[u32]], emb: &[f32], layer: usize, c: &[f32]) -> Vec<f64> {
    let packed = Packed::new(seqs);
    let d = m.config.hidden_size;
    let e = Tensor::from_vec(emb.to_vec(), (packed.n_rows(), d), &Device::Cpu).unwrap();
    let out = m
        .forward(
            &packed,
            &DiffRequest {
                capture: vec![layer],
                start: Some((0, e)),
                ..Default::default()
            },
        )
        .unwrap();
    let h = to_vec(&out.hidden[0].1).unwrap();
    (0..seqs.len())
        .map(|s| {
            let r = packed.row(s, seqs[s].len() - 1);
            h[r * d..(r + 1) * d]
                .iter()
                .zip(c)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum()
        })
        .collect()
}

#[test]
fn exact_rules_match_finite_differences() {
    for arch in [Arch::Llama, Arch::Qwen2] {
        let m = tiny(arch);
        let s = seqs();
        let refs: Vec<&[u32]> = s.iter().map(Vec::as_slice).collect();
        let d = m.config.hidden_size;
        let c = rand_vec(d, 21, 1.0);
        for layer in [2, m.config.num_layers] {
            let t = Traced::run(&m, &refs, 0, &[layer], false, Rules::Exact).unwrap();
            let target = Target::Projection {
                layer,
                direction: &c,
            };
            let g = t.input_grad(&target).unwrap();
            let emb = t.input().unwrap();
            let base = projections(&m, &refs, &emb, layer, &c);
            // The seed is Σ_s (c·h_s)/(c·h_s)₀: d/dx of sequence s's term is ∇(c·h_s)/(c·h_s)₀.
            let mut rng = SplitMix64::new(5);
            let eps = 1e-2f32;
            for _ in 0..24 {
                let i = rng.below(emb.len() as u64) as usize;
                let row = i / d;
                let seq = (0..refs.len())
                    .find(|&q| (0..refs[q].len()).any(|p| t.row(q, p) == row))
                    .unwrap();
                let mut p = emb.clone();
                p[i] += eps;
                let up = projections(&m, &refs, &p, layer, &c)[seq];
                p[i] -= 2.0 * eps;
                let down = projections(&m, &refs, &p, layer, &c)[seq];
                let fd = (up - down) / (2.0 * eps as f64) / base[seq];
                let err = (fd - g[i] as f64).abs();
                let scale = g.iter().map(|v| v.abs()).fold(0.0, f32::max) as f64;
                assert!(
                    err < 2e-2 * scale.max(1e-6),
                    "{arch:?} layer {layer} entry {i}: analytic {} vs finite difference {fd}",
                    g[i]
                );
            }
        }
    }
}

#[test]
fn log_odds_gradient_matches_finite_differences() {
    let m = tiny(Arch::Llama);
    let s = seqs();
    let refs: Vec<&[u32]> = s.iter().map(Vec::as_slice).collect();
    let ids = [3u32, 9, 20];
    let t = Traced::run(&m, &refs, 0, &[], true, Rules::Exact).unwrap();
    let target = Target::LogOdds { ids: &ids };
    let g = t.input_grad(&target).unwrap();
    let emb = t.input().unwrap();
    let d = m.config.hidden_size;
    let value = |e: &[f32]| -> f64 {
        let packed = Packed::new(&refs);
        let last: Vec<usize> = (0..refs.len())
            .map(|q| packed.row(q, refs[q].len() - 1))
            .collect();
        let et = Tensor::from_vec(e.to_vec(), (packed.n_rows(), d), &Device::Cpu).unwrap();
        let out = m
            .forward(
                &packed,
                &DiffRequest {
                    logit_rows: Some(last),
                    start: Some((0, et)),
                    ..Default::default()
                },
            )
            .unwrap();
        let lg = to_vec(out.logits.as_ref().unwrap()).unwrap();
        let v = m.config.vocab_size;
        lg.chunks(v)
            .map(|row| {
                let lp = hd_lm::kernels::log_softmax(row);
                hd_analysis_free_score(&lp, &ids)
            })
            .sum()
    };
    let mut rng = SplitMix64::new(8);
    let scale = g.iter().map(|v| v.abs()).fold(0.0, f32::max) as f64;
    for _ in 0..24 {
        let i = rng.below(emb.len() as u64) as usize;
        let mut p = emb.clone();
        p[i] += 1e-2;
        let up = value(&p);
        p[i] -= 2e-2;
        let down = value(&p);
        let fd = (up - down) / 2e-2;
        assert!(
            (fd - g[i] as f64).abs() < 2e-2 * scale,
            "entry {i}: analytic {} vs finite difference {fd}",
            g[i]
        );
    }
}

/// The log-odds written out independently of the engine: log p − log(1 − p).
fn hd_analysis_free_score(lp: &[f32], ids: &[u32]) -> f64 {
    let p: f64 = ids.iter().map(|&t| (lp[t as usize] as f64).exp()).sum();
    p.ln() - (1.0 - p).ln()
}

#[test]
fn attnlrp_relevance_does_not_depend_on_the_sign_of_the_direction() {
    let m = tiny(Arch::Qwen2);
    let s = seqs();
    let refs: Vec<&[u32]> = s.iter().map(Vec::as_slice).collect();
    let c = rand_vec(m.config.hidden_size, 31, 1.0);
    let neg: Vec<f32> = c.iter().map(|v| -v).collect();
    let t = Traced::run(&m, &refs, 0, &[2], false, Rules::AttnLrp).unwrap();
    let r = |dir: &[f32]| {
        t.relevance(&Target::Projection {
            layer: 2,
            direction: dir,
        })
        .unwrap()
    };
    let (a, b) = (r(&c), r(&neg));
    assert_close("relevance(c) vs relevance(-c)", &a, &b, 1e-6);
    assert!(a.iter().any(|v| v.abs() > 1e-3), "relevances are all zero");
}

#[test]
fn relevance_of_a_sequence_does_not_depend_on_its_batch() {
    let m = tiny(Arch::Llama);
    let s = seqs();
    let refs: Vec<&[u32]> = s.iter().map(Vec::as_slice).collect();
    let c = rand_vec(m.config.hidden_size, 41, 1.0);
    let target = Target::Projection {
        layer: 3,
        direction: &c,
    };
    let all = Traced::run(&m, &refs, 0, &[3], false, Rules::AttnLrp).unwrap();
    let rel_all = all.relevance(&target).unwrap();
    for (q, seq) in refs.iter().enumerate() {
        let one = Traced::run(&m, &[seq], 0, &[3], false, Rules::AttnLrp).unwrap();
        let rel = one.relevance(&target).unwrap();
        let in_batch: Vec<f32> = (0..seq.len()).map(|p| rel_all[all.row(q, p)]).collect();
        assert_close(&format!("sequence {q}"), &in_batch, &rel, 1e-4);
    }
}

#[test]
fn gradient_from_a_layer_matches_finite_differences() {
    let m = tiny(Arch::Llama);
    let s = seqs();
    let refs: Vec<&[u32]> = s.iter().map(Vec::as_slice).collect();
    let d = m.config.hidden_size;
    let c = rand_vec(d, 51, 1.0);
    let (from, layer) = (1, 3);
    let t = Traced::run(&m, &refs, from, &[layer], false, Rules::Exact).unwrap();
    assert_eq!(t.input_layer(), from);
    let g = t
        .input_grad(&Target::Projection {
            layer,
            direction: &c,
        })
        .unwrap();
    let h = t.input().unwrap();
    let packed = Packed::new(&refs);
    let value = |x: &[f32], seq: usize| -> f64 {
        let xt = Tensor::from_vec(x.to_vec(), (packed.n_rows(), d), &Device::Cpu).unwrap();
        let out = m
            .forward(
                &packed,
                &DiffRequest {
                    capture: vec![layer],
                    start: Some((from, xt)),
                    ..Default::default()
                },
            )
            .unwrap();
        let hl = to_vec(&out.hidden[0].1).unwrap();
        let r = packed.row(seq, refs[seq].len() - 1);
        hl[r * d..(r + 1) * d]
            .iter()
            .zip(&c)
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum()
    };
    let scale = g.iter().map(|v| v.abs()).fold(0.0, f32::max) as f64;
    let mut rng = SplitMix64::new(9);
    for _ in 0..16 {
        let i = rng.below(h.len() as u64) as usize;
        let seq = (0..refs.len())
            .find(|&q| (0..refs[q].len()).any(|p| packed.row(q, p) == i / d))
            .unwrap();
        let base = value(&h, seq);
        let mut p = h.clone();
        p[i] += 1e-2;
        let up = value(&p, seq);
        p[i] -= 2e-2;
        let down = value(&p, seq);
        let fd = (up - down) / 2e-2 / base;
        assert!(
            (fd - g[i] as f64).abs() < 2e-2 * scale,
            "entry {i}: analytic {} vs finite difference {fd}",
            g[i]
        );
    }
}

#[test]
fn a_shared_prefix_changes_nothing_past_it() {
    let m = tiny(Arch::Qwen2);
    // Three sequences with a common 5-token prefix, then their own tokens.
    let head = [3u32, 9, 4, 17, 8];
    let s: Vec<Vec<u32>> = [vec![5u32, 11, 2], vec![30, 6], vec![12, 1, 19, 7]]
        .into_iter()
        .map(|tail| head.iter().copied().chain(tail).collect())
        .collect();
    let refs: Vec<&[u32]> = s.iter().map(Vec::as_slice).collect();
    let c = rand_vec(m.config.hidden_size, 43, 1.0);
    let target = Target::Projection {
        layer: 3,
        direction: &c,
    };
    let sep = Traced::run(&m, &refs, 0, &[3], false, Rules::AttnLrp).unwrap();
    let shared = Traced::run_shared(&m, &refs, 0, &[3], false, Rules::AttnLrp, 64).unwrap();
    assert_eq!((sep.prefix(), shared.prefix()), (0, 5));
    let (a, b) = (
        sep.relevance(&target).unwrap(),
        shared.relevance(&target).unwrap(),
    );
    assert_close(
        "values",
        &sep.values(&target).unwrap(),
        &shared.values(&target).unwrap(),
        1e-5,
    );
    let (sa, sb) = (sep.states(3).unwrap(), shared.states(3).unwrap());
    let d = m.config.hidden_size;
    for (q, seq) in refs.iter().enumerate() {
        let got: Vec<f32> = (5..seq.len()).map(|p| b[shared.row(q, p)]).collect();
        let want: Vec<f32> = (5..seq.len()).map(|p| a[sep.row(q, p)]).collect();
        assert_close(&format!("sequence {q} relevance"), &got, &want, 1e-4);
        for p in 0..seq.len() {
            let (rs, rh) = (shared.state_row(q, p), sep.state_row(q, p));
            assert_close(
                &format!("sequence {q} state {p}"),
                &sb[rs * d..(rs + 1) * d],
                &sa[rh * d..(rh + 1) * d],
                1e-5,
            );
        }
    }
    // At most `max_prefix` tokens are shared, and prefix rows have no per-sequence row.
    let short = Traced::run_shared(&m, &refs, 0, &[3], false, Rules::AttnLrp, 2).unwrap();
    assert_eq!(short.prefix(), 2);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.row(0, 4)));
    assert!(
        caught.is_err(),
        "a shared row was handed out as a sequence's own"
    );
}
