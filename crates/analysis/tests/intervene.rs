//! Interventions, their first-order estimate, teacher-forced likelihoods and component
//! relevance on a tiny seeded model, each against an independent computation: finite
//! differences of the runtime (hd-lm) for the gradients of the attribution engine (hd-grad),
//! the plain pass on every prefix for the hooked likelihoods, uncached decoding for cached
//! generation under edits.

use hd_analysis::estimate::{estimate, last_token_grads};
use hd_analysis::intervene::{
    answer_nll, first_token, generate, generate_probed, Edit, Op, Prefill, Start,
};
use hd_analysis::relevance::{pair_relevance, pairs_relevance, Pair};
use hd_grad::diff::DiffModel;
use hd_grad::Rules;
use hd_lm::{Arch, Intervention, InterventionOp, Model, Positions, Request};

fn model(seed: u64) -> (Model, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    hd_testkit::write_tiny_model(dir.path(), Arch::Llama, true, seed).unwrap();
    (Model::load(dir.path()).unwrap(), dir)
}

fn diff(dir: &tempfile::TempDir) -> DiffModel {
    let m = Model::load(dir.path()).unwrap();
    DiffModel::new(m.config, m.weights).unwrap()
}

fn prompts(m: &Model) -> Vec<Vec<u32>> {
    [
        "hello there",
        "make a bomb now",
        "x",
        "tell me a story about cats",
    ]
    .iter()
    .map(|p| m.encode_prompt(p, &Default::default()).unwrap())
    .collect()
}

fn dir(d: usize, seed: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..d)
        .map(|i| (((i * 31 + seed * 17) % 23) as f32 - 11.0) / 7.0)
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

const IDS: &[u32] = &[40, 76, 80];

#[test]
fn estimate_matches_finite_differences_of_the_runtime() {
    let (m, tmp) = model(11);
    let dm = diff(&tmp);
    let p = prompts(&m);
    let d = m.config.hidden_size;
    let grads = last_token_grads(&dm, &p, IDS).unwrap();
    let c1 = dir(d, 0);
    let base = first_token(&m, &p, &[], None, IDS, (2, &c1)).unwrap();
    for (op, layers) in [(Op::Sub, vec![1, 2]), (Op::Project, vec![0, 1, 2])] {
        let v = dir(d, 5);
        let alpha = 1e-2f32;
        let edit = Edit {
            layers: layers.clone(),
            op,
            alpha,
            v: v.clone(),
            start: Start::LastPrompt,
        };
        let got = first_token(&m, &p, std::slice::from_ref(&edit), None, IDS, (2, &c1)).unwrap();
        for (i, g) in grads.iter().enumerate() {
            let fd = got.score[i] - base.score[i];
            let est = estimate(g, &layers, &v, alpha as f64, op == Op::Project);
            assert!(
                (fd - est).abs() <= 0.05 * fd.abs().max(1e-4),
                "{op:?} prompt {i}: finite difference {fd:.3e}, estimate {est:.3e}"
            );
        }
    }
}

#[test]
fn prefill_path_equals_the_full_pass() {
    let (m, _t) = model(12);
    let p = prompts(&m);
    let d = m.config.hidden_size;
    let c1 = dir(d, 1);
    let edits = [Edit {
        layers: vec![0, 1, 2],
        op: Op::Sub,
        alpha: 1.5,
        v: dir(d, 2),
        start: Start::LastPrompt,
    }];
    let pre = Prefill::new(&m, &p).unwrap();
    let a = first_token(&m, &p, &edits, Some(&pre), IDS, (3, &c1)).unwrap();
    let b = first_token(&m, &p, &edits, None, IDS, (3, &c1)).unwrap();
    let none = first_token(&m, &p, &[], None, IDS, (3, &c1)).unwrap();
    for i in 0..p.len() {
        assert!((a.score[i] - b.score[i]).abs() < 1e-4);
        assert!((a.projection[i] - b.projection[i]).abs() < 1e-4);
        assert!(
            (a.score[i] - none.score[i]).abs() > 1e-3,
            "the edit changed nothing"
        );
    }
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let m = row.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
    let s: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
    row.iter().map(|&x| x as f64 - m - s.ln()).collect()
}

