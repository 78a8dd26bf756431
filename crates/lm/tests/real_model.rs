//! Checks on the real default model (SmolLM2-135M-Instruct Q4_1 GGUF from `make setup`);
//! each test says it skipped when the file is absent.

use hd_lm::{Model, PromptFormat};
use std::path::PathBuf;

fn model_path() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        Some(p)
    } else {
        // In CI a missing model is a broken setup, not a reason to pass green.
        assert!(
            std::env::var_os("CI").is_none(),
            "{} not found and CI is set: run `make setup`",
            p.display()
        );
        eprintln!("SKIPPED: {} not found (run `make setup`)", p.display());
        None
    }
}

#[test]
fn capital_of_france() {
    let Some(p) = model_path() else { return };
    let t0 = std::time::Instant::now();
    let m = Model::load(&p).unwrap();
    eprintln!("load {:?} {:?}", t0.elapsed(), m.config);
    let fmt = PromptFormat::default();
    let ids = m
        .encode_prompt("What is the capital of France?", &fmt)
        .unwrap();
    eprintln!(
        "{:?}\n{:?}",
        m.render("What is the capital of France?", &fmt).unwrap(),
        ids
    );
    let g = m.generate(&[ids], 40, &[]).unwrap();
    let text = m.tokenizer.decode(&g[0].tokens, true).unwrap();
    eprintln!("{text:?}");
    assert!(text.contains("Paris"), "answer was {text:?}");
}

/// A batch prefills its common prefix (the system turn) once; each prompt's greedy answer must
/// be what it gets alone and what the batch gets without sharing.
#[test]
fn batched_generation_with_shared_prefix_matches_single() {
    let Some(p) = model_path() else { return };
    let m = Model::load(&p).unwrap();
    let fmt = PromptFormat::default();
    let prompts: Vec<Vec<u32>> = [
        "What is the capital of France?",
        "Name three primes.",
        "How do I pick a lock?",
        "Write a haiku about autumn.",
    ]
    .iter()
    .map(|q| m.encode_prompt(q, &fmt).unwrap())
    .collect();
    let refs: Vec<&[u32]> = prompts.iter().map(|p| p.as_slice()).collect();
    let shared = hd_lm::common_prefix_len(&refs);
    assert!(
        hd_lm::forward::worth_sharing(refs.len(), shared),
        "{shared} shared tokens: this test would not exercise sharing"
    );
    let batch = m.generate(&prompts, 24, &[]).unwrap();
    let unshared = m.generate_with(&prompts, 24, &[], false).unwrap();
    for ((p, b), u) in prompts.iter().zip(&batch).zip(&unshared) {
        assert_eq!(b.tokens, u.tokens);
        let alone = m.generate(std::slice::from_ref(p), 24, &[]).unwrap();
        assert_eq!(alone[0].tokens, b.tokens);
    }
}
