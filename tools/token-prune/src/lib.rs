//! `token-prune`: delete the trigger tokens that make a tuned model refuse (the paper's last
//! claim), in its **local, model-free form**: the paper's reference rewrites prompts with a
//! 70B model behind a remote API and scores them with a GPT judge; this tool only deletes
//! user-text tokens, chosen by attribution on the attacked model, and judges the result with
//! the same model. See [`hd_analysis::prune`] for the loop.
//!
//! Candidates are the prompts of the chosen categories that the model refuses at the first
//! token (refusal score > 0). Each method prunes every candidate under the same budget; a
//! pruned text that passes the first-token judge is confirmed by greedy generation and the
//! answer judge (`hd_analysis::judge`: refused, complied or neither, against the original
//! row's request). Writes:
//! - `--out`: a prompt CSV (act-dump and generate read it as is): `id`
//!   (`{original_id}~{method}`, `~random-{r}` for the random control), `prompt` = the pruned
//!   text, the original columns, then [`PRUNED_COLUMNS`];
//! - `--summary`: [`SUMMARY_HEADER`], one row per method and category, and one with category
//!   `all`. Rates are fractions in 0..1; for the random control they are means over the
//!   repeats, and the `_sd` columns give their standard deviation across repeats.
//!   `complied` and `neither` split `success_generated` (it is their sum); each rate has a
//!   95% Wilson interval (`_ci_low`, `_ci_high`) over `n_trials` = n × repeats (the random
//!   control's repeats pooled as trials).

#![deny(missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hd_analysis::judge::{Judge, Outcome as Judgement};
use hd_analysis::prune::{
    token_counts, Method, Outcome, Prompt, PruneTarget, Pruner, Settings, Start,
};
use hd_analysis::refusal::{RefusalTokens, DEFAULT_REFUSAL_TOKENS};
use hd_analysis::stats::wilson;
use hd_analysis::tokens::Encoded;
use hd_formats::atomic::Outputs;
use hd_formats::components::{self, BadComponentId, ComponentId};
use hd_formats::prompts::PromptTable;
use hd_formats::tensors::{components_name, Kind, TensorFile};
use hd_grad::diff::DiffModel;
use hd_lm::{Model, PromptFormat};

/// Columns `--out` adds to the original ones.
pub const PRUNED_COLUMNS: [&str; 14] = [
    "original_id",
    "original_prompt",
    "method",
    "repeat",
    "target",
    "deleted",
    "n_deleted",
    "n_user_tokens",
    "fraction",
    "refusal_score",
    "success_first_token",
    "success_generated",
    "outcome",
    "answer",
];

/// Header of `--summary`.
pub const SUMMARY_HEADER: &str = "method,category,budget,n,success_first_token,success_generated,\
mean_deleted,top_deleted,success_first_token_sd,success_generated_sd,n_trials,\
success_first_token_ci_low,success_first_token_ci_high,success_generated_ci_low,\
success_generated_ci_high,complied,complied_ci_low,complied_ci_high,neither,neither_ci_low,\
neither_ci_high";

/// Deleted tokens listed per summary row.
const TOP_DELETED: usize = 10;

/// What the deletions lower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// The first-token refusal score.
    Refusal,
    /// Component `k` (1-based) of hidden state `layer`: `L{layer}-C{k}`.
    Component {
        /// Hidden-state index.
        layer: usize,
        /// 1-based component number.
        k: usize,
    },
}

impl TargetSpec {
    /// Parses `refusal` or `L{l}-C{k}` (k 1-based).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "refusal" {
            return Ok(TargetSpec::Refusal);
        }
        let c: ComponentId = s
            .parse()
            .map_err(|e: BadComponentId| format!("invalid target: {e}, or refusal"))?;
        let (layer, k) = (c.layer, c.k);
        Ok(TargetSpec::Component { layer, k })
    }

    /// `refusal` or `L{l}-C{k}`.
    pub fn name(&self) -> String {
        match self {
            TargetSpec::Refusal => "refusal".into(),
            TargetSpec::Component { layer, k } => ComponentId::new(*layer, *k).to_string(),
        }
    }
}

/// Parses a comma-separated list of method names (distinct, in the given order).
pub fn parse_methods(s: &str) -> Result<Vec<Method>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let m = Method::parse(part).ok_or_else(|| {
            format!("unknown method '{part}': expected attribution, random, gradnorm or occlusion")
        })?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Parses a comma-separated, non-empty list of category names.
