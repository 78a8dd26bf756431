//! Gradients of the fused ops and of the whole differentiable forward, checked against central
//! finite differences, and the ops' values and gradients checked against the same maths written
//! with elementary candle ops.

use candle_core::{DType, Device, Tensor, Var, D};
use hd_grad::diff::{to_vec, DiffModel, DiffRequest, Method, Module, Packed};
use hd_grad::ops::{self, AttnSpec, Span};
use hd_lm::config::Act;
use hd_rng::SplitMix64;

use hd_testkit::{tiny_config, tiny_weights};

fn dev() -> Device {
    Device::Cpu
}

fn rand_vec(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..n)
        .map(|_| ((r.next_f64() * 2.0 - 1.0) as f32) * scale)
        .collect()
}

fn var(shape: &[usize], seed: u64, scale: f32) -> Var {
    let n = shape.iter().product();
    Var::from_vec(rand_vec(n, seed, scale), shape, &dev()).unwrap()
}

/// `Σ out ∘ R` in f64 with a fixed random `R`: a scalar whose gradient reaches every output.
fn probe_loss(out: &Tensor, seed: u64) -> (Tensor, f64) {
    let r = Tensor::from_vec(rand_vec(out.elem_count(), seed, 1.0), out.dims(), &dev()).unwrap();
    let l = (out * &r).unwrap().sum_all().unwrap();
    let v = to_vec(out)
        .unwrap()
        .iter()
        .zip(to_vec(&r).unwrap())
        .map(|(&a, b)| a as f64 * b as f64)
        .sum();
    (l, v)
}

/// Compares the analytic gradient of `f` w.r.t. `x` with central differences at `k` entries.
fn fd_check(name: &str, x: &Var, analytic: &Tensor, k: usize, eps: f32, f: &dyn Fn() -> f64) {
    let base = to_vec(x.as_tensor()).unwrap();
    let g = to_vec(analytic).unwrap();
    assert_eq!(g.len(), base.len(), "{name}: gradient shape");
    let scale = g.iter().map(|v| v.abs() as f64).sum::<f64>() / g.len() as f64;
    let mut r = SplitMix64::new(99);
    let mut worst = 0.0f64;
    for _ in 0..k {
        let i = r.below(base.len() as u64) as usize;
        let mut p = base.clone();
        p[i] = base[i] + eps;
        x.set(&Tensor::from_vec(p.clone(), x.dims(), &dev()).unwrap())
            .unwrap();
        let lp = f();
        p[i] = base[i] - eps;
        x.set(&Tensor::from_vec(p, x.dims(), &dev()).unwrap())
            .unwrap();
        let lm = f();
        let fd = (lp - lm) / (2.0 * eps as f64);
        let err = (fd - g[i] as f64).abs() / (g[i].abs() as f64).max(scale).max(1e-6);
        worst = worst.max(err);
        assert!(
            err < 2e-2,
            "{name}[{i}]: analytic {} vs finite difference {fd} (rel err {err:.2e})",
            g[i]
        );
    }
    x.set(&Tensor::from_vec(base, x.dims(), &dev()).unwrap())
        .unwrap();
    eprintln!("{name}: worst relative error {worst:.2e} over {k} entries");
}

fn close(name: &str, a: &Tensor, b: &Tensor, tol: f32) {
    let (a, b) = (to_vec(a).unwrap(), to_vec(b).unwrap());
    assert_eq!(a.len(), b.len(), "{name}: sizes");
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{name}: max abs diff {worst} (scale {scale}, tol {tol})"
    );
}

#[test]
fn linear_grads() {
    let x = var(&[7, 5], 1, 1.0);
    let w = var(&[4, 5], 2, 1.0);
    let f = || probe_loss(&ops::linear(&x, &w).unwrap(), 3).1;
    let (l, _) = probe_loss(&ops::linear(&x, &w).unwrap(), 3);
    let g = l.backward().unwrap();
    // Reference: candle's matmul.
    let (lr, _) = probe_loss(
        &x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap(),
        3,
    );
    let gr = lr.backward().unwrap();
    close("linear dx", g.get(&x).unwrap(), gr.get(&x).unwrap(), 1e-5);
    close("linear dw", g.get(&w).unwrap(), gr.get(&w).unwrap(), 1e-5);
    fd_check("linear dx", &x, g.get(&x).unwrap(), 12, 1e-2, &f);
    fd_check("linear dw", &w, g.get(&w).unwrap(), 12, 1e-2, &f);
}

