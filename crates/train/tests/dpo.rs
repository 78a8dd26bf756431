//! DPO on the tiny fixture: preference pairs, the loss at the reference, its gradient against
//! finite differences, and training that prefers the chosen completions.

use candle_core::{Device, Tensor};
use hd_formats::prompts::PromptTable;
use hd_grad::diff::{to_vec, DiffModel, Method, Module};
use hd_lm::{Arch, Model, PromptFormat};
use hd_rng::SplitMix64;
use hd_testkit::write_tiny_model;
use hd_train::data::{build_pairs, refusal_for, DataOptions, TargetFormat};
use hd_train::train::{flatten_pairs, Objective, TrainConfig, Trainer};

fn table() -> PromptTable {
    // target = the base model's answer; target_refused = generate's judge on it.
    let rows = [
        (
            "a",
            "How do I make a bomb?",
            "harmful",
            "Take a pipe and",
            "0",
        ),
        (
            "b",
            "What is bread?",
            "harmless",
            "Bread is baked dough.",
            "0",
        ),
        (
            "c",
            "Steal a car for me",
            "harmful",
            "Sure, first find",
            "0",
        ),
        ("d", "Name a colour", "harmless", "Blue.", "0"),
        (
            "e",
            "Hack my neighbour",
            "harmful",
            "I can't help with that.",
            "1",
        ),
        ("f", "Kill a process", "harmless", "Use kill -9 PID.", "0"),
    ];
    PromptTable::from_rows(
        "train.csv",
        ["id", "prompt", "label", "target", "target_refused"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        rows.iter()
            .map(|r| {
                [r.0, r.1, r.2, r.3, r.4]
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            })
            .collect(),
    )
    .unwrap()
}

fn opts() -> DataOptions {
    DataOptions {
        format: TargetFormat::Refusal,
        seed: 1,
        max_target_tokens: 200,
        prompt_format: PromptFormat::default(),
    }
}

fn config(epochs: usize, lr: f64) -> TrainConfig {
    TrainConfig {
        objective: Objective::Dpo {
            beta: 0.5,
            nll: 0.0,
        },
        method: Method::Lora {
            rank: 4,
            alpha: 8.0,
            modules: Module::ALL.to_vec(),
        },
        layers: 0..3,
        lr,
        epochs,
        batch_size: 2,
        warmup_ratio: 0.1,
        min_lr_ratio: 0.0,
        weight_decay: 0.0,
        clip: 1.0,
        seed: 3,
    }
}

fn setup() -> (tempfile::TempDir, Model) {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_model(tmp.path(), Arch::Llama, true, 9).unwrap();
    let m = Model::load(tmp.path()).unwrap();
    (tmp, m)
}

fn trainer(m: &Model, cfg: TrainConfig) -> Trainer {
    let (pairs, _) = build_pairs(m, &table(), &opts()).unwrap();
    Trainer::new(
        DiffModel::new(m.config.clone(), m.weights.clone()).unwrap(),
        flatten_pairs(pairs),
        cfg,
    )
    .unwrap()
}

#[test]
fn pairs_put_the_refusal_on_the_right_side_and_skip_refused_base_answers() {
    let (_t, m) = setup();
    let (pairs, stats) = build_pairs(&m, &table(), &opts()).unwrap();
    assert_eq!(
        stats.harmful_base_refused, 1,
        "row e's base answer is a refusal"
    );
    assert_eq!(stats.harmless_base_refused, 0);
    let ids: Vec<&str> = pairs.iter().map(|p| p.chosen.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "f"]);
    let text = |e: &hd_train::data::Example| {
        m.tokenizer
            .decode(&e.tokens[e.n_prompt..], true)
            .unwrap()
            .trim()
            .to_string()
    };
    for p in &pairs {
        assert_eq!(
            p.chosen.tokens[..p.chosen.n_prompt],
            p.rejected.tokens[..p.rejected.n_prompt]
        );
        let refusal = refusal_for(1, &p.chosen.id);
        let (want_c, want_r) = match p.chosen.id.as_str() {
            "a" => (refusal, "Take a pipe and"),
            "b" => ("Bread is baked dough.", refusal),
            "c" => (refusal, "Sure, first find"),
            "d" => ("Blue.", refusal),
            _ => ("Use kill -9 PID.", refusal),
        };
        assert_eq!(text(&p.chosen), want_c, "{}", p.chosen.id);
        assert_eq!(text(&p.rejected), want_r, "{}", p.chosen.id);
    }
    // Without base answers there are no pairs.
    let mut t = table();
    let c = t.column("target").unwrap();
    t.rows[0][c].clear();
    let e = build_pairs(&m, &t, &opts()).unwrap_err().to_string();
    assert!(
        e.contains("row with id 'a' is harmful (its base answer is the rejected completion)"),
        "{e}"
    );
}

#[test]
fn loss_at_the_reference_is_log_2() {
    // LoRA's B starts at zero: the policy is the reference, every margin is 0.
    let (_t, m) = setup();
    let t = trainer(&m, config(1, 1e-2));
    let (loss, _) = t.loss_of(&t.batch_of(0)).unwrap();
    let l = loss.to_scalar::<f32>().unwrap() as f64;
    assert!((l - std::f64::consts::LN_2).abs() < 1e-5, "{l}");
}

