//! Our forward pass against candle-transformers' own Llama and Qwen2 models, on tiny
//! seeded random-weight fixtures, plus invariants (packing, KV cache, interventions).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use hd_lm::config::Llama3Scaling;
use hd_lm::{
    common_prefix_len, Arch, Config, Forward, Intervention, InterventionOp, KvCache, Positions,
    Request, Weights,
};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashMap;

fn tiny(arch: Arch, vocab: usize, tie: bool, scaling: bool) -> Config {
    Config {
        arch,
        hidden_size: 64,
        intermediate_size: 96,
        num_layers: 3,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        vocab_size: vocab,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: scaling.then_some(Llama3Scaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 16,
        }),
        max_position_embeddings: 256,
        tie_word_embeddings: tie,
        features: Default::default(),
    }
}

/// Seeded HF-named tensors; `identity_head` makes lm_head = I so logits = final hidden state.
fn tensors(
    cfg: &Config,
    seed: u64,
    identity_head: bool,
) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut m = HashMap::new();
    let mut add = |name: String, shape: Vec<usize>, scale: f32, offset: f32, rng: &mut StdRng| {
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|_| offset + scale * (rng.random::<f32>() * 2.0 - 1.0))
            .collect();
        m.insert(name, (shape, v));
    };
    let (d, ff, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
    let (q, kv) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    add(
        "model.embed_tokens.weight".into(),
        vec![cfg.vocab_size, d],
        1.0,
        0.0,
        &mut rng,
    );
    for i in 0..cfg.num_layers {
        let p = format!("model.layers.{i}");
        add(
            format!("{p}.input_layernorm.weight"),
            vec![d],
            0.2,
            1.0,
            &mut rng,
        );
        add(
            format!("{p}.post_attention_layernorm.weight"),
            vec![d],
            0.2,
            1.0,
            &mut rng,
        );
        add(
            format!("{p}.self_attn.q_proj.weight"),
            vec![q, d],
            0.25,
            0.0,
            &mut rng,
        );
        add(
            format!("{p}.self_attn.k_proj.weight"),
            vec![kv, d],
            0.25,
            0.0,
            &mut rng,
        );
        add(
            format!("{p}.self_attn.v_proj.weight"),
            vec![kv, d],
            0.25,
            0.0,
            &mut rng,
        );
        add(
            format!("{p}.self_attn.o_proj.weight"),
            vec![d, q],
            0.15,
            0.0,
            &mut rng,
        );
        if cfg.arch == Arch::Qwen2 {
            add(
                format!("{p}.self_attn.q_proj.bias"),
                vec![q],
                0.5,
                0.0,
                &mut rng,
            );
            add(
                format!("{p}.self_attn.k_proj.bias"),
                vec![kv],
                0.5,
                0.0,
                &mut rng,
            );
            add(
                format!("{p}.self_attn.v_proj.bias"),
                vec![kv],
                0.5,
                0.0,
                &mut rng,
            );
        }
        add(
            format!("{p}.mlp.gate_proj.weight"),
            vec![ff, d],
            0.2,
            0.0,
            &mut rng,
        );
        add(
            format!("{p}.mlp.up_proj.weight"),
            vec![ff, d],
            0.2,
            0.0,
            &mut rng,
        );
        add(
            format!("{p}.mlp.down_proj.weight"),
            vec![d, ff],
            0.15,
            0.0,
            &mut rng,
        );
    }
    add("model.norm.weight".into(), vec![d], 0.2, 1.0, &mut rng);
    if !cfg.tie_word_embeddings {
        if identity_head {
            assert_eq!(cfg.vocab_size, d);
            let mut v = vec![0.0; d * d];
            for i in 0..d {
                v[i * d + i] = 1.0;
            }
            m.insert("lm_head.weight".into(), (vec![d, d], v));
        } else {
            add(
                "lm_head.weight".into(),
                vec![cfg.vocab_size, d],
                0.3,
                0.0,
                &mut rng,
            );
        }
    }
    m
}

fn ours(cfg: &Config, t: &HashMap<String, (Vec<usize>, Vec<f32>)>) -> Weights {
    Weights::from_fn(cfg, |n| t.get(n).cloned()).unwrap()
}

fn var_builder(t: &HashMap<String, (Vec<usize>, Vec<f32>)>) -> VarBuilder<'static> {
    let map: HashMap<String, Tensor> = t
        .iter()
        .map(|(k, (s, v))| {
            (
                k.clone(),
                Tensor::from_vec(v.clone(), s.as_slice(), &Device::Cpu).unwrap(),
            )
        })
        .collect();
    VarBuilder::from_tensors(map, DType::F32, &Device::Cpu)
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