#[test]
fn lora_linear_grads() {
    let x = var(&[9, 6], 4, 1.0);
    let w = Tensor::from_vec(rand_vec(5 * 6, 5, 1.0), (5, 6), &dev()).unwrap();
    let a = var(&[3, 6], 6, 0.5);
    let b = var(&[5, 3], 7, 0.5);
    let s = 0.7;
    let run = || ops::lora_linear(&x, &w, &a, &b, s).unwrap();
    let f = || probe_loss(&run(), 8).1;
    let g = probe_loss(&run(), 8).0.backward().unwrap();
    let reference = (x.as_tensor().matmul(&w.t().unwrap()).unwrap()
        + (x.as_tensor()
            .matmul(&a.as_tensor().t().unwrap())
            .unwrap()
            .matmul(&b.as_tensor().t().unwrap())
            .unwrap()
            * s)
            .unwrap())
    .unwrap();
    close("lora value", &run(), &reference, 1e-5);
    let gr = probe_loss(&reference, 8).0.backward().unwrap();
    for (n, v) in [("dx", &x), ("dA", &a), ("dB", &b)] {
        close(n, g.get(v).unwrap(), gr.get(v).unwrap(), 1e-5);
        fd_check(&format!("lora {n}"), v, g.get(v).unwrap(), 10, 1e-2, &f);
    }
}

#[test]
fn rms_norm_grads() {
    let x = var(&[6, 8], 10, 1.0);
    let gain = Var::from_vec(
        rand_vec(8, 11, 0.3).iter().map(|v| v + 1.0).collect(),
        8,
        &dev(),
    )
    .unwrap();
    let eps = 1e-5;
    let run = || ops::rms_norm(&x, &gain, eps).unwrap();
    let f = || probe_loss(&run(), 12).1;
    let g = probe_loss(&run(), 12).0.backward().unwrap();
    let xt = x.as_tensor();
    let reference = xt
        .broadcast_div(
            &(xt.sqr().unwrap().mean_keepdim(D::Minus1).unwrap() + eps)
                .unwrap()
                .sqrt()
                .unwrap(),
        )
        .unwrap()
        .broadcast_mul(gain.as_tensor())
        .unwrap();
    close("rms value", &run(), &reference, 1e-5);
    let gr = probe_loss(&reference, 12).0.backward().unwrap();
    close("rms dx", g.get(&x).unwrap(), gr.get(&x).unwrap(), 1e-4);
    close(
        "rms dg",
        g.get(&gain).unwrap(),
        gr.get(&gain).unwrap(),
        1e-4,
    );
    fd_check("rms dx", &x, g.get(&x).unwrap(), 12, 1e-2, &f);
    fd_check("rms dg", &gain, g.get(&gain).unwrap(), 8, 1e-2, &f);
}

#[test]
fn silu_mul_grads() {
    let gu = var(&[5, 2 * 7], 13, 2.0);
    let run = || ops::silu_mul(&gu, 7).unwrap();
    let f = || probe_loss(&run(), 14).1;
    let g = probe_loss(&run(), 14).0.backward().unwrap();
    let gate = gu.as_tensor().narrow(1, 0, 7).unwrap();
    let up = gu.as_tensor().narrow(1, 7, 7).unwrap();
    let reference = (gate.silu().unwrap() * up).unwrap();
    close("silu value", &run(), &reference, 1e-5);
    let gr = probe_loss(&reference, 14).0.backward().unwrap();
    close("silu d", g.get(&gu).unwrap(), gr.get(&gu).unwrap(), 1e-4);
    fd_check("silu_mul", &gu, g.get(&gu).unwrap(), 16, 1e-2, &f);
}

/// GeGLU: hd-lm's tanh-approximated GELU, value and gradient equal to candle's `gelu` (the
/// same approximation) times `up`, and to finite differences, into the tails (|a| up to 4).
#[test]
fn gelu_tanh_mul_grads() {
    let gu = var(&[5, 2 * 7], 16, 4.0);
    let run = || ops::gated_mul_with(&gu, 7, Act::GeluTanh, hd_grad::Rules::Exact).unwrap();
    let f = || probe_loss(&run(), 17).1;
    let g = probe_loss(&run(), 17).0.backward().unwrap();
    let gate = gu.as_tensor().narrow(1, 0, 7).unwrap();
    let up = gu.as_tensor().narrow(1, 7, 7).unwrap();
    let reference = (gate.gelu().unwrap() * up).unwrap();
    close("gelu value", &run(), &reference, 1e-5);
    let gr = probe_loss(&reference, 17).0.backward().unwrap();
    close("gelu d", g.get(&gu).unwrap(), gr.get(&gu).unwrap(), 1e-4);
    fd_check("gelu_tanh_mul", &gu, g.get(&gu).unwrap(), 16, 1e-2, &f);
}