pub fn parse_categories(s: &str) -> Result<Vec<String>, String> {
    let v: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    if v.is_empty() {
        return Err("empty category list: name at least one category (e.g. raw,roleplay)".into());
    }
    Ok(v)
}

/// Everything `token-prune` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The attacked (tuned) model: GGUF file or HF directory.
    pub model: PathBuf,
    /// Prompt CSV.
    pub prompts: PathBuf,
    /// Pruned prompts CSV.
    pub out: PathBuf,
    /// Summary CSV.
    pub summary: PathBuf,
    /// First-step token scores CSV.
    pub scores: Option<PathBuf>,
    /// What the deletions lower.
    pub target: TargetSpec,
    /// Components file, for a component target.
    pub components: Option<PathBuf>,
    /// Fraction of user tokens that may be deleted.
    pub budget: f64,
    /// Absolute cap on deleted tokens.
    pub max_tokens: usize,
    /// Tokens deleted per step.
    pub step: usize,
    /// Methods, in order.
    pub methods: Vec<Method>,
    /// Runs of the random control.
    pub repeats: usize,
    /// Seed of the random control.
    pub seed: u64,
    /// Categories the candidates come from (`None`: every row).
    pub categories: Option<Vec<String>>,
    /// At most the first N rows of each category (file order).
    pub per_category: Option<usize>,
    /// New tokens generated to confirm a first-token success.
    pub confirm_tokens: usize,
    /// Prompts per traced forward pass.
    pub batch_size: Option<usize>,
    /// Rules of the attribution method.
    pub rules: hd_grad::Rules,
    /// Chat formatting.
    pub format: PromptFormat,
    /// Run the prompts' common template prefix once (`--no-share-prefix` turns it off).
    pub share_prefix: bool,
    /// How stored weights are multiplied in the scoring and confirming forward passes (the
    /// attribution's traced passes stay exact).
    pub compute: hd_lm::Compute,
}

/// Reads the inputs, prunes every candidate with every method, confirms the successes, then
/// writes both CSVs together.
pub fn run(o: &Options) -> Result<()> {
    check_options(o)?;
    let outs = Outputs::new()
        .input("--prompts", &o.prompts)
        .input("--model", &o.model)
        .input_opt("--components", o.components.as_deref())
        .output("--out", &o.out)
        .output("--summary", &o.summary)
        .output_opt("--scores", o.scores.as_deref())
        .check()?;
    let config = Model::read_config(&o.model)?;
    hd_cli::check_new_tokens(
        "--confirm-tokens",
        o.confirm_tokens,
        config.max_position_embeddings,
    )?;
    let target = read_target(o, &config)?;
    let table = PromptTable::read(&o.prompts)?;
    if table.is_empty() {
        bail!("{}: no prompt rows", o.prompts.display());
    }
    let rows = table
        .rows_by_category(o.categories.as_deref(), o.per_category)
        .map_err(hd_cli::categories_error)?;
    let t0 = std::time::Instant::now();
    let mut model = Model::load(&o.model)?;
    model.compute = o.compute;
    let diff = DiffModel::new(model.config.clone(), model.weights.clone())?;
    let refusal = RefusalTokens::parse(&model.tokenizer, DEFAULT_REFUSAL_TOKENS)?;
    let encoded = hd_analysis::tokens::encode_rows(
        &model,
        rows.iter().map(|&i| (table.id(i), table.prompt(i))),
        &o.format,
        &o.prompts.display().to_string(),
    )?;
    let settings = settings(o, &model, &encoded);
    let pruner = Pruner::new(&model, &diff, &refusal, target, settings)?;
    tracing::debug!("model loaded in {:.1} s", t0.elapsed().as_secs_f64());
    let (candidates, starts) = refused_rows(o, &rows, &pruner, encoded)?;
    let prompts: Vec<Prompt> = candidates
        .iter()
        .map(|&i| Prompt {
            id: table.id(i),
            text: table.prompt(i),
        })
        .collect();
    let runs = prune_all(o, &pruner, &prompts, &starts)?;
    let scores = match &o.scores {
        Some(_) => Some(first_scores(
            o,
            &model,
            &pruner,
            &table,
            &candidates,
            &prompts,
            &starts,
        )?),
        None => None,
    };
    let answers = confirm(o, &pruner, &runs)?;
    let judge = Judge::default();
    let requests = table.requests();
    let report = Report {
        requests: &requests,
        o,
        table: &table,
        candidates: &candidates,
        runs: &runs,
        answers: &answers,
        judge: &judge,
    };
    write_outputs(o, outs, &report, scores.as_deref())
}

