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