#[test]
fn cross_entropy_grads() {
    let logits = var(&[4, 11], 15, 3.0);
    let targets = [3u32, 0, 10, 3];
    let run = || ops::cross_entropy(&logits, &targets).unwrap();
    let f = || probe_loss(&run(), 16).1;
    let g = probe_loss(&run(), 16).0.backward().unwrap();
    // Reference: log-sum-exp from elementary ops minus the target logit.
    let l = logits.as_tensor();
    let m = l.max_keepdim(D::Minus1).unwrap();
    let lse = (l
        .broadcast_sub(&m)
        .unwrap()
        .exp()
        .unwrap()
        .sum_keepdim(D::Minus1)
        .unwrap()
        .log()
        .unwrap()
        + &m)
        .unwrap()
        .squeeze(1)
        .unwrap();
    let idx = Tensor::new(&targets, &dev()).unwrap().unsqueeze(1).unwrap();
    let picked = l.gather(&idx, 1).unwrap().squeeze(1).unwrap();
    let reference = (lse - picked).unwrap();
    close("ce value", &run(), &reference, 1e-5);
    let gr = probe_loss(&reference, 16).0.backward().unwrap();
    close(
        "ce d",
        g.get(&logits).unwrap(),
        gr.get(&logits).unwrap(),
        1e-4,
    );
    fd_check(
        "cross_entropy",
        &logits,
        g.get(&logits).unwrap(),
        16,
        1e-2,
        &f,
    );
}

/// Attention written with elementary candle ops, one sequence at a time (the reference).
fn attention_reference(
    qkv: &Tensor,
    lengths: &[usize],
    nh: usize,
    nkv: usize,
    hd: usize,
    inv_freq: &[f64],
) -> Tensor {
    let mut outs = Vec::new();
    let mut start = 0;
    for &len in lengths {
        let x = qkv.narrow(0, start, len).unwrap();
        start += len;
        let half = hd / 2;
        let mut cos = vec![0f32; len * half];
        let mut sin = vec![0f32; len * half];
        for p in 0..len {
            for i in 0..half {
                let a = (p as f32 * inv_freq[i] as f32) as f64;
                cos[p * half + i] = a.cos() as f32;
                sin[p * half + i] = a.sin() as f32;
            }
        }
        let cos = Tensor::from_vec(cos, (len, half), &dev()).unwrap();
        let sin = Tensor::from_vec(sin, (len, half), &dev()).unwrap();
        let cos = Tensor::cat(&[&cos, &cos], 1).unwrap();
        let sin = Tensor::cat(&[&sin, &sin], 1).unwrap();
        let rope = |t: &Tensor| {
            let a = t.narrow(1, 0, half).unwrap();
            let b = t.narrow(1, half, half).unwrap();
            let rot = Tensor::cat(&[&b.neg().unwrap(), &a], 1).unwrap();
            ((t * &cos).unwrap() + (rot * &sin).unwrap()).unwrap()
        };
        let mut mask = vec![0f32; len * len];
        for i in 0..len {
            for j in i + 1..len {
                mask[i * len + j] = -1e9;
            }
        }
        let mask = Tensor::from_vec(mask, (len, len), &dev()).unwrap();
        let mut heads = Vec::new();
        for h in 0..nh {
            let kvh = h / (nh / nkv);
            let q = rope(&x.narrow(1, h * hd, hd).unwrap());
            let k = rope(&x.narrow(1, (nh + kvh) * hd, hd).unwrap());
            let v = x.narrow(1, (nh + nkv + kvh) * hd, hd).unwrap();
            let s = ((q.matmul(&k.t().unwrap()).unwrap() / (hd as f64).sqrt()).unwrap() + &mask)
                .unwrap();
            let m = s.max_keepdim(1).unwrap();
            let e = s.broadcast_sub(&m).unwrap().exp().unwrap();
            let p = e.broadcast_div(&e.sum_keepdim(1).unwrap()).unwrap();
            heads.push(p.matmul(&v).unwrap());
        }
        outs.push(Tensor::cat(&heads, 1).unwrap());
    }
    Tensor::cat(&outs, 0).unwrap()
}