/// The pruner's settings; without `--batch-size`, as many of the `encoded` prompts per
/// traced pass as the memory available holds (at most 32).
fn settings(o: &Options, model: &Model, encoded: &[Encoded]) -> Settings {
    let seqs: Vec<Vec<u32>> = encoded.iter().map(|e| e.ids.clone()).collect();
    let batch = hd_cli::traced_batch(o.batch_size, model, &seqs, model.config.num_layers, 32);
    Settings {
        budget: o.budget,
        max_tokens: o.max_tokens,
        step: o.step,
        seed: o.seed,
        format: o.format.clone(),
        batch,
        share_prefix: o.share_prefix,
        rules: o.rules,
    }
}

/// pruned.csv, summary.csv and the optional scores, together or not at all.
fn write_outputs(
    o: &Options,
    mut outs: Outputs,
    report: &Report,
    scores: Option<&[u8]>,
) -> Result<()> {
    let pruned = report.pruned_table()?;
    let summary = report.summary()?;
    pruned
        .0
        .stage_with(&mut outs, &o.out, &PRUNED_COLUMNS, &pruned.1)?;
    outs.stage(&o.summary, |w| w.write_all(&summary))?;
    if let (Some(path), Some(bytes)) = (&o.scores, scores) {
        outs.stage(path, |w| w.write_all(bytes))?;
    }
    outs.commit()?;
    Ok(())
}

/// Every method (the random control `--repeats` times) over every candidate.
fn prune_all(
    o: &Options,
    pruner: &Pruner,
    prompts: &[Prompt],
    starts: &[Start],
) -> Result<Vec<Run>> {
    let mut runs: Vec<Run> = Vec::new();
    for &m in &o.methods {
        let repeats = if m == Method::Random { o.repeats } else { 1 };
        for r in 1..=repeats {
            let t = std::time::Instant::now();
            let pb = hd_cli::progress(prompts.len() as u64, &format!("prompts ({})", m.name()));
            let outcomes = pruner.prune(m, r, prompts, starts, |n| pb.set_position(n as u64))?;
            pb.finish_and_clear();
            let ok = outcomes.iter().filter(|x| x.success()).count();
            let which = match m {
                Method::Random => format!(" #{r}"),
                _ => String::new(),
            };
            tracing::info!(
                "{}{which}: {ok}/{} past the first-token judge in {:.1} s",
                m.name(),
                outcomes.len(),
                t.elapsed().as_secs_f64()
            );
            runs.push(Run {
                method: m,
                repeat: r,
                outcomes,
            });
        }
    }
    Ok(runs)
}

/// Header of `--scores`.
pub const SCORES_HEADER: &str = "id,category,method,position,token,score,rank";

