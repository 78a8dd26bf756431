//! generate: greedy answers of a chat model to a prompt CSV, judged by the judge of
//! `hd_analysis::judge`: refused (its phrase list; `--refusal-phrases FILE` replaces it),
//! complied or neither; or, for a guard model (`--judge guard`), by the verdict its answer
//! starts with: unsafe (flagged; the `refused` column), safe (passed) or other.

use anyhow::{bail, Context, Result};
use hd_formats::atomic::Outputs;
use hd_formats::prompts::PromptTable;
use hd_lm::{Model, PromptFormat};
use std::path::PathBuf;

pub use hd_analysis::judge::{Judge, Outcome, Verdict, DEFAULT_REFUSAL_PHRASES, JUDGE_WINDOW};

/// Everything a generation run needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Model path.
    pub model: PathBuf,
    /// Prompt CSV.
    pub prompts: PathBuf,
    /// Only the first N rows of each category (sized evaluations: `make pair` in CI).
    pub per_category: Option<usize>,
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
    /// Judge the answers as a guard's verdicts instead ([`Verdict`]).
    pub guard: bool,
    /// Where to write refusal rates per `category` (also logged).
    pub summary: Option<PathBuf>,
    /// Prefill each batch's common prefix once.
    pub share_prefix: bool,
    /// How stored (quantised) weights are multiplied.
    pub compute: hd_lm::Compute,
}

/// Outcome rates per value of the `category` column (or `all` without one), as an aligned
/// text table, categories in first-seen order: n, then for refused, complied and neither the
/// count, the rate and its 95% Wilson interval. The first four columns (category, n, refused,
/// rate) keep their places for scripts.
pub fn summarize(table: &PromptTable, outcomes: &[Outcome]) -> String {
    let names = Outcome::ALL.map(Outcome::name);
    let idx: Vec<usize> = outcomes.iter().map(|&o| o as usize).collect();
    summarize_as(table, names, &idx)
}

/// [`summarize`] for a guard's verdicts: unsafe, safe and other in the places of refused,
/// complied and neither.
pub fn summarize_verdicts(table: &PromptTable, verdicts: &[Verdict]) -> String {
    let names = Verdict::ALL.map(Verdict::name);
    let idx: Vec<usize> = verdicts.iter().map(|&v| v as usize).collect();
    summarize_as(table, names, &idx)
}

fn summarize_as(table: &PromptTable, names: [&str; 3], classes: &[usize]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut counts: std::collections::HashMap<String, (usize, [usize; 3])> = Default::default();
    for (i, &o) in classes.iter().enumerate() {
        let c = table.get(i, "category").unwrap_or("all").to_string();
        let e = counts.entry(c.clone()).or_insert_with(|| {
            order.push(c);
            (0, [0; 3])
        });
        e.0 += 1;
        e.1[o] += 1;
    }
    let mut out = format!(
        "{:<18} {:>5} {:>8} {:>7} {:>14} {:>8} {:>7} {:>14} {:>8} {:>7} {:>14}\n",
        "category",
        "n",
        names[0],
        "rate",
        "95% CI",
        names[1],
        "rate",
        "95% CI",
        names[2],
        "rate",
        "95% CI"
    );
    for c in order {
        let (n, k) = counts[&c];
        out += &format!("{c:<18} {n:>5}");
        for k in k {
            let (lo, hi) = hd_analysis::stats::wilson(k, n);
            let ci = format!("[{:.1}, {:.1}]", 100.0 * lo, 100.0 * hi);
            out += &format!(" {k:>8} {:>6.1}% {ci:>14}", 100.0 * k as f64 / n as f64);
        }
        out += "\n";
    }
    out
}

/// Columns added to the prompt rows.
pub const COLUMNS: [&str; 4] = ["response", "n_new_tokens", "refused", "outcome"];