#[test]
fn attention_grads() {
    let (nh, nkv, hd) = (4, 2, 8);
    let w = (nh + 2 * nkv) * hd;
    let lengths = [5, 1, 7];
    let n: usize = lengths.iter().sum();
    let inv_freq: Vec<f64> = (0..hd / 2)
        .map(|i| 1.0 / 10_000f64.powf(2.0 * i as f64 / hd as f64))
        .collect();
    let qkv = var(&[n, w], 20, 1.0);
    let spec = AttnSpec::packed(&lengths, nh, nkv, hd, &inv_freq).unwrap();
    let run = || ops::attention(&qkv, &spec).unwrap();
    let f = || probe_loss(&run(), 21).1;
    let g = probe_loss(&run(), 21).0.backward().unwrap();
    let reference = attention_reference(qkv.as_tensor(), &lengths, nh, nkv, hd, &inv_freq);
    close("attention value", &run(), &reference, 1e-5);
    let gr = probe_loss(&reference, 21).0.backward().unwrap();
    close(
        "attention d",
        g.get(&qkv).unwrap(),
        gr.get(&qkv).unwrap(),
        1e-4,
    );
    fd_check("attention", &qkv, g.get(&qkv).unwrap(), 30, 1e-2, &f);
}

#[test]
fn attention_with_shared_prefix_equals_separate_sequences() {
    // Two sequences sharing a 3-token prefix: packed once with a context span, or twice.
    let (nh, nkv, hd) = (2, 1, 8);
    let w = (nh + 2 * nkv) * hd;
    let inv_freq: Vec<f64> = (0..hd / 2)
        .map(|i| 1.0 / 100f64.powf(2.0 * i as f64 / hd as f64))
        .collect();
    let (p, a, b) = (3, 4, 2);
    let shared = var(&[p + a + b, w], 30, 1.0);
    let spans = vec![
        Span {
            start: 0,
            len: p,
            pos0: 0,
            ctx: None,
        },
        Span {
            start: p,
            len: a,
            pos0: p,
            ctx: Some(0),
        },
        Span {
            start: p + a,
            len: b,
            pos0: p,
            ctx: Some(0),
        },
    ];
    let spec = AttnSpec::new(spans, nh, nkv, hd, &inv_freq).unwrap();
    let y = ops::attention(&shared, &spec).unwrap();
    // The same rows duplicated: [prefix, a] and [prefix, b].
    let s = shared.as_tensor();
    let dup = Tensor::cat(
        &[
            &s.narrow(0, 0, p).unwrap(),
            &s.narrow(0, p, a).unwrap(),
            &s.narrow(0, 0, p).unwrap(),
            &s.narrow(0, p + a, b).unwrap(),
        ],
        0,
    )
    .unwrap();
    let spec2 = AttnSpec::packed(&[p + a, p + b], nh, nkv, hd, &inv_freq).unwrap();
    let y2 = ops::attention(&dup, &spec2).unwrap();
    let pick = Tensor::cat(
        &[
            &y2.narrow(0, 0, p + a).unwrap(),
            &y2.narrow(0, 2 * p + a, b).unwrap(),
        ],
        0,
    )
    .unwrap();
    close("shared-prefix attention", &y, &pick, 1e-5);
    // Gradients: the shared rows get the sum over both copies.
    let gy = probe_loss(&y, 31).0.backward().unwrap();
    let g2 = probe_loss(&pick, 31).0.backward().unwrap();
    close(
        "shared-prefix grads",
        gy.get(&shared).unwrap(),
        g2.get(&shared).unwrap(),
        1e-4,
    );
    let f = || probe_loss(&ops::attention(&shared, &spec).unwrap(), 31).1;
    fd_check(
        "shared-prefix attention",
        &shared,
        gy.get(&shared).unwrap(),
        20,
        1e-2,
        &f,
    );
}

#[test]
fn add_grads() {
    let a = var(&[3, 4], 40, 1.0);
    let b = var(&[3, 4], 41, 1.0);
    let y = ops::add(&a, &b).unwrap();
    close("add", &y, &(a.as_tensor() + b.as_tensor()).unwrap(), 0.0);
    let g = probe_loss(&y, 42).0.backward().unwrap();
    close("add da", g.get(&a).unwrap(), g.get(&b).unwrap(), 0.0);
}

fn lora_model(arch: hd_lm::Arch, tie: bool) -> DiffModel {
    let cfg = tiny_config(arch, 40, tie);
    let w = tiny_weights(&cfg, 50);
    let mut m = DiffModel::new(cfg, w).unwrap();
    let method = Method::Lora {
        rank: 2,
        alpha: 4.0,
        modules: Module::ALL.to_vec(),
    };
    m.make_trainable(&method, 0..m.config.num_layers, 7)
        .unwrap();
    // Non-zero B so every adapter parameter has a gradient.
    for (i, (_, v)) in m.trainable().iter().enumerate() {
        v.set(
            &Tensor::from_vec(
                rand_vec(v.elem_count(), 60 + i as u64, 0.3),
                v.dims(),
                &dev(),
            )
            .unwrap(),
        )
        .unwrap();
    }
    m
}