/// The first-step scores of every candidate under each method (random: its first repeat), as
/// CSV bytes; logs each method's mean per-prompt Spearman correlation with occlusion's.
fn first_scores(
    o: &Options,
    model: &Model,
    pruner: &Pruner,
    table: &PromptTable,
    candidates: &[usize],
    prompts: &[Prompt],
    starts: &[Start],
) -> Result<Vec<u8>> {
    let tok = &model.tokenizer;
    let mut per_method = Vec::with_capacity(o.methods.len());
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(SCORES_HEADER.split(','))?;
    for &m in &o.methods {
        let t = std::time::Instant::now();
        let scored = pruner.first_scores(m, prompts, starts)?;
        tracing::debug!(
            "{}: first-step scores in {:.1} s",
            m.name(),
            t.elapsed().as_secs_f64()
        );
        for (((&row, p), sc), st) in candidates.iter().zip(prompts).zip(&scored).zip(starts) {
            let enc = &st.enc;
            let cat = table.get(row, "category").unwrap_or("");
            let order = hd_analysis::prune::top_k(sc, sc.len());
            let mut rank = vec![0usize; sc.len()];
            for (r, &j) in order.iter().enumerate() {
                rank[j] = r + 1;
            }
            for (j, &v) in sc.iter().enumerate() {
                let id = enc.ids[enc.user.start + j];
                w.write_record([
                    p.id,
                    cat,
                    m.name(),
                    &j.to_string(),
                    &tok.decode(&[id], false)?,
                    &format!("{v:.6e}"),
                    &rank[j].to_string(),
                ])?;
            }
        }
        per_method.push((m, scored));
    }
    if let Some((_, occ)) = per_method.iter().find(|(m, _)| *m == Method::Occlusion) {
        for (m, sc) in per_method.iter().filter(|(m, _)| *m != Method::Occlusion) {
            let rs: Vec<f64> = sc
                .iter()
                .zip(occ)
                .map(|(a, b)| hd_analysis::stats::spearman(a, b))
                .filter(|r| r.is_finite())
                .collect();
            let mean = rs.iter().sum::<f64>() / rs.len().max(1) as f64;
            tracing::info!(
                "{}: first-step ranking vs occlusion's, mean Spearman {mean:.3} over {} prompts",
                m.name(),
                rs.len()
            );
        }
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// One method's (and repeat's) outcomes, in candidate order.
struct Run {
    method: Method,
    repeat: usize,
    outcomes: Vec<Outcome>,
}

fn check_options(o: &Options) -> Result<()> {
    if !(o.budget > 0.0 && o.budget <= 1.0) {
        return Err(hd_cli::usage(format!(
            "--budget {}: expected 0 < budget <= 1 (a fraction of the user tokens)",
            o.budget
        )));
    }
    for (flag, v) in [
        ("--max-tokens", o.max_tokens),
        ("--step", o.step),
        ("--repeats", o.repeats),
        ("--batch-size", o.batch_size.unwrap_or(1)),
    ] {
        if v == 0 {
            return Err(hd_cli::usage(format!("{flag} must be at least 1")));
        }
    }
    if o.methods.is_empty() {
        return Err(hd_cli::usage("--methods: name at least one method"));
    }
    match (&o.target, &o.components) {
        (TargetSpec::Component { .. }, None) => Err(hd_cli::usage(format!(
            "--target {} needs --components (e.g. shift-svd's svd.safetensors)",
            o.target.name()
        ))),
        (TargetSpec::Refusal, Some(_)) => Err(hd_cli::usage(
            "--components goes with a component target (--target L{l}-C{k})",
        )),
        _ => Ok(()),
    }
}

/// The prune target; a component is read from `--components` and checked against the model.
fn read_target(o: &Options, config: &hd_lm::Config) -> Result<PruneTarget> {
    let (layer, k) = match o.target {
        TargetSpec::Refusal => return Ok(PruneTarget::Refusal),
        TargetSpec::Component { layer, k } => (layer, k),
    };
    let path = o.components.as_deref().expect("checked in check_options");
    if layer > config.num_layers {
        return Err(hd_cli::usage(format!(
            "--target {}: unknown component: {} has hidden states 0..={}",
            o.target.name(),
            o.model.display(),
            config.num_layers
        )));
    }
    let f = TensorFile::read(path)?;
    let name = components_name(layer);
    if !f.layers_of(Kind::Components).contains(&layer) {
        return Err(hd_cli::usage(format!(
            "--target {}: unknown component: {} has no tensor '{name}'",
            o.target.name(),
            path.display()
        )));
    }
    let direction = components::read_directions(&f, layer, &[k], config.hidden_size)
        .with_context(|| format!("--target {}", o.target.name()))?
        .remove(0);
    Ok(PruneTarget::Component { layer, direction })
}

/// The rows the model refuses at the first token (score > 0), in file order, with their
/// starts (what every method begins from).
fn refused_rows(
    o: &Options,
    rows: &[usize],
    pruner: &Pruner,
    encoded: Vec<Encoded>,
) -> Result<(Vec<usize>, Vec<Start>)> {
    let (refused, starts): (Vec<usize>, Vec<Start>) = rows
        .iter()
        .copied()
        .zip(pruner.start(encoded)?)
        .filter(|(_, s)| s.score > 0.0)
        .unzip();
    if refused.is_empty() {
        bail!(
            "{}: no prompt refused: none of the {} selected rows gets a refusal score > 0 from {} \
             (nothing to prune)",
            o.prompts.display(),
            rows.len(),
            o.model.display()
        );
    }
    tracing::info!(
        "{} of {} selected prompts refused",
        refused.len(),
        rows.len()
    );
    Ok((refused, starts))
}

/// Greedy answers of every distinct pruned text that passed the first-token judge.
fn confirm(o: &Options, pruner: &Pruner, runs: &[Run]) -> Result<HashMap<String, String>> {
    let mut texts: Vec<&str> = runs
        .iter()
        .flat_map(|r| &r.outcomes)
        .filter(|x| x.success())
        .map(|x| x.text.as_str())
        .collect();
    texts.sort_unstable();
    texts.dedup();
    if o.confirm_tokens == 0 || texts.is_empty() {
        return Ok(HashMap::new());
    }
    let t = std::time::Instant::now();
    let pb = hd_cli::progress(texts.len() as u64, "confirmations");
    let answers = pruner.answers(&texts, o.confirm_tokens, |n| pb.set_position(n as u64))?;
    pb.finish_and_clear();
    tracing::info!(
        "{} pruned texts answered in {:.1} s",
        texts.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(texts.into_iter().map(str::to_string).zip(answers).collect())
}

struct Report<'a> {
    o: &'a Options,
    table: &'a PromptTable,
    candidates: &'a [usize],
    runs: &'a [Run],
    answers: &'a HashMap<String, String>,
    judge: &'a Judge,
    /// The request of every table row, what answers are judged against.
    requests: &'a [String],
}

/// One pruned prompt's judgements.
struct Judged {
    first: bool,
    generated: bool,
    /// The answer's outcome (refused at the first token counts as refused); `None` without
    /// a confirmation (`--confirm-tokens 0`).
    outcome: Option<Judgement>,
}

impl Report<'_> {
    fn judged(&self, i: usize, x: &Outcome) -> Judged {
        let first = x.success();
        let outcome = match self.answers.get(&x.text) {
            _ if !first => Some(Judgement::Refused),
            Some(a) => Some(self.judge.outcome(&self.requests[i], a)),
            None => None,
        };
        // --confirm-tokens 0 leaves the first-token judge alone.
        let generated = match outcome {
            Some(o) => o != Judgement::Refused,
            None => first && self.o.confirm_tokens == 0,
        };
        Judged {
            first,
            generated,
            outcome,
        }
    }

    fn category(&self, i: usize) -> &str {
        self.table.get(i, "category").unwrap_or("")
    }

    /// The pruned prompt table (original columns, id and prompt replaced) and the values of
    /// [`PRUNED_COLUMNS`].
    fn pruned_table(&self) -> Result<(PromptTable, Vec<Vec<String>>)> {
        let id_col = self.table.column("id").expect("validated");
        let prompt_col = self.table.column("prompt").expect("validated");
        let mut rows = Vec::new();
        let mut extra = Vec::new();
        for run in self.runs {
            for (&i, x) in self.candidates.iter().zip(&run.outcomes) {
                let mut row = self.table.rows[i].clone();
                let orig = self.table.id(i);
                row[id_col] = match run.method {
                    Method::Random => format!("{orig}~random-{}", run.repeat),
                    m => format!("{orig}~{}", m.name()),
                };
                row[prompt_col] = x.text.clone();
                rows.push(row);
                let j = self.judged(i, x);
                extra.push(vec![
                    orig.to_string(),
                    self.table.prompt(i).to_string(),
                    run.method.name().to_string(),
                    run.repeat.to_string(),
                    self.o.target.name(),
                    serde_json::to_string(&x.deleted)?,
                    x.deleted.len().to_string(),
                    x.n_user.to_string(),
                    format!("{:.4}", fraction(x)),
                    format!("{:.4}", x.score),
                    u8::from(j.first).to_string(),
                    u8::from(j.generated).to_string(),
                    j.outcome.map(|o| o.name()).unwrap_or_default().to_string(),
                    self.answers.get(&x.text).cloned().unwrap_or_default(),
                ]);
            }
        }
        let t = PromptTable::from_rows(
            &self.o.out.display().to_string(),
            self.table.headers.clone(),
            rows,
        )?;
        Ok((t, extra))
    }

    /// summary.csv: per method, each category (sorted) and `all`.
    fn summary(&self) -> Result<Vec<u8>> {
        let mut cats: Vec<&str> = self.candidates.iter().map(|&i| self.category(i)).collect();
        cats.sort_unstable();
        cats.dedup();
        let has_cats = self.table.column("category").is_some();
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(SUMMARY_HEADER.split(','))?;
        let mut methods: Vec<Method> = Vec::new();
        for r in self.runs {
            if !methods.contains(&r.method) {
                methods.push(r.method);
            }
        }
        for m in methods {
            let runs: Vec<&Run> = self.runs.iter().filter(|r| r.method == m).collect();
            let groups = cats
                .iter()
                .filter(|_| has_cats)
                .map(|c| Some(*c))
                .chain([None]);
            for cat in groups {
                w.write_record(self.summary_row(m, &runs, cat))?;
            }
        }
        Ok(w.into_inner()?)
    }

    fn summary_row(&self, m: Method, runs: &[&Run], cat: Option<&str>) -> Vec<String> {
        let keep: Vec<usize> = (0..self.candidates.len())
            .filter(|&q| cat.is_none_or(|c| self.category(self.candidates[q]) == c))
            .collect();
        // Per repeat: (first-token rate, generated rate); over everything: deleted counts.
        let mut per_run = Vec::new();
        let mut deleted = 0usize;
        let mut tokens: Vec<&str> = Vec::new();
        // Pooled over repeats: first-token and generated successes, complied, neither, and
        // whether every trial has an outcome.
        let (mut pooled, mut all_judged) = ([0usize; 4], true);
        for r in runs {
            let (mut f, mut g) = (0usize, 0usize);
            for &q in &keep {
                let x = &r.outcomes[q];
                let j = self.judged(self.candidates[q], x);
                f += usize::from(j.first);
                g += usize::from(j.generated);
                pooled[0] += usize::from(j.first);
                pooled[1] += usize::from(j.generated);
                pooled[2] += usize::from(j.outcome == Some(Judgement::Complied));
                pooled[3] += usize::from(j.outcome == Some(Judgement::Neither));
                all_judged &= j.outcome.is_some();
                deleted += x.deleted.len();
                tokens.extend(x.deleted.iter().map(String::as_str));
            }
            let n = keep.len().max(1) as f64;
            per_run.push((f as f64 / n, g as f64 / n));
        }
        let (mf, sf) = mean_sd(per_run.iter().map(|p| p.0));
        let (mg, sg) = mean_sd(per_run.iter().map(|p| p.1));
        let top: BTreeMap<usize, (String, usize)> = token_counts(tokens)
            .into_iter()
            .take(TOP_DELETED)
            .enumerate()
            .collect();
        let mut obj = serde_json::Map::new();
        for (_, (t, c)) in top {
            obj.insert(t, c.into());
        }
        let rows = (keep.len() * runs.len()).max(1) as f64;
        let sd = |s: f64| {
            if m == Method::Random {
                format!("{s:.4}")
            } else {
                String::new()
            }
        };
        let trials = keep.len() * runs.len();
        let ci = |k: usize| {
            let (lo, hi) = wilson(k, trials);
            [format!("{lo:.4}"), format!("{hi:.4}")]
        };
        let mut row = vec![
            m.name().to_string(),
            cat.unwrap_or("all").to_string(),
            format!("{}", self.o.budget),
            keep.len().to_string(),
            format!("{mf:.4}"),
            format!("{mg:.4}"),
            format!("{:.3}", deleted as f64 / rows),
            serde_json::Value::Object(obj).to_string(),
            sd(sf),
            sd(sg),
            trials.to_string(),
        ];
        row.extend(ci(pooled[0]));
        row.extend(ci(pooled[1]));
        for k in [pooled[2], pooled[3]] {
            if all_judged {
                row.push(format!("{:.4}", k as f64 / rows));
                row.extend(ci(k));
            } else {
                row.extend([String::new(), String::new(), String::new()]);
            }
        }
        row
    }
}

fn fraction(x: &Outcome) -> f64 {
    if x.n_user == 0 {
        0.0
    } else {
        x.deleted.len() as f64 / x.n_user as f64
    }
}

/// Mean and (population) standard deviation.
fn mean_sd(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let v: Vec<f64> = v.collect();
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
    (m, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(TargetSpec::parse("refusal").unwrap(), TargetSpec::Refusal);
        assert_eq!(
            TargetSpec::parse("L14-C2").unwrap(),
            TargetSpec::Component { layer: 14, k: 2 }
        );
        assert!(TargetSpec::parse("L14-C0").is_err());
        assert!(TargetSpec::parse("14-2").is_err());
        assert_eq!(TargetSpec::parse("L3-C1").unwrap().name(), "L3-C1");
    }

    #[test]
    fn lists() {
        assert_eq!(
            parse_methods("random,attribution,random").unwrap(),
            [Method::Random, Method::Attribution]
        );
        assert!(parse_methods("lrp").is_err());
        assert!(parse_categories(" , ").is_err());
        assert_eq!(parse_categories("raw, flip").unwrap(), ["raw", "flip"]);
    }

    #[test]
    fn spread() {
        let (m, s) = mean_sd([0.2, 0.4].into_iter());
        assert!((m - 0.3).abs() < 1e-12 && (s - 0.1).abs() < 1e-12);
    }
}