#[test]
fn answer_nll_equals_the_plain_pass_on_every_prefix() {
    let (m, _t) = model(13);
    let p = prompts(&m);
    let d = m.config.hidden_size;
    let answers: Vec<Vec<u32>> = (0..p.len())
        .map(|i| (0..3 + i).map(|j| (5 + 7 * j + i) as u32).collect())
        .collect();
    let v = dir(d, 3);
    let edit = Edit {
        layers: vec![1, 2],
        op: Op::Project,
        alpha: 1.0,
        v: v.clone(),
        start: Start::All,
    };
    for edits in [vec![], vec![edit]] {
        let (nll, n) = answer_nll(&m, &p, &answers, &edits, None).unwrap();
        let ivs: Vec<Intervention> = edits
            .iter()
            .map(|e| Intervention {
                layers: e.layers.clone(),
                positions: Positions::All,
                op: InterventionOp::Project {
                    alpha: 1.0,
                    v: e.v.clone(),
                },
            })
            .collect();
        let req = Request {
            capture_layers: vec![],
            capture_positions: Positions::Last,
            interventions: ivs,
            logits: true,
        };
        let (mut want, mut count) = (0.0, 0);
        for (pr, a) in p.iter().zip(&answers) {
            let full: Vec<u32> = pr.iter().chain(a).copied().collect();
            for t in pr.len()..full.len() {
                let l = m
                    .forward()
                    .run(&[&full[..t]], &req)
                    .unwrap()
                    .logits
                    .unwrap();
                want -= log_softmax(&l)[full[t] as usize];
                count += 1;
            }
        }
        assert_eq!(n, count);
        assert!(
            (nll - want).abs() < 1e-3 * want.abs(),
            "{} edits: {nll} vs {want}",
            edits.len()
        );
    }
}

#[test]
fn cached_generation_under_edits_equals_uncached_decoding() {
    let (m, _t) = model(14);
    let p = prompts(&m);
    let d = m.config.hidden_size;
    let edit = Edit {
        layers: vec![1, 2],
        op: Op::Sub,
        alpha: 3.0,
        v: dir(d, 4),
        start: Start::All,
    };
    let got = generate(&m, &p, std::slice::from_ref(&edit), 6, None).unwrap();
    let plain = generate(&m, &p, &[], 6, None).unwrap();
    assert_ne!(got, plain, "the edit changed no answer");
    let req = Request {
        capture_layers: vec![],
        capture_positions: Positions::Last,
        interventions: vec![Intervention {
            layers: vec![1, 2],
            positions: Positions::All,
            op: InterventionOp::Add {
                alpha: -3.0,
                v: edit.v.clone(),
            },
        }],
        logits: true,
    };
    for (pr, g) in p.iter().zip(&got) {
        let mut seq = pr.clone();
        let mut want = Vec::new();
        for _ in 0..6 {
            let l = m.forward().run(&[&seq], &req).unwrap().logits.unwrap();
            let t = l
                .iter()
                .enumerate()
                .fold(0, |b, (i, &v)| if v > l[b] { i } else { b }) as u32;
            if m.tokenizer.stop_ids.contains(&t) {
                break;
            }
            want.push(t);
            seq.push(t);
        }
        assert_eq!(g, &want);
    }
}

#[test]
fn exact_relevance_matches_finite_differences() {
    let (m, tmp) = model(15);
    let dm = diff(&tmp);
    let p = prompts(&m);
    let d = m.config.hidden_size;
    let src: Vec<Vec<f32>> = (0..3).map(|k| dir(d, 10 + k)).collect();
    let tgt: Vec<Vec<f32>> = (0..2).map(|k| dir(d, 20 + k)).collect();
    let (s, l) = (1, 3);
    let r = pair_relevance(
        &dm,
        &p,
        &Pair {
            source: s,
            target: l,
            source_dirs: &src,
            target_dirs: &tgt,
        },
        Rules::Exact,
        3,
        |_| {},
    )
    .unwrap();
    // h_S and c·h_L from the runtime; v·∇(c·h_L) by a finite difference along v at h_S.
    let proj = |edits: &[Edit], c: &[f32]| first_token(&m, &p, edits, None, IDS, (l, c)).unwrap();
    let eps = 1e-2f32;
    for (j, c) in tgt.iter().enumerate() {
        let base = proj(&[], c).projection;
        for (k, v) in src.iter().enumerate() {
            let zs = first_token(&m, &p, &[], None, IDS, (s, v))
                .unwrap()
                .projection;
            let plus = proj(
                &[Edit {
                    layers: vec![s],
                    op: Op::Sub,
                    alpha: -eps,
                    v: v.clone(),
                    start: Start::LastPrompt,
                }],
                c,
            )
            .projection;
            for i in 0..p.len() {
                let want = zs[i] * (plus[i] - base[i]) / eps as f64 / base[i];
                let got = r.values[i][k * 2 + j];
                assert!(
                    (got - want).abs() <= 0.03 * want.abs().max(1e-3),
                    "prompt {i} k {k} j {j}: {got:.4e} vs {want:.4e}"
                );
            }
        }
    }
}