fn token_loss(m: &DiffModel, packed: &Packed, rows: &[usize], targets: &[u32]) -> Tensor {
    let out = m
        .forward(
            packed,
            &DiffRequest {
                logit_rows: Some(rows.to_vec()),
                ..Default::default()
            },
        )
        .unwrap();
    ops::cross_entropy(out.logits.as_ref().unwrap(), targets)
        .unwrap()
        .mean_all()
        .unwrap()
}

#[test]
fn model_lora_grads_match_finite_differences() {
    for (arch, tie) in [(hd_lm::Arch::Llama, true), (hd_lm::Arch::Qwen2, false)] {
        let m = lora_model(arch, tie);
        let seqs: Vec<Vec<u32>> = vec![vec![1, 5, 9, 2, 7, 3], vec![1, 5, 4, 8]];
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let packed = Packed::new(&refs);
        let rows: Vec<usize> = vec![packed.row(0, 3), packed.row(0, 4), packed.row(1, 2)];
        let targets = [7u32, 3, 8];
        let loss = token_loss(&m, &packed, &rows, &targets);
        let g = loss.backward().unwrap();
        let f = || {
            token_loss(&m, &packed, &rows, &targets)
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        for (name, v) in m
            .trainable()
            .iter()
            .filter(|(n, _)| n.starts_with("layers.0.") || n.starts_with("layers.2."))
        {
            let gv = g
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            fd_check(&format!("{arch:?} {name}"), v, gv, 4, 5e-3, &f);
        }
    }
}

#[test]
fn full_method_grads_match_finite_differences() {
    let cfg = tiny_config(hd_lm::Arch::Llama, 40, true);
    let mut m = DiffModel::new(cfg.clone(), tiny_weights(&cfg, 51)).unwrap();
    m.make_trainable(&Method::Full, 1..3, 0).unwrap();
    let seqs = [vec![1u32, 5, 9, 2, 7, 3]];
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let packed = Packed::new(&refs);
    let rows = vec![2usize, 4];
    let targets = [2u32, 3];
    let g = token_loss(&m, &packed, &rows, &targets).backward().unwrap();
    let f = || {
        token_loss(&m, &packed, &rows, &targets)
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    for (name, v) in m.trainable() {
        let gv = g
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        fd_check(name, v, gv, 3, 5e-3, &f);
    }
}

#[test]
fn gradient_at_a_hidden_state() {
    // The attribution use: start from h_l as a Var, seed at a later hidden state.
    let cfg = tiny_config(hd_lm::Arch::Llama, 40, true);
    let m = DiffModel::new(cfg.clone(), tiny_weights(&cfg, 52)).unwrap();
    let ids = [1u32, 6, 3, 9, 2];
    let packed = Packed::new(&[&ids]);
    let h1 = m
        .forward(
            &packed,
            &DiffRequest {
                capture: vec![1],
                ..Default::default()
            },
        )
        .unwrap()
        .hidden[0]
        .1
        .clone();
    let hv = Var::from_tensor(&h1).unwrap();
    let c = Tensor::from_vec(
        rand_vec(cfg.hidden_size, 53, 1.0),
        (cfg.hidden_size, 1),
        &dev(),
    )
    .unwrap();
    let seed = |hv: &Var| {
        let out = m
            .forward(
                &packed,
                &DiffRequest {
                    capture: vec![3],
                    start: Some((1, hv.as_tensor().clone())),
                    ..Default::default()
                },
            )
            .unwrap();
        out.hidden[0]
            .1
            .narrow(0, ids.len() - 1, 1)
            .unwrap()
            .matmul(&c)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let g = seed(&hv).backward().unwrap();
    let gh = g.get(hv.as_tensor()).unwrap();
    let f = || seed(&hv).to_scalar::<f32>().unwrap() as f64;
    fd_check("d seed / d h_1", &hv, gh, 12, 1e-2, &f);
    // Causality: positions after the seed position get no gradient... here the seed is the
    // last position, so every row may; the first row's gradient must still be finite.
    assert!(to_vec(gh).unwrap().iter().all(|v| v.is_finite()));
    let _ = DType::F32;
}

#[test]
fn shared_prefix_packing_matches_plain_packing() {
    let m = lora_model(hd_lm::Arch::Llama, true);
    let seqs: Vec<Vec<u32>> = vec![
        vec![1, 5, 9, 2, 7, 3],
        vec![1, 5, 9, 4, 8],
        vec![1, 5, 9, 2, 6],
    ];
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let plain = Packed::new(&refs);
    let shared = Packed::with_shared_prefix(&refs, 64);
    assert_eq!(shared.prefix, 3);
    assert_eq!(shared.n_rows(), 3 + 3 + 2 + 2);
    let pick =
        |p: &Packed| -> Vec<usize> { vec![p.row(0, 4), p.row(1, 3), p.row(2, 2), p.row(2, 4)] };
    let targets = [3u32, 8, 2, 0];
    let l1 = token_loss(&m, &plain, &pick(&plain), &targets);
    let l2 = token_loss(&m, &shared, &pick(&shared), &targets);
    let (a, b) = (
        l1.to_scalar::<f32>().unwrap(),
        l2.to_scalar::<f32>().unwrap(),
    );
    assert!((a - b).abs() < 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    let (g1, g2) = (l1.backward().unwrap(), l2.backward().unwrap());
    for (name, v) in m.trainable() {
        close(
            name,
            g1.get(v.as_tensor()).unwrap(),
            g2.get(v.as_tensor()).unwrap(),
            1e-4,
        );
    }
}

#[test]
fn forward_matches_hd_lm() {
    for (arch, tie) in [(hd_lm::Arch::Llama, true), (hd_lm::Arch::Qwen2, false)] {
        let cfg = tiny_config(arch, 40, tie);
        let w = tiny_weights(&cfg, 54);
        let seqs: Vec<Vec<u32>> = vec![vec![1, 5, 9, 2, 7, 3, 30, 31, 39], vec![1, 5, 4, 8]];
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let l = cfg.num_layers;
        let fast = hd_lm::Forward::new(&cfg, &w)
            .run(
                &refs,
                &hd_lm::Request {
                    capture_layers: (0..=l).collect(),
                    capture_positions: hd_lm::Positions::All,
                    interventions: vec![],
                    logits: true,
                },
            )
            .unwrap();
        let m = DiffModel::new(cfg.clone(), w.clone()).unwrap();
        let packed = Packed::new(&refs);
        let out = m
            .forward(
                &packed,
                &DiffRequest {
                    capture: (0..=l).collect(),
                    logit_rows: Some(vec![8, 12]),
                    ..Default::default()
                },
            )
            .unwrap();
        for ((i, ours), (j, theirs)) in out.hidden.iter().zip(&fast.captured) {
            assert_eq!(i, j);
            let t = Tensor::from_vec(theirs.clone(), ours.dims(), &dev()).unwrap();
            close(&format!("{arch:?} hidden {i}"), ours, &t, 1e-5);
        }
        let lg = fast.logits.unwrap();
        let t = Tensor::from_vec(lg, (2, cfg.vocab_size), &dev()).unwrap();
        close(
            &format!("{arch:?} logits"),
            out.logits.as_ref().unwrap(),
            &t,
            1e-5,
        );
        // Merging zero-B adapters changes nothing; merged non-zero adapters equal the
        // adapted forward.
        let lm = lora_model(arch, tie);
        let merged = lm.merged_weights().unwrap();
        let plain = DiffModel::new(lm.config.clone(), merged).unwrap();
        let req = DiffRequest {
            capture: vec![l],
            ..Default::default()
        };
        let a = lm.forward(&packed, &req).unwrap().hidden[0].1.clone();
        let b = plain.forward(&packed, &req).unwrap().hidden[0].1.clone();
        close(&format!("{arch:?} merged adapters"), &a, &b, 1e-5);
    }
}

/// Gemma 2's block: Gemma 3's without q/k norms or local RoPE, plus soft-capping of the
/// attention scores and of the final logits (caps small enough to bend them): hd-lm's states
/// and logits, gradients through both caps matching finite differences; relevance rules for
/// a capped softmax are refused, not approximated.
#[test]
fn gemma2_soft_capping_states_logits_and_gradients_match() {
    let mut cfg = tiny_config(hd_lm::Arch::Gemma2, 40, true);
    let f = &mut cfg.features;
    f.sandwich_norms = true;
    f.act = hd_lm::config::Act::GeluTanh;
    f.embed_scale = Some((32f64).sqrt() as f32);
    f.query_pre_attn_scalar = Some(16.0);
    f.sliding_window = Some(3);
    f.sliding_layers = vec![true, false, true];
    f.attn_softcap = Some(1.0);
    f.final_softcap = Some(2.0);
    let w = tiny_weights(&cfg, 64);
    // the caps bend this model's scores and logits (else the test would not see them)
    let logits = |cfg: &hd_lm::Config| {
        let req = hd_lm::Request {
            capture_layers: vec![],
            capture_positions: hd_lm::Positions::Last,
            interventions: vec![],
            logits: true,
        };
        let ids = [1u32, 6, 3, 9, 2, 7, 5];
        hd_lm::Forward::new(cfg, &w)
            .run(&[&ids], &req)
            .unwrap()
            .logits
            .unwrap()
    };
    let capped = logits(&cfg);
    for uncap in [
        |c: &mut hd_lm::Config| c.features.attn_softcap = None,
        |c: &mut hd_lm::Config| c.features.final_softcap = None,
    ] {
        let mut c = cfg.clone();
        uncap(&mut c);
        let d = capped
            .iter()
            .zip(logits(&c))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(d > 1e-2, "a cap changes the logits by only {d}");
    }
    family_states_and_gradients(cfg.clone(), w.clone());
    logits_match_hd_lm_and_finite_differences(cfg.clone(), w.clone());
    let m = DiffModel::new(cfg, w).unwrap();
    let e = m
        .forward(
            &Packed::new(&[&[1u32, 2, 3]]),
            &DiffRequest {
                capture: vec![2],
                rules: hd_grad::Rules::AttnLrp,
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("soft-capped"), "{e}");
}

/// Phi-3's longrope with short factors: divided frequencies and cos/sin scaled by the
/// attention factor, as hd-lm runs them.
#[test]
fn phi3_longrope_states_match_hd_lm_and_gradients_match_finite_differences() {
    let mut cfg = tiny_config(hd_lm::Arch::Llama, 40, true);
    let w = tiny_weights(&cfg, 65);
    cfg.arch = hd_lm::Arch::Phi3;
    let half = cfg.head_dim / 2;
    cfg.features.longrope = Some(hd_lm::config::LongRope {
        short_factor: (0..half).map(|i| 1.0 + 0.7 * i as f64).collect(),
        attention_factor: 1.19,
        original_max_position_embeddings: 64,
    });
    family_states_and_gradients(cfg.clone(), w.clone());
    logits_match_hd_lm_and_finite_differences(cfg, w);
}

/// The last token's logits from the differentiable pass equal hd-lm's, and the gradient of
/// one logit with respect to the embedding-layer state matches finite differences.
fn logits_match_hd_lm_and_finite_differences(cfg: hd_lm::Config, w: hd_lm::Weights) {
    let ids = [1u32, 6, 3, 9, 2, 7, 5];
    let ours = hd_lm::Forward::new(&cfg, &w)
        .run(
            &[&ids],
            &hd_lm::Request {
                capture_layers: vec![],
                capture_positions: hd_lm::Positions::Last,
                interventions: vec![],
                logits: true,
            },
        )
        .unwrap();
    let want = ours.logits.unwrap();
    let m = DiffModel::new(cfg, w).unwrap();
    let packed = Packed::new(&[&ids]);
    let run = |start: Option<(usize, Tensor)>| {
        m.forward(
            &packed,
            &DiffRequest {
                logit_rows: Some(vec![ids.len() - 1]),
                start,
                ..Default::default()
            },
        )
        .unwrap()
        .logits
        .unwrap()
    };
    let got = to_vec(&run(None)).unwrap();
    let err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-4, "logits differ from hd-lm's by {err}");
    let h0 = m
        .forward(
            &packed,
            &DiffRequest {
                capture: vec![0],
                ..Default::default()
            },
        )
        .unwrap()
        .hidden[0]
        .1
        .clone();
    let hv = Var::from_tensor(&h0).unwrap();
    let seed = |hv: &Var| {
        run(Some((0, hv.as_tensor().clone())))
            .narrow(1, 7, 1)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let g = seed(&hv).backward().unwrap();
    let gh = g.get(hv.as_tensor()).unwrap();
    let f = || seed(&hv).to_scalar::<f32>().unwrap() as f64;
    fd_check("d logit / d h_0", &hv, gh, 12, 1e-2, &f);
}

/// Qwen3's per-head q/k norms: the differentiable forward gives hd-lm's states, and its
/// gradients match finite differences.
#[test]
fn qk_norm_states_match_hd_lm_and_gradients_match_finite_differences() {
    let mut cfg = tiny_config(hd_lm::Arch::Qwen3, 40, true);
    cfg.features.qk_norm = true;
    let w = tiny_weights(&cfg, 61);
    assert!(w.layers[0].extra.q_norm.is_some());
    family_states_and_gradients(cfg, w);
}

/// Mistral's sliding window (3 keys over 7 tokens, on the first and last block): hd-lm's
/// states, gradients matching finite differences.
#[test]
fn sliding_window_states_match_hd_lm_and_gradients_match_finite_differences() {
    let mut cfg = tiny_config(hd_lm::Arch::Llama, 40, true);
    let w = tiny_weights(&cfg, 62);
    cfg.arch = hd_lm::Arch::Mistral;
    cfg.features.sliding_window = Some(3);
    cfg.features.sliding_layers = vec![true, false, true];
    family_states_and_gradients(cfg, w);
}

/// Gemma 3's block: scaled embeddings, q/k norms, sandwich norms, GeGLU, scaled queries,
/// sliding layers with their own RoPE base beside a global one; AttnLRP rules run on it.
#[test]
fn gemma3_block_states_match_hd_lm_and_gradients_match_finite_differences() {
    let mut cfg = tiny_config(hd_lm::Arch::Gemma3, 40, true);
    let f = &mut cfg.features;
    f.qk_norm = true;
    f.sandwich_norms = true;
    f.act = hd_lm::config::Act::GeluTanh;
    f.embed_scale = Some((32f64).sqrt() as f32);
    f.query_pre_attn_scalar = Some(16.0);
    f.sliding_window = Some(3);
    f.sliding_layers = vec![true, true, false];
    f.rope_local_theta = Some(10_000.0);
    cfg.rope_theta = 1_000_000.0;
    let w = tiny_weights(&cfg, 63);
    assert!(w.layers[0].extra.post_mlp_norm.is_some());
    family_states_and_gradients(cfg.clone(), w.clone());
    // AttnLRP runs, on the same states (its rules are checked in attrib.rs, and against lxt
    // in dir-label's tests)
    let m = DiffModel::new(cfg, w).unwrap();
    let states = |rules| {
        let req = DiffRequest {
            capture: vec![2],
            rules,
            ..Default::default()
        };
        to_vec(
            &m.forward(&Packed::new(&[&[1u32, 2, 3]]), &req)
                .unwrap()
                .hidden[0]
                .1,
        )
        .unwrap()
    };
    assert_eq!(
        states(hd_grad::Rules::AttnLrp),
        states(hd_grad::Rules::Exact)
    );
}

fn family_states_and_gradients(cfg: hd_lm::Config, w: hd_lm::Weights) {
    let ids = [1u32, 6, 3, 9, 2, 7, 5];
    let ours = hd_lm::Forward::new(&cfg, &w)
        .run(
            &[&ids],
            &hd_lm::Request {
                capture_layers: vec![3],
                capture_positions: hd_lm::Positions::All,
                interventions: vec![],
                logits: false,
            },
        )
        .unwrap();
    let m = DiffModel::new(cfg.clone(), w).unwrap();
    let packed = Packed::new(&[&ids]);
    let req = |start: Option<(usize, Tensor)>| DiffRequest {
        capture: vec![3],
        start,
        ..Default::default()
    };
    let got = to_vec(&m.forward(&packed, &req(None)).unwrap().hidden[0].1).unwrap();
    let want = &ours.captured[0].1;
    let err = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-4, "q/k-normed states differ from hd-lm's by {err}");
    let h1 = m
        .forward(
            &packed,
            &DiffRequest {
                capture: vec![1],
                ..Default::default()
            },
        )
        .unwrap()
        .hidden[0]
        .1
        .clone();
    let hv = Var::from_tensor(&h1).unwrap();
    let c = Tensor::from_vec(
        rand_vec(cfg.hidden_size, 62, 1.0),
        (cfg.hidden_size, 1),
        &dev(),
    )
    .unwrap();
    let seed = |hv: &Var| {
        let out = m
            .forward(&packed, &req(Some((1, hv.as_tensor().clone()))))
            .unwrap();
        out.hidden[0]
            .1
            .narrow(0, ids.len() - 1, 1)
            .unwrap()
            .matmul(&c)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let g = seed(&hv).backward().unwrap();
    let gh = g.get(hv.as_tensor()).unwrap();
    let f = || seed(&hv).to_scalar::<f32>().unwrap() as f64;
    fd_check("d seed / d h_1 through q/k norms", &hv, gh, 12, 1e-2, &f);
    // merged weights keep the norms, so hd-lm runs the same model again
    let back = m.merged_weights().unwrap();
    assert_eq!(back.layers[2].extra.k_norm.is_some(), cfg.features.qk_norm);
    assert_eq!(
        back.layers[1].extra.post_attn_norm.is_some(),
        cfg.features.sandwich_norms
    );
}