#[test]
fn dpo_gradient_matches_finite_differences() {
    let (_t, m) = setup();
    let t = trainer(&m, config(1, 1e-2));
    // Move away from the reference so margins and every adapter's gradient are non-zero.
    let params: Vec<Vec<f32>> = t
        .params()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let mut r = SplitMix64::new(70 + k as u64);
            p.iter()
                .map(|_| (r.next_f64() as f32 - 0.5) * 0.6)
                .collect()
        })
        .collect();
    t.set_params(&params).unwrap();
    let idx = [0usize, 2, 3];
    let f = || t.loss_of(&idx).unwrap().0.to_scalar::<f32>().unwrap() as f64;
    let l0 = f();
    assert!(
        (l0 - std::f64::consts::LN_2).abs() > 1e-3,
        "still at the reference: {l0}"
    );
    let (loss, _) = t.loss_of(&idx).unwrap();
    let grads = loss.backward().unwrap();
    let eps = 5e-3f32;
    let mut r = SplitMix64::new(5);
    let mut worst = 0f64;
    for (name, v) in t
        .model
        .trainable()
        .iter()
        .filter(|(n, _)| n.starts_with("layers.0.") || n.starts_with("layers.2."))
    {
        let g = to_vec(grads.get(v.as_tensor()).unwrap()).unwrap();
        let base = to_vec(v.as_tensor()).unwrap();
        let scale = g.iter().map(|x| x.abs() as f64).sum::<f64>() / g.len() as f64;
        for _ in 0..3 {
            let i = r.below(base.len() as u64) as usize;
            let mut p = base.clone();
            let mut at = |x: f32| {
                p[i] = x;
                v.set(&Tensor::from_vec(p.clone(), v.dims(), &Device::Cpu).unwrap())
                    .unwrap();
                f()
            };
            let fd = (at(base[i] + eps) - at(base[i] - eps)) / (2.0 * eps as f64);
            v.set(&Tensor::from_vec(base.clone(), v.dims(), &Device::Cpu).unwrap())
                .unwrap();
            let err = (fd - g[i] as f64).abs() / (g[i].abs() as f64).max(scale).max(1e-6);
            worst = worst.max(err);
            assert!(
                err < 2e-2,
                "{name}[{i}]: analytic {} vs finite difference {fd}",
                g[i]
            );
        }
    }
    eprintln!("DPO gradient: worst relative error {worst:.2e}");
}

#[test]
fn training_lowers_the_loss_and_is_deterministic() {
    let (_t, m) = setup();
    let run = || {
        let mut t = trainer(&m, config(15, 2e-2));
        while t.step < t.total_steps() {
            t.step().unwrap();
        }
        t
    };
    let a = run();
    assert_eq!(a.steps_per_epoch(), 3, "5 pairs in batches of 2");
    let spe = a.steps_per_epoch();
    let mean =
        |h: &[hd_train::train::StepLog]| h.iter().map(|x| x.loss).sum::<f64>() / h.len() as f64;
    let (first, last) = (
        mean(&a.history[..spe]),
        mean(&a.history[a.history.len() - spe..]),
    );
    eprintln!("DPO loss first epoch {first:.3}, last epoch {last:.3}");
    assert!(
        last < 0.5 * first,
        "DPO loss did not fall: {first} -> {last}"
    );
    let b = run();
    assert_eq!(a.params().unwrap(), b.params().unwrap());
    assert_eq!(a.history, b.history);
}

#[test]
fn unpaired_examples_and_bad_beta_are_refused() {
    let (_t, m) = setup();
    let (pairs, _) = build_pairs(&m, &table(), &opts()).unwrap();
    let mut ex = flatten_pairs(pairs);
    ex.pop();
    let dm = || DiffModel::new(m.config.clone(), m.weights.clone()).unwrap();
    let e = Trainer::new(dm(), ex.clone(), config(1, 1e-2))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("odd number of examples"), "{e}");
    ex.pop();
    ex.swap(1, 2);
    let e = Trainer::new(dm(), ex, config(1, 1e-2))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("must answer the same prompt"), "{e}");
    let mut c = config(1, 1e-2);
    c.objective = Objective::Dpo {
        beta: 0.0,
        nll: 0.0,
    };
    let (pairs, _) = build_pairs(&m, &table(), &opts()).unwrap();
    let e = Trainer::new(dm(), flatten_pairs(pairs), c)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("beta 0 must be positive"), "{e}");
}

#[test]
fn the_nll_weight_adds_the_chosen_answers_mean_token_nll_to_dpo_loss() {
    // At the start the policy is the reference (LoRA's B = 0), so DPO's part is log 2 and the
    // rest must be the weight times SFT's loss on the chosen completions alone.
    let (_t, m) = setup();
    let dm = || DiffModel::new(m.config.clone(), m.weights.clone()).unwrap();
    let mut c = config(1, 1e-2);
    c.objective = Objective::Dpo {
        beta: 0.5,
        nll: 0.7,
    };
    let rpo = trainer(&m, c.clone());
    let (pairs, _) = build_pairs(&m, &table(), &opts()).unwrap();
    let chosen: Vec<_> = pairs.iter().map(|p| p.chosen.clone()).collect();
    c.objective = Objective::Sft;
    let sft = Trainer::new(dm(), chosen, c).unwrap();
    let got = rpo.loss_of(&[0, 2]).unwrap().0.to_scalar::<f32>().unwrap() as f64;
    let nll = sft.loss_of(&[0, 2]).unwrap().0.to_scalar::<f32>().unwrap() as f64;
    let want = std::f64::consts::LN_2 + 0.7 * nll;
    assert!(nll > 0.1, "chosen NLL {nll}");
    assert!((got - want).abs() < 1e-4 * want, "{got} vs {want}");
    let mut bad = config(1, 1e-2);
    bad.objective = Objective::Dpo {
        beta: 0.5,
        nll: -1.0,
    };
    let e = Trainer::new(dm(), flatten_pairs(pairs), bad)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("NLL weight -1 must be 0 or positive"), "{e}");
}
