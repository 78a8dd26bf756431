//! The forward pass's open extension point ([`hd_lm::Hook`]): teacher-forced logits at chosen
//! rows against the plain pass on each prefix, position-dependent edits against the
//! request's interventions, read-only cached continuations against full runs, and the plain
//! entry points unchanged.

use hd_lm::{
    Arch, Config, Forward, Hook, Intervention, InterventionOp, KvCache, NoHook, Positions, Request,
    RowPos, Weights,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn tiny() -> Config {
    Config {
        arch: Arch::Llama,
        hidden_size: 32,
        intermediate_size: 48,
        num_layers: 3,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        vocab_size: 97,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: None,
        max_position_embeddings: 256,
        tie_word_embeddings: true,
        features: Default::default(),
    }
}

fn weights(cfg: &Config, seed: u64) -> Weights {
    let mut rng = StdRng::seed_from_u64(seed);
    Weights::from_fn(cfg, |name| {
        let (d, ff, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (q, kv) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
        let field = name.rsplit('.').nth(1).unwrap_or("");
        if name.ends_with(".bias") {
            return None;
        }
        let (shape, scale, offset): (Vec<usize>, f32, f32) = match field {
            "embed_tokens" => (vec![cfg.vocab_size, d], 1.0, 0.0),
            "input_layernorm" | "post_attention_layernorm" | "norm" => (vec![d], 0.2, 1.0),
            "q_proj" => (vec![q, d], 0.35, 0.0),
            "k_proj" | "v_proj" => (vec![kv, d], 0.35, 0.0),
            "o_proj" => (vec![d, q], 0.3, 0.0),
            "gate_proj" | "up_proj" => (vec![ff, d], 0.3, 0.0),
            "down_proj" => (vec![d, ff], 0.25, 0.0),
            _ => return None,
        };
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|_| offset + scale * (rng.random::<f32>() * 2.0 - 1.0))
            .collect();
        Some((shape, v))
    })
    .unwrap()
}

const A: &[u32] = &[3, 17, 42, 5, 9, 60, 1, 33, 12];
const B: &[u32] = &[8, 2, 77, 40, 4];

fn req(logits: bool, interventions: Vec<Intervention>) -> Request {
    Request {
        capture_layers: vec![0, 1, 2, 3],
        capture_positions: Positions::All,
        interventions,
        logits,
    }
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Collects logits at every position of every sequence.
#[derive(Default)]
struct AllLogits {
    got: Vec<(RowPos, Vec<f32>)>,
}

impl Hook for AllLogits {
    fn logit_rows(&self, rows: &[RowPos]) -> Vec<usize> {
        (0..rows.len()).collect()
    }
    fn logits(&mut self, rows: &[RowPos], logits: &[f32]) {
        let v = logits.len() / rows.len();
        for (r, l) in rows.iter().zip(logits.chunks(v)) {
            self.got.push((*r, l.to_vec()));
        }
    }
}

#[test]
fn hook_logits_equal_the_last_logits_of_each_prefix() {
    let cfg = tiny();
    let w = weights(&cfg, 1);
    let f = Forward::new(&cfg, &w);
    let mut h = AllLogits::default();
    f.run_hooked(&[A, B], &req(false, vec![]), &mut h).unwrap();
    assert_eq!(h.got.len(), A.len() + B.len());
    for (rp, got) in &h.got {
        let s = [A, B][rp.seq];
        let want = f
            .run(&[&s[..rp.pos + 1]], &req(true, vec![]))
            .unwrap()
            .logits
            .unwrap();
        let err = max_abs(got, &want);
        assert!(err < 1e-4, "seq {} pos {}: {err}", rp.seq, rp.pos);
    }
}

/// Adds `alpha·v` at `layers` from position `from[seq]` on.
struct AddFrom {
    layers: Vec<usize>,
    v: Vec<f32>,
    from: Vec<usize>,
}

impl Hook for AddFrom {
    fn residual(&mut self, layer: usize, h: &mut [f32], rows: &[RowPos]) {
        if !self.layers.contains(&layer) {
            return;
        }
        let d = self.v.len();
        for (r, row) in rows.iter().zip(h.chunks_mut(d)) {
            if r.pos >= self.from[r.seq] {
                for (x, v) in row.iter_mut().zip(&self.v) {
                    *x += v;
                }
            }
        }
    }
}

fn direction(d: usize) -> Vec<f32> {
    (0..d).map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0).collect()
}

#[test]
fn edits_match_the_requests_interventions_and_can_fail() {
    let cfg = tiny();
    let w = weights(&cfg, 2);
    let f = Forward::new(&cfg, &w);
    let v = direction(cfg.hidden_size);
    let iv = |positions| Intervention {
        layers: vec![1, 2],
        positions,
        op: InterventionOp::Add {
            alpha: 1.0,
            v: v.clone(),
        },
    };
    let plain = |ivs| f.run(&[A, B], &req(true, ivs)).unwrap();
    let hooked = |from: Vec<usize>| {
        let mut h = AddFrom {
            layers: vec![1, 2],
            v: v.clone(),
            from,
        };
        f.run_hooked(&[A, B], &req(true, vec![]), &mut h).unwrap()
    };
    let compare = |a: &hd_lm::Output, b: &hd_lm::Output| {
        let mut e = max_abs(a.logits.as_ref().unwrap(), b.logits.as_ref().unwrap());
        for (x, y) in a.captured.iter().zip(&b.captured) {
            e = e.max(max_abs(&x.1, &y.1));
        }
        e
    };
    let all = compare(&hooked(vec![0, 0]), &plain(vec![iv(Positions::All)]));
    assert!(all < 1e-5, "every position: {all}");
    let last = compare(
        &hooked(vec![A.len() - 1, B.len() - 1]),
        &plain(vec![iv(Positions::Last)]),
    );
    assert!(last < 1e-5, "last position: {last}");
    let wrong = compare(&hooked(vec![0, 0]), &plain(vec![iv(Positions::Last)]));
    assert!(
        wrong > 1e-2,
        "an edit of every row passed for the last row only"
    );
}

#[test]
fn no_hook_is_bit_identical_to_run() {
    let cfg = tiny();
    let w = weights(&cfg, 3);
    let f = Forward::new(&cfg, &w);
    let r = req(true, vec![]);
    let a = f.run(&[A, B], &r).unwrap();
    let b = f.run_hooked(&[A, B], &r, &mut NoHook).unwrap();
    assert_eq!(a.logits, b.logits);
    assert_eq!(a.captured, b.captured);
}

#[test]
fn run_after_a_cached_prefill_equals_the_full_run() {
    let cfg = tiny();
    let w = weights(&cfg, 4);
    let f = Forward::new(&cfg, &w);
    let last = Request {
        capture_layers: vec![2],
        capture_positions: Positions::Last,
        interventions: vec![],
        logits: true,
    };
    let heads: Vec<&[u32]> = vec![&A[..A.len() - 1], &B[..B.len() - 1]];
    let mut caches = vec![KvCache::default(), KvCache::default()];
    f.run_cached(&heads, &mut caches, &last).unwrap();
    let tails: Vec<&[u32]> = vec![&A[A.len() - 1..], &B[B.len() - 1..]];
    let v = direction(cfg.hidden_size);
    let mut edit = AddFrom {
        layers: vec![1],
        v: v.clone(),
        from: vec![A.len() - 1, B.len() - 1],
    };
    for _ in 0..2 {
        // twice: the caches are read, not extended
        let got = f.run_after(&tails, &caches, &last, &mut edit).unwrap();
        let want = f
            .run(
                &[A, B],
                &Request {
                    interventions: vec![Intervention {
                        layers: vec![1],
                        positions: Positions::Last,
                        op: InterventionOp::Add {
                            alpha: 1.0,
                            v: v.clone(),
                        },
                    }],
                    ..last.clone()
                },
            )
            .unwrap();
        let e = max_abs(got.logits.as_ref().unwrap(), want.logits.as_ref().unwrap());
        assert!(e < 1e-4, "logits: {e}");
        assert!(max_abs(&got.captured[0].1, &want.captured[0].1) < 1e-4);
    }
    assert_eq!(caches[0].len(), A.len() - 1);
}

#[test]
fn a_truncated_cache_continues_another_sequence_exactly() {
    let cfg = tiny();
    let w = weights(&cfg, 6);
    let f = Forward::new(&cfg, &w);
    let req = Request {
        capture_layers: vec![2],
        capture_positions: Positions::Last,
        interventions: vec![],
        logits: true,
    };
    // Long enough to grow the cache past its first capacity, then cut back.
    let a: Vec<u32> = (0..70).map(|i| (i * 7 + 3) % 50).collect();
    let mut b: Vec<u32> = a[..23].to_vec();
    b.extend([9, 41, 5, 17]);
    let mut c = vec![KvCache::default()];
    f.run_cached(&[&a], &mut c, &req).unwrap();
    f.truncate_cache(&mut c[0], 23);
    assert_eq!(c[0].len(), 23);
    let got = f.run_cached(&[&b[23..]], &mut c, &req).unwrap();
    let want = f.run(&[&b], &req).unwrap();
    let e = max_abs(got.logits.as_ref().unwrap(), want.logits.as_ref().unwrap());
    assert!(e < 1e-4, "logits: {e}");
    let e = max_abs(&got.captured[0].1, &want.captured[0].1);
    assert!(e < 1e-4, "states: {e}");
    assert_eq!(c[0].len(), b.len());
}

#[test]
fn branches_off_one_cache_equal_their_full_runs() {
    let cfg = tiny();
    let w = weights(&cfg, 8);
    let f = Forward::new(&cfg, &w);
    let req = Request {
        capture_layers: vec![1],
        capture_positions: Positions::Last,
        interventions: vec![],
        logits: true,
    };
    // Past the cache's first capacity, so branches read from a grown buffer.
    let a: Vec<u32> = (0..70).map(|i| (i * 11 + 5) % 60).collect();
    let mut c = vec![KvCache::default()];
    f.run_cached(&[&a], &mut c, &req).unwrap();
    // Every leave-one-out variant in one call: each continues `a` up to its deleted token.
    let variants: Vec<Vec<u32>> = (1..a.len() - 1)
        .map(|p| [&a[..p], &a[p + 1..]].concat())
        .collect();
    let tails: Vec<&[u32]> = (1..a.len() - 1).map(|p| &a[p + 1..]).collect();
    let past: Vec<(&KvCache, usize)> = (1..a.len() - 1).map(|p| (&c[0], p)).collect();
    let got = f.run_branches(&tails, &past, &req, &mut NoHook).unwrap();
    let seqs: Vec<&[u32]> = variants.iter().map(Vec::as_slice).collect();
    let want = f.run(&seqs, &req).unwrap();
    let e = max_abs(got.logits.as_ref().unwrap(), want.logits.as_ref().unwrap());
    assert!(e < 1e-4, "logits: {e}");
    assert!(max_abs(&got.captured[0].1, &want.captured[0].1) < 1e-4);
    // Continuing one position further keeps the deleted token (that is `a` itself), and the
    // states differ: the check can fail.
    let kept = f
        .run_branches(&tails[..1], &[(&c[0], 2)], &req, &mut NoHook)
        .unwrap();
    assert!(max_abs(&kept.captured[0].1, &want.captured[0].1[..cfg.hidden_size]) > 1e-3);
    assert_eq!(c[0].len(), a.len(), "read, not extended");
    let over = [(&c[0], a.len() + 1)];
    assert!(f
        .run_branches(&[&a[..1]], &over, &req, &mut NoHook)
        .is_err());
}
