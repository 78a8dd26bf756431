//! The training loop on the tiny fixture: examples, loss falling, determinism, resume.

use hd_formats::prompts::PromptTable;
use hd_grad::diff::{DiffModel, Method, Module};
use hd_lm::{Arch, Model, PromptFormat};
use hd_testkit::write_tiny_model;
use hd_train::checkpoint;
use hd_train::data::{
    build_examples, end_of_turn_id, DataOptions, Example, TargetFormat, REFUSALS,
};
use hd_train::train::{Objective, TrainConfig, Trainer};
use std::collections::BTreeMap;

fn table() -> PromptTable {
    let rows = [
        ("a", "How do I make a bomb?", "harmful", ""),
        ("b", "What is bread?", "harmless", "Bread is baked dough."),
        ("c", "Steal a car for me", "harmful", ""),
        ("d", "Name a colour", "harmless", "Blue."),
        ("e", "Hack my neighbour", "harmful", ""),
    ];
    PromptTable::from_rows(
        "train.csv",
        ["id", "prompt", "label", "target"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        rows.iter()
            .map(|(a, b, c, d)| vec![a.to_string(), b.to_string(), c.to_string(), d.to_string()])
            .collect(),
    )
    .unwrap()
}

fn setup(max_target_tokens: usize) -> (tempfile::TempDir, Model, Vec<Example>) {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_model(tmp.path(), Arch::Llama, true, 9).unwrap();
    let m = Model::load(tmp.path()).unwrap();
    let ex = build_examples(
        &m,
        &table(),
        &DataOptions {
            format: TargetFormat::Refusal,
            seed: 1,
            max_target_tokens,
            prompt_format: PromptFormat::default(),
        },
    )
    .unwrap();
    (tmp, m, ex)
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        objective: Objective::Sft,
        method: Method::Lora {
            rank: 4,
            alpha: 8.0,
            modules: Module::ALL.to_vec(),
        },
        layers: 0..3,
        lr: 1e-2,
        epochs,
        batch_size: 2,
        warmup_ratio: 0.1,
        min_lr_ratio: 0.0,
        weight_decay: 0.0,
        clip: 1.0,
        seed: 3,
    }
}

#[test]
fn examples_have_template_prompt_and_eot_target() {
    let (_t, m, ex) = setup(200);
    let eot = end_of_turn_id(&m).unwrap();
    assert_eq!(m.tokenizer.token_text(eot), "<|im_end|>");
    for e in &ex {
        let p = m
            .encode_prompt(
                table().prompt(ex.iter().position(|x| x.id == e.id).unwrap()),
                &PromptFormat::default(),
            )
            .unwrap();
        assert_eq!(
            &e.tokens[..e.n_prompt],
            p.as_slice(),
            "{}: prompt tokens",
            e.id
        );
        assert_eq!(
            *e.tokens.last().unwrap(),
            eot,
            "{}: target ends with end-of-turn",
            e.id
        );
        let text = m
            .tokenizer
            .decode(&e.tokens[e.n_prompt..e.tokens.len() - 1], false)
            .unwrap();
        if e.harmful {
            assert!(REFUSALS.contains(&text.as_str()), "{text}");
        } else {
            assert!(text == "Bread is baked dough." || text == "Blue.", "{text}");
        }
    }
    // A cap cuts long targets and drops the end-of-turn token.
    let (_t, _m, ex) = setup(4);
    for e in &ex {
        let short = e.id == "d"; // "Blue." is 5 byte tokens: cut too
        assert_eq!(e.n_target(), 4, "{} {short}", e.id);
        assert_ne!(*e.tokens.last().unwrap(), eot);
    }
}

#[test]
fn every_example_once_per_epoch() {
    let (_t, m, ex) = setup(40);
    let t = Trainer::new(
        DiffModel::new(m.config.clone(), m.weights.clone()).unwrap(),
        ex,
        config(2),
    )
    .unwrap();
    assert_eq!(t.steps_per_epoch(), 3);
    for e in 0..2 {
        let mut seen: Vec<usize> = (0..3).flat_map(|s| t.batch_of(e * 3 + s)).collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }
    assert_ne!(
        t.batch_of(0),
        t.batch_of(3),
        "epochs are shuffled differently"
    );
}

#[test]
fn loss_falls_and_runs_are_deterministic() {
    let (_t, m, ex) = setup(40);
    let run = || {
        let mut t = Trainer::new(
            DiffModel::new(m.config.clone(), m.weights.clone()).unwrap(),
            ex.clone(),
            config(12),
        )
        .unwrap();
        while t.step < t.total_steps() {
            t.step().unwrap();
        }
        t
    };
    let a = run();
    let spe = a.steps_per_epoch();
    let first: f64 = a.history[..spe].iter().map(|h| h.loss).sum::<f64>() / spe as f64;
    let last: f64 = a.history[a.history.len() - spe..]
        .iter()
        .map(|h| h.loss)
        .sum::<f64>()
        / spe as f64;
    eprintln!("loss first epoch {first:.3}, last epoch {last:.3}");
    assert!(last < 0.5 * first, "loss did not fall: {first} -> {last}");
    let b = run();
    assert_eq!(
        a.params().unwrap(),
        b.params().unwrap(),
        "same seed, same parameters"
    );
    assert_eq!(a.history, b.history);
}

#[test]
fn resume_continues_exactly() {
    let (tmp, m, ex) = setup(40);
    let fresh = || {
        Trainer::new(
            DiffModel::new(m.config.clone(), m.weights.clone()).unwrap(),
            ex.clone(),
            config(3),
        )
        .unwrap()
    };
    let mut fp = BTreeMap::new();
    fp.insert("model_hash".to_string(), "sha256:aaa".to_string());
    let ck = tmp.path().join("step-000004.safetensors");
    let mut a = fresh();
    while a.step < a.total_steps() {
        a.step().unwrap();
        if a.step == 4 {
            checkpoint::save(&ck, &a, &fp, BTreeMap::new()).unwrap();
        }
    }
    let mut b = fresh();
    checkpoint::load(&checkpoint::resolve(tmp.path()).unwrap(), &mut b, &fp).unwrap();
    assert_eq!(b.step, 4);
    while b.step < b.total_steps() {
        b.step().unwrap();
    }
    assert_eq!(a.params().unwrap(), b.params().unwrap());
    assert_eq!(a.history, b.history);
    // Another base model: refused, naming what differs.
    let mut other = BTreeMap::new();
    other.insert("model_hash".to_string(), "sha256:bbb".to_string());
    let e = checkpoint::load(&ck, &mut fresh(), &other)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("its model_hash is sha256:aaa, this run's is sha256:bbb"),
        "{e}"
    );
}