#[test]
fn several_pairs_in_one_run_equal_each_pair_alone() {
    let (m, tmp) = model(16);
    let dm = diff(&tmp);
    let p = prompts(&m);
    let d = m.config.hidden_size;
    let dirs: Vec<Vec<Vec<f32>>> = (0..4)
        .map(|l| (0..2).map(|k| dir(d, 30 + 3 * l + k)).collect())
        .collect();
    let pairs: Vec<Pair> = [(0, 1), (1, 2), (1, 3), (2, 3)]
        .iter()
        .map(|&(s, l)| Pair {
            source: s,
            target: l,
            source_dirs: &dirs[s],
            target_dirs: &dirs[l],
        })
        .collect();
    let together = pairs_relevance(&dm, &p, &pairs, Rules::AttnLrp, 2, |_| {}).unwrap();
    for (pair, got) in pairs.iter().zip(&together) {
        let alone = pair_relevance(&dm, &p, pair, Rules::AttnLrp, 3, |_| {}).unwrap();
        assert_eq!((got.k_source, got.k_target), (2, 2));
        for (a, b) in got
            .values
            .iter()
            .flatten()
            .zip(alone.values.iter().flatten())
        {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "pair {} -> {}: {a} together, {b} alone",
                pair.source,
                pair.target
            );
        }
        assert!(
            got.values.iter().flatten().any(|v| v.abs() > 1e-6),
            "all zero"
        );
    }
}

#[test]
fn a_prefill_shared_by_runs_changes_no_answer_and_no_nll() {
    let (m, _t) = model(17);
    let p = prompts(&m);
    let d = m.config.hidden_size;
    let answers: Vec<Vec<u32>> = (0..p.len())
        .map(|i| (0..4 + i).map(|j| (3 + 5 * j + i) as u32).collect())
        .collect();
    let pre = Prefill::new(&m, &p).unwrap();
    let last = Edit {
        layers: vec![1, 2],
        op: Op::Sub,
        alpha: 3.0,
        v: dir(d, 5),
        start: Start::LastPrompt,
    };
    for edits in [vec![], vec![last.clone()]] {
        let want = generate(&m, &p, &edits, 6, None).unwrap();
        assert_eq!(generate(&m, &p, &edits, 6, Some(&pre)).unwrap(), want);
        let (a, n) = answer_nll(&m, &p, &answers, &edits, None).unwrap();
        let (b, k) = answer_nll(&m, &p, &answers, &edits, Some(&pre)).unwrap();
        assert_eq!(n, k);
        assert!(
            (a - b).abs() < 1e-4 * a.abs(),
            "{} edits: {a} vs {b}",
            edits.len()
        );
    }
    // Edits at every position cannot use it, nor other prompts.
    let all = Edit {
        start: Start::All,
        ..last
    };
    assert!(generate(&m, &p, &[all], 6, Some(&pre)).is_err());
    assert!(generate(&m, &p[1..], &[], 6, Some(&pre)).is_err());
}

#[test]
fn a_probed_generation_measures_what_first_token_measures() {
    let (m, _t) = model(18);
    let p = prompts(&m);
    let d = m.config.hidden_size;
    let c1 = dir(d, 3);
    let pre = Prefill::new(&m, &p).unwrap();
    let edit = |start| Edit {
        layers: vec![1, 2],
        op: Op::Project,
        alpha: 1.0,
        v: dir(d, 6),
        start,
    };
    let none = first_token(&m, &p, &[], None, IDS, (2, &c1)).unwrap();
    for (edits, prefill) in [
        (vec![], None),
        (vec![edit(Start::All)], None),
        (vec![edit(Start::LastPrompt)], Some(&pre)),
    ] {
        let want = first_token(&m, &p, &edits, None, IDS, (2, &c1)).unwrap();
        let (answers, got) = generate_probed(&m, &p, &edits, 5, prefill, IDS, (2, &c1)).unwrap();
        assert_eq!(answers, generate(&m, &p, &edits, 5, prefill).unwrap());
        for i in 0..p.len() {
            assert!(
                (got.score[i] - want.score[i]).abs() < 1e-4
                    && (got.projection[i] - want.projection[i]).abs() < 1e-4,
                "{} edits, prompt {i}: {:?} vs {:?}",
                edits.len(),
                (got.score[i], got.projection[i]),
                (want.score[i], want.projection[i])
            );
        }
        if !edits.is_empty() {
            assert!(
                (0..p.len()).any(|i| (want.projection[i] - none.projection[i]).abs() > 1e-3),
                "the edit changed nothing"
            );
        }
    }
    // The read-out must be a residual index the hook sees.
    let nl = m.config.num_layers;
    assert!(generate_probed(&m, &p, &[], 5, None, IDS, (nl, &c1)).is_err());
    assert!(generate_probed(&m, &p, &[], 0, None, IDS, (2, &c1)).is_err());
}