/// Runs generation and writes the rows plus `response`, `n_new_tokens`, `refused`,
/// `outcome`.
pub fn run(o: &Options) -> Result<()> {
    let mut outs = check_before_load(o)?;
    let mut table = PromptTable::read(&o.prompts)?;
    if o.per_category.is_some() {
        table = table.select(&table.rows_by_category(None, o.per_category)?);
    }
    if table.is_empty() {
        bail!("{}: no prompt rows", o.prompts.display());
    }
    let mut model = Model::load(&o.model)?;
    model.compute = o.compute;
    let ids = encode_all(&model, &table, o)?;
    let requests = table.requests();
    let pb = hd_cli::progress(table.len() as u64, "prompts");
    let mut extra = Vec::with_capacity(table.len());
    let (mut gen_time, mut n_new) = (std::time::Duration::ZERO, 0usize);
    for (c, chunk) in ids.chunks(o.batch_size).enumerate() {
        let t0 = std::time::Instant::now();
        let gens = model
            .generate_with(chunk, o.max_new_tokens, &[], o.share_prefix)
            .map_err(|e| match e {
                // Garbage logits would decode to an empty answer that counts as compliance.
                hd_lm::LmError::NonFinite { sequence, what } => anyhow::anyhow!(
                    "{}: {what} of prompt id '{}' are not finite (NaN or infinity; corrupt \
                     weights?)",
                    o.model.display(),
                    table.id(c * o.batch_size + sequence)
                ),
                other => other.into(),
            })?;
        gen_time += t0.elapsed();
        n_new += gens.iter().map(|g| g.tokens.len()).sum::<usize>();
        for (j, g) in gens.into_iter().enumerate() {
            let text = model.tokenizer.decode(&g.tokens, true)?;
            let (flagged, name) = if o.guard {
                let v = Verdict::of(&text);
                (v == Verdict::Unsafe, v.name())
            } else {
                let outcome = o.judge.outcome(&requests[c * o.batch_size + j], &text);
                (outcome == Outcome::Refused, outcome.name())
            };
            extra.push(vec![
                g.tokens.len().to_string(),
                u8::from(flagged).to_string(),
                name.to_string(),
            ]);
            extra.last_mut().expect("pushed").insert(0, text);
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    let summary = if o.guard {
        let verdicts: Vec<Verdict> = extra.iter().map(|e| Verdict::of(&e[0])).collect();
        summarize_verdicts(&table, &verdicts)
    } else {
        let outcomes: Vec<Outcome> = extra
            .iter()
            .map(|e| Outcome::parse(&e[3]).expect("written above"))
            .collect();
        summarize(&table, &outcomes)
    };
    // Both outputs or neither.
    table.stage_with(&mut outs, &o.out, &COLUMNS, &extra)?;
    if let Some(p) = &o.summary {
        outs.stage(p, |w| w.write_all(summary.as_bytes()))?;
    }
    outs.commit()?;
    let secs = gen_time.as_secs_f64();
    tracing::info!(
        "generation: {n_new} new tokens in {secs:.3} s ({:.1} tokens/s; prefill and decoding, \
         model load excluded)",
        n_new as f64 / secs.max(1e-9)
    );
    tracing::info!("outcome rates:\n{summary}");
    Ok(())
}

/// Usage errors, before the model loads (exit 2): an output that is an input or another
/// output, no tokens to generate, more new tokens than the model's context.
fn check_before_load(o: &Options) -> Result<Outputs> {
    if o.batch_size == 0 {
        return Err(hd_cli::usage("--batch-size must be at least 1"));
    }
    if o.max_new_tokens == 0 {
        return Err(hd_cli::usage(
            "--max-new-tokens 0: there would be no answers to judge (every refusal rate 0%); \
             give at least 1",
        ));
    }
    let outs = Outputs::new()
        .input("--model", &o.model)
        .input("--prompts", &o.prompts)
        .output("--out", &o.out)
        .output_opt("--summary", o.summary.as_deref())
        .check()?;
    let cfg = Model::read_config(&o.model)?;
    hd_cli::check_new_tokens(
        "--max-new-tokens",
        o.max_new_tokens,
        cfg.max_position_embeddings,
    )?;
    Ok(outs)
}

/// Token ids of every prompt; prompt plus answer must fit the model's context.
fn encode_all(model: &Model, table: &PromptTable, o: &Options) -> Result<Vec<Vec<u32>>> {
    let ctx = model.config.max_position_embeddings;
    let mut ids = Vec::with_capacity(table.len());
    for i in 0..table.len() {
        let t = model
            .encode_prompt(table.prompt(i), &o.format)
            .with_context(|| format!("{}: row with id '{}'", o.prompts.display(), table.id(i)))?;
        if t.len()
            .checked_add(o.max_new_tokens)
            .is_none_or(|n| n > ctx)
        {
            bail!(
                "{}: row with id '{}': {} prompt tokens + {} new exceed the model's context of {ctx}",
                o.prompts.display(),
                table.id(i),
                t.len(),
                o.max_new_tokens,
            );
        }
        ids.push(t);
    }
    Ok(ids)
}