fn req(layers: Vec<usize>, pos: Positions, logits: bool) -> Request {
    Request {
        capture_layers: layers,
        capture_positions: pos,
        interventions: vec![],
        logits,
    }
}

const SEQ: &[u32] = &[3, 17, 42, 5, 9, 60, 1, 33, 12, 7, 50];

fn candle_llama(
    cfg: &Config,
    t: &HashMap<String, (Vec<usize>, Vec<f32>)>,
    ids: &[u32],
) -> Vec<f32> {
    use candle_transformers::models::llama as cl;
    let c = cl::Config {
        hidden_size: cfg.hidden_size,
        intermediate_size: cfg.intermediate_size,
        vocab_size: cfg.vocab_size,
        num_hidden_layers: cfg.num_layers,
        num_attention_heads: cfg.num_heads,
        num_key_value_heads: cfg.num_kv_heads,
        use_flash_attn: false,
        rms_norm_eps: cfg.rms_norm_eps,
        rope_theta: cfg.rope_theta as f32,
        bos_token_id: None,
        eos_token_id: None,
        rope_scaling: cfg.rope_scaling.map(|s| cl::Llama3RopeConfig {
            factor: s.factor as f32,
            low_freq_factor: s.low_freq_factor as f32,
            high_freq_factor: s.high_freq_factor as f32,
            original_max_position_embeddings: s.original_max_position_embeddings,
            rope_type: cl::Llama3RopeType::Llama3,
        }),
        max_position_embeddings: cfg.max_position_embeddings,
        tie_word_embeddings: cfg.tie_word_embeddings,
    };
    let model = cl::Llama::load(var_builder(t), &c).unwrap();
    let mut cache = cl::Cache::new(false, DType::F32, &c, &Device::Cpu).unwrap();
    let input = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .forward(&input, 0, &mut cache)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn llama_logits_match_candle() {
    for (tie, scaling, seed) in [(true, false, 1), (false, false, 2), (true, true, 3)] {
        let cfg = tiny(Arch::Llama, 101, tie, scaling);
        let t = tensors(&cfg, seed, false);
        let want = candle_llama(&cfg, &t, SEQ);
        let w = ours(&cfg, &t);
        let got = Forward::new(&cfg, &w)
            .run(&[SEQ], &req(vec![], Positions::Last, true))
            .unwrap();
        let err = max_rel(got.logits.as_ref().unwrap(), &want);
        assert!(
            err < 1e-4,
            "tie={tie} scaling={scaling}: max relative logit error {err}"
        );
    }
}

#[test]
fn llama_final_hidden_matches_candle() {
    // vocab = d and lm_head = I: candle's last-position logits are its final hidden state.
    let cfg = tiny(Arch::Llama, 64, false, false);
    let t = tensors(&cfg, 4, true);
    let want = candle_llama(&cfg, &t, SEQ);
    let w = ours(&cfg, &t);
    let got = Forward::new(&cfg, &w)
        .run(&[SEQ], &req(vec![3], Positions::Last, false))
        .unwrap();
    let err = max_rel(&got.captured[0].1, &want);
    assert!(err < 1e-4, "max relative error {err}");
}

#[test]
fn qwen2_hidden_and_logits_match_candle() {
    use candle_transformers::models::qwen2 as cq;
    for (tie, seed) in [(true, 5), (false, 6)] {
        let cfg = tiny(Arch::Qwen2, 101, tie, false);
        let t = tensors(&cfg, seed, false);
        let c = cq::Config {
            vocab_size: cfg.vocab_size,
            hidden_size: cfg.hidden_size,
            intermediate_size: cfg.intermediate_size,
            num_hidden_layers: cfg.num_layers,
            num_attention_heads: cfg.num_heads,
            num_key_value_heads: cfg.num_kv_heads,
            max_position_embeddings: cfg.max_position_embeddings,
            sliding_window: 4096,
            max_window_layers: 0,
            tie_word_embeddings: tie,
            rope_theta: cfg.rope_theta,
            rms_norm_eps: cfg.rms_norm_eps,
            use_sliding_window: false,
            hidden_act: candle_nn::Activation::Silu,
        };
        let input = Tensor::new(SEQ, &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let mut base = cq::Model::new(&c, var_builder(&t)).unwrap();
        let hidden: Vec<f32> = base
            .forward(&input, 0, None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut lm = cq::ModelForCausalLM::new(&c, var_builder(&t)).unwrap();
        let logits: Vec<f32> = lm
            .forward(&input, 0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let w = ours(&cfg, &t);
        let got = Forward::new(&cfg, &w)
            .run(&[SEQ], &req(vec![3], Positions::All, true))
            .unwrap();
        let eh = max_rel(&got.captured[0].1, &hidden);
        let el = max_rel(got.logits.as_ref().unwrap(), &logits);
        assert!(
            eh < 1e-4 && el < 1e-4,
            "tie={tie}: hidden error {eh}, logit error {el}"
        );
    }
}

#[test]
fn packing_invariance() {
    let cfg = tiny(Arch::Qwen2, 101, true, false);
    let w = ours(&cfg, &tensors(&cfg, 7, false));
    let f = Forward::new(&cfg, &w);
    let others: Vec<Vec<u32>> = (0..5)
        .map(|k| {
            (0..(3 + 4 * k))
                .map(|i| ((i * 7 + k) % 101) as u32)
                .collect()
        })
        .collect();
    let r = req(vec![0, 1, 2, 3], Positions::All, true);
    let alone = f.run(&[SEQ], &r).unwrap();
    let mut batch: Vec<&[u32]> = others.iter().map(|s| s.as_slice()).collect();
    batch.insert(2, SEQ);
    let packed = f.run(&batch, &r).unwrap();
    let start: usize = others[..2].iter().map(|s| s.len()).sum();
    let d = cfg.hidden_size;
    for (a, b) in alone.captured.iter().zip(&packed.captured) {
        let got = &b.1[start * d..(start + SEQ.len()) * d];
        let err =
            a.1.iter()
                .zip(got)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
        assert!(err < 1e-5, "layer {}: max abs difference {err}", a.0);
    }
    let v = cfg.vocab_size;
    let la = alone.logits.unwrap();
    let lb = &packed.logits.unwrap()[2 * v..3 * v];
    assert!(la.iter().zip(lb).all(|(x, y)| (x - y).abs() < 1e-5));
}

#[test]
fn kv_cache_equals_uncached_decoding() {
    let cfg = tiny(Arch::Llama, 101, true, true);
    let w = ours(&cfg, &tensors(&cfg, 8, false));
    let f = Forward::new(&cfg, &w);
    let r = req(vec![], Positions::Last, true);
    let argmax = |l: &[f32]| {
        l.iter()
            .enumerate()
            .fold(0, |b, (i, &v)| if v > l[b] { i } else { b }) as u32
    };
    // uncached: rerun the whole sequence each step
    let mut seq = SEQ.to_vec();
    let mut plain = Vec::new();
    for _ in 0..8 {
        let l = f.run(&[&seq], &r).unwrap().logits.unwrap();
        let t = argmax(&l);
        plain.push(t);
        seq.push(t);
    }
    // cached, in a batch with another prompt of a different length
    let other: Vec<u32> = vec![9, 8, 7];
    let mut caches = vec![KvCache::default(), KvCache::default()];
    let mut cur: Vec<Vec<u32>> = vec![other.clone(), SEQ.to_vec()];
    let mut cached = Vec::new();
    for _ in 0..8 {
        let seqs: Vec<&[u32]> = cur.iter().map(|s| s.as_slice()).collect();
        let l = f
            .run_cached(&seqs, &mut caches, &r)
            .unwrap()
            .logits
            .unwrap();
        let v = cfg.vocab_size;
        let t1 = argmax(&l[v..2 * v]);
        cached.push(t1);
        cur = vec![vec![argmax(&l[..v])], vec![t1]];
    }
    assert_eq!(plain, cached);
}

#[test]
fn interventions_edit_only_what_they_should() {
    let cfg = tiny(Arch::Llama, 101, true, false);
    let w = ours(&cfg, &tensors(&cfg, 9, false));
    let f = Forward::new(&cfg, &w);
    let d = cfg.hidden_size;
    let v: Vec<f32> = (0..d).map(|i| ((i * 13 % 7) as f32 - 3.0) / 5.0).collect();
    let base = f
        .run(&[SEQ], &req(vec![1, 2], Positions::All, false))
        .unwrap();
    // Project out at layer 2, last position: layer 1 untouched; layer 2 last row ⟂ v; other rows same.
    let mut r = req(vec![1, 2], Positions::All, false);
    r.interventions = vec![Intervention {
        layers: vec![2],
        positions: Positions::Last,
        op: InterventionOp::Project {
            alpha: 1.0,
            v: v.clone(),
        },
    }];
    let got = f.run(&[SEQ], &r).unwrap();
    assert_eq!(base.captured[0].1, got.captured[0].1);
    let n = SEQ.len();
    let last = &got.captured[1].1[(n - 1) * d..];
    let dotv: f32 = last.iter().zip(&v).map(|(a, b)| a * b).sum();
    assert!(dotv.abs() < 1e-4, "projection left {dotv}");
    assert_eq!(
        base.captured[1].1[..(n - 1) * d],
        got.captured[1].1[..(n - 1) * d]
    );
    // Add at layer 1, all positions: the captured layer-1 state is exactly base + alpha v.
    let mut r = req(vec![1], Positions::All, false);
    r.interventions = vec![Intervention {
        layers: vec![1],
        positions: Positions::All,
        op: InterventionOp::Add {
            alpha: -1.5,
            v: v.clone(),
        },
    }];
    let got = f.run(&[SEQ], &r).unwrap();
    for (i, (a, b)) in base.captured[0]
        .1
        .iter()
        .zip(&got.captured[0].1)
        .enumerate()
    {
        assert!((a - 1.5 * v[i % d] - b).abs() < 1e-5);
    }
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

fn assert_same_output(a: &hd_lm::Output, b: &hd_lm::Output, what: &str) {
    assert_eq!(a.captured.len(), b.captured.len());
    for ((la, x), (lb, y)) in a.captured.iter().zip(&b.captured) {
        assert_eq!(la, lb);
        let e = max_abs(x, y);
        assert!(e < 1e-5, "{what}: layer {la} differs by {e}");
    }
    match (&a.logits, &b.logits) {
        (Some(x), Some(y)) => {
            let e = max_abs(x, y) / x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(e < 1e-5, "{what}: logits differ by {e} relative")
        }
        (None, None) => {}
        _ => panic!("{what}: logits present in one output only"),
    }
}

/// Sharing a common prefix (run once, its keys/values reused) gives what running every full
/// sequence gives, for captures at the last and at all positions, with interventions at both.
#[test]
fn shared_prefix_equals_full_run() {
    let cfg = tiny(Arch::Llama, 101, true, true);
    let w = ours(&cfg, &tensors(&cfg, 11, false));
    let f = Forward::new(&cfg, &w);
    let d = cfg.hidden_size;
    let l = cfg.num_layers;
    // 17 sequences: 5 tokens common to all, the first 12 of them share 4 more.
    let seqs: Vec<Vec<u32>> = (0..17u32)
        .map(|k| {
            let mut s = vec![3, 17, 42, 5, 9];
            if k < 12 {
                s.extend([60, 1, 33, 12]);
            }
            s.extend((0..(1 + k % 5)).map(|i| (i * 7 + k * 3) % 101));
            s
        })
        .collect();
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    assert_eq!(common_prefix_len(&refs), 5);
    assert_eq!(common_prefix_len(&refs[..12]), 9);
    assert_eq!(common_prefix_len(&refs[..1]), refs[0].len() - 1);
    let v: Vec<f32> = (0..d).map(|i| ((i * 13 % 7) as f32 - 3.0) / 5.0).collect();
    let mut edited = req((0..=l).collect(), Positions::All, false);
    edited.interventions = vec![
        Intervention {
            layers: vec![1],
            positions: Positions::All,
            op: InterventionOp::Add {
                alpha: -0.7,
                v: v.clone(),
            },
        },
        Intervention {
            layers: vec![2],
            positions: Positions::Last,
            op: InterventionOp::Project { alpha: 1.0, v },
        },
    ];
    let mut edited_last = edited.clone();
    edited_last.capture_positions = Positions::Last;
    edited_last.logits = true;
    for (name, r) in [
        ("last+logits", req((0..=l).collect(), Positions::Last, true)),
        ("all", req((0..=l).collect(), Positions::All, false)),
        ("shallow all", req(vec![1], Positions::All, false)),
        ("edited all", edited),
        ("edited last", edited_last),
    ] {
        let full = f.run(&refs, &r).unwrap();
        let p5 = f.prefix(&refs[0][..5], &r, false).unwrap();
        assert_same_output(&full, &f.run_prefixed(&p5, &refs, &r).unwrap(), name);
        // a batch whose longer common prefix extends the base prefix
        let sub = &refs[..12];
        let full_sub = f.run(sub, &r).unwrap();
        let p9 = f.extend_prefix(&p5, &refs[0][5..9]).unwrap();
        assert_eq!(p9.len(), 9);
        assert_same_output(&full_sub, &f.run_prefixed(&p9, sub, &r).unwrap(), name);
        assert_same_output(&full_sub, &f.run_shared(Some(&p5), sub, &r).unwrap(), name);
        assert_same_output(&full, &f.run_shared(None, &refs, &r).unwrap(), name);
        assert_same_output(&full, &f.run_shared(Some(&p9), &refs, &r).unwrap(), name);
    }
    // misuse is an error, not a silent wrong answer
    let r = req(vec![1], Positions::Last, false);
    let p = f.prefix(&refs[0][..5], &r, false).unwrap();
    assert!(f.run_prefixed(&p, &[&[3, 17, 42, 5, 8, 1]], &r).is_err());
    assert!(f.run_prefixed(&p, &[&refs[0][..5]], &r).is_err());
    let deeper = req(vec![l], Positions::Last, false);
    assert!(f.run_prefixed(&p, &refs, &deeper).is_err());
}

/// Generation continuing a shared prefix's cache decodes what fresh caches decode.
#[test]
fn cache_from_prefix_decodes_the_same() {
    let cfg = tiny(Arch::Qwen2, 101, true, false);
    let w = ours(&cfg, &tensors(&cfg, 12, false));
    let f = Forward::new(&cfg, &w);
    let r = req(vec![], Positions::Last, true);
    let seqs: [&[u32]; 2] = [&[3, 17, 42, 5, 9, 60], &[3, 17, 42, 5, 2]];
    let mut fresh = vec![KvCache::default(), KvCache::default()];
    let a = f.run_cached(&seqs, &mut fresh, &r).unwrap();
    let p = f.prefix(&seqs[0][..4], &r, true).unwrap();
    let mut shared = vec![p.cache().clone(), p.cache().clone()];
    let rest: [&[u32]; 2] = [&seqs[0][4..], &seqs[1][4..]];
    let b = f.run_cached(&rest, &mut shared, &r).unwrap();
    assert_same_output(&a, &b, "prefill");
    let next: [&[u32]; 2] = [&[7], &[8]];
    let a = f.run_cached(&next, &mut fresh, &r).unwrap();
    let b = f.run_cached(&next, &mut shared, &r).unwrap();
    assert_same_output(&a, &b, "decode step");
    // a prefix that kept only the blocks one capture needs cannot seed a generation cache
    let shallow = f.prefix(&seqs[0][..4], &req(vec![1], Positions::Last, false), false);
    let mut bad = vec![shallow.unwrap().cache().clone()];
    assert!(f.run_cached(&[&[5]], &mut bad, &r).is_err());
}

/// Caches that grow past several capacities while decoding, at different steps for two
/// sequences of different lengths: every step matches the uncached run of the whole sequence,
/// and attending a grown cache read-only (`run_after`, which gathers its keys and values)
/// gives bit for bit what attending it in place (`run_cached`) gives.
#[test]
fn growing_caches_decode_as_full_runs() {
    let cfg = tiny(Arch::Qwen2, 101, true, false);
    let w = ours(&cfg, &tensors(&cfg, 13, false));
    let f = Forward::new(&cfg, &w);
    let r = req(vec![2], Positions::Last, true);
    let v = cfg.vocab_size;
    let mut full: Vec<Vec<u32>> = vec![SEQ.to_vec(), vec![9, 8, 7]];
    let mut caches = vec![KvCache::default(), KvCache::default()];
    let mut next: Vec<Vec<u32>> = full.clone();
    for step in 0..40 {
        let seqs: Vec<&[u32]> = next.iter().map(|s| s.as_slice()).collect();
        let before = caches.clone();
        let after = f.run_after(&seqs, &before, &r, &mut hd_lm::NoHook).unwrap();
        let got = f.run_cached(&seqs, &mut caches, &r).unwrap();
        assert_eq!(
            after.logits, got.logits,
            "step {step}: run_after vs run_cached"
        );
        assert_eq!(
            after.captured, got.captured,
            "step {step}: run_after vs run_cached"
        );
        for (i, s) in full.iter().enumerate() {
            assert_eq!(caches[i].len(), s.len());
            let alone = f.run(&[s.as_slice()], &r).unwrap();
            let lg = got.logits.as_ref().unwrap();
            let want = alone.logits.unwrap();
            let e = max_rel(&want, &lg[i * v..(i + 1) * v]);
            assert!(e < 1e-5, "step {step}, sequence {i}: logits differ by {e}");
        }
        next = (0..2)
            .map(|i| vec![((step * 7 + i * 13) % v) as u32])
            .collect();
        for (s, n) in full.iter_mut().zip(&next) {
            s.extend_from_slice(n);
        }
    }
}
