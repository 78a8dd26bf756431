//! generate: greedy answers of a chat model to a prompt CSV, judged by the refusal judge of
//! `hd_analysis::judge` (`--refusal-phrases FILE` replaces its phrase list).

use anyhow::{bail, Context, Result};
use hd_formats::prompts::PromptTable;
use hd_lm::{Model, PromptFormat};
use std::path::PathBuf;

pub use hd_analysis::judge::{Judge, DEFAULT_REFUSAL_PHRASES, JUDGE_WINDOW};

/// Everything a generation run needs.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Model path.
    pub model: PathBuf,
    /// Prompt CSV.
    pub prompts: PathBuf,
    /// Output CSV.
    pub out: PathBuf,
    /// Token limit per answer.
    pub max_new_tokens: usize,
    /// Prompts decoded together.
    pub batch_size: usize,
    /// Chat formatting.
    pub format: PromptFormat,
    /// Refusal judge.
    pub judge: Judge,
    /// Where to write refusal rates per `category` (also logged).
    pub summary: Option<PathBuf>,
    /// Prefill each batch's common prefix once.
    pub share_prefix: bool,
}

/// Refusal rate per value of the `category` column (or `all` without one), as an aligned
/// text table, categories in first-seen order.
pub fn summarize(table: &PromptTable, refused: &[bool]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut counts: std::collections::HashMap<String, (usize, usize)> = Default::default();
    for (i, &r) in refused.iter().enumerate() {
        let c = table.get(i, "category").unwrap_or("all").to_string();
        let e = counts.entry(c.clone()).or_insert_with(|| {
            order.push(c);
            (0, 0)
        });
        e.0 += 1;
        e.1 += usize::from(r);
    }
    let mut out = format!(
        "{:<18} {:>5} {:>8} {:>8}\n",
        "category", "n", "refused", "rate"
    );
    for c in order {
        let (n, r) = counts[&c];
        out += &format!(
            "{c:<18} {n:>5} {r:>8} {:>7.1}%\n",
            100.0 * r as f64 / n as f64
        );
    }
    out
}

/// Columns added to the prompt rows.
pub const COLUMNS: [&str; 3] = ["response", "n_new_tokens", "refused"];

/// Runs generation and writes the rows plus `response`, `n_new_tokens`, `refused`.
pub fn generate(o: &GenerateOptions) -> Result<()> {
    if o.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    for p in std::iter::once(&o.out).chain(o.summary.as_ref()) {
        hd_formats::atomic::check_writable(p)?;
    }
    let table = PromptTable::read(&o.prompts)?;
    if table.is_empty() {
        bail!("{}: no prompt rows", o.prompts.display());
    }
    let model = Model::load(&o.model)?;
    let mut ids = Vec::with_capacity(table.len());
    for i in 0..table.len() {
        let t = model
            .encode_prompt(table.prompt(i), &o.format)
            .with_context(|| format!("{}: row with id '{}'", o.prompts.display(), table.id(i)))?;
        if t.len() + o.max_new_tokens > model.config.max_position_embeddings {
            bail!(
                "{}: row with id '{}': {} prompt tokens + {} new exceed the model's context of {}",
                o.prompts.display(),
                table.id(i),
                t.len(),
                o.max_new_tokens,
                model.config.max_position_embeddings
            );
        }
        ids.push(t);
    }
    let pb = hd_cli::progress(table.len() as u64, "prompts");
    let mut extra = Vec::with_capacity(table.len());
    for chunk in ids.chunks(o.batch_size) {
        for g in model.generate_with(chunk, o.max_new_tokens, &[], o.share_prefix)? {
            let text = model.tokenizer.decode(&g.tokens, true)?;
            let refused = o.judge.refused(&text);
            extra.push(vec![
                text,
                g.tokens.len().to_string(),
                u8::from(refused).to_string(),
            ]);
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    table.write_with(&o.out, &COLUMNS, &extra)?;
    let refused: Vec<bool> = extra.iter().map(|e| e[2] == "1").collect();
    let summary = summarize(&table, &refused);
    tracing::info!("refusal rates:\n{summary}");
    if let Some(p) = &o.summary {
        hd_formats::atomic::write_atomic(p, |w| w.write_all(summary.as_bytes()))?;
    }
    Ok(())
}
