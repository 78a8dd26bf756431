//! `dir-interact sweep`: interventions on the model and what they do (the paper's
//! `intervention.py` with its perplexity check), the baselines beside them, and the
//! first-order ranking of every candidate (see [`hd_analysis::estimate`]).
//!
//! Runs, each one row per category plus `all` in `sweep.csv`:
//! - `none`: no edit; `random`: a seeded Gaussian direction of the first item's norm, op,
//!   alpha and layers; `dim` (with `--dim`): the tuned model's harmful − harmless difference
//!   in means at a layer, projected out (α = 1) at the embeddings, every block's output (the
//!   last before the final norm) and every position: Arditi et al.'s directional ablation
//!   ([`HookSet::All`]);
//! - each `--spec` item; with `--rank-top N`, the N candidates the estimate ranks first.
//!
//! Measures per run: the first-token pass rate (refusal log-odds ≤ 0), the generated pass
//! rate (greedy answers, not refused by the phrase judge) split into complied and neither
//! (`hd_analysis::judge`), each rate with its n and 95% Wilson interval, the mean projection of the read-out layer's
//! state on its C1, and the perplexity of the base model's answers to benign prompts
//! (teacher-forced, token-mean NLL); `degenerate` when that perplexity exceeds twice the
//! none run's. Outputs are written together after every run is done.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hd_analysis::estimate::{estimate, last_token_grads, LastTokenGrads};
use hd_analysis::intervene::{
    answer_nll, check_edits, first_token, generate, generate_probed, Edit, FirstToken, HookSet, Op,
    Prefill, Start,
};
use hd_analysis::judge::{Judge, Outcome};
use hd_analysis::refusal::RefusalTokens;
use hd_analysis::stats::{spearman, wilson};
use hd_formats::atomic::Outputs;
use hd_formats::prompts::PromptTable;
use hd_formats::tensors::{mean_shift_name, TensorFile};
use hd_grad::diff::DiffModel;
use hd_lm::{Model, PromptFormat};
use hd_rng::SplitMix64;

use crate::common::{
    categories, category_order, comp_name, csv_bytes, num, parse_comp_name, read_dirs,
};

/// `sweep.csv` and its header.
pub const SWEEP_CSV: (&str, &str) = (
    "sweep.csv",
    "spec,layer,component,op,alpha,category,n,pass_first_token,pass_generated,c1_projection,benign_ppl,degenerate,\
     pass_first_token_ci_low,pass_first_token_ci_high,pass_generated_ci_low,pass_generated_ci_high,\
     refused,complied,complied_ci_low,complied_ci_high,neither,neither_ci_low,neither_ci_high",
);
/// `estimates.csv` and its header.
pub const ESTIMATES_CSV: (&str, &str) = (
    "estimates.csv",
    "candidate,layer,component,op,alpha,estimate,rank,measured_delta_score,measured_delta_pass",
);
/// `answers.csv` and its header.
pub const ANSWERS_CSV: (&str, &str) = ("answers.csv", "spec,id,category,refused,outcome,response");
/// `rank_correlation.csv` and its header.
pub const RANK_CSV: (&str, &str) = (
    "rank_correlation.csv",
    "n,spearman_delta_score,spearman_delta_pass",
);

/// One `--spec` item: `L{l}-C{k}:sub|project:ALPHA`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecItem {
    /// Hidden-state index of the component.
    pub layer: usize,
    /// 0-based component.
    pub comp: usize,
    /// Operation.
    pub op: Op,
    /// Scale.
    pub alpha: f32,
}

impl SpecItem {
    /// Parses `L14-C6:sub:1.15`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("--spec '{s}': {why} (expected L{{layer}}-C{{k}}:sub|project:ALPHA, e.g. L14-C6:sub:1.15)")
        };
        let parts: Vec<&str> = s.trim().split(':').collect();
        let [name, op, alpha] = parts[..] else {
            return Err(bad("three fields separated by ':'"));
        };
        let (layer, comp) = parse_comp_name(name).ok_or_else(|| bad("unknown component name"))?;
        let op = match op {
            "sub" => Op::Sub,
            "project" => Op::Project,
            _ => return Err(bad("unknown operation")),
        };
        let alpha: f32 = alpha.parse().map_err(|_| bad("alpha is not a number"))?;
        if !alpha.is_finite() {
            return Err(bad("alpha is not finite"));
        }
        Ok(SpecItem {
            layer,
            comp,
            op,
            alpha,
        })
    }

    fn name(&self) -> String {
        comp_name(self.layer, self.comp)
    }
}

/// Refuses a `--spec` list that names one run twice (its rows could not be told apart):
/// a usage error naming the item.
pub fn check_distinct(items: &[SpecItem]) -> Result<(), String> {
    for (i, s) in items.iter().enumerate() {
        if items[..i].contains(s) {
            return Err(format!(
                "--spec: {}:{}:{} is given twice; give each run once",
                s.name(),
                s.op.name(),
                s.alpha
            ));
        }
    }
    Ok(())
}

/// The ranking of every candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rank {
    /// Candidates run for real.
    pub top: usize,
    /// Components per layer (C1..C{k}).
    pub k: usize,
    /// Their operation.
    pub op: Op,
    /// Their alpha.
    pub alpha: f32,
}

/// Where the component runs edit: a named set or a list of hidden-state indices.
#[derive(Debug, Clone, PartialEq)]
pub enum At {
    /// A named set (`--at blocks|all|inner`).
    Set(HookSet),
    /// These indices (0..=L).
    List(Vec<usize>),
}

/// Everything `dir-interact sweep` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// GGUF file or HF directory (the tuned model).
    pub model: PathBuf,
    /// Components file.
    pub components: PathBuf,
    /// Prompt CSV.
    pub prompts: PathBuf,
    /// Interventions.
    pub spec: Vec<SpecItem>,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Layers the component runs edit.
    pub at: At,
    /// Edited positions.
    pub start: Start,
    /// Generated tokens per answer (0: none).
    pub max_new_tokens: usize,
    /// Base-model answers to benign prompts.
    pub benign_answers: Option<PathBuf>,
    /// At most this many of them (the first).
    pub benign_limit: Option<usize>,
    /// Contrast file of the tuned model.
    pub dim: Option<PathBuf>,
    /// Layers of the `dim` runs (default: the first spec item's).
    pub dim_layers: Option<Vec<usize>>,
    /// Only these categories.
    pub categories: Option<Vec<String>>,
    /// At most the first N rows of each category (file order).
    pub per_category: Option<usize>,
    /// Rank every candidate first.
    pub rank: Option<Rank>,
    /// Ranked runs that also generate.
    pub generate_top: usize,
    /// Read-out layer of C1.
    pub readout: Option<usize>,
    /// Seed of the random direction.
    pub seed: u64,
    /// Prompts per forward pass.
    pub batch_size: Option<usize>,
    /// Refusal-token list.
    pub refusal_tokens: String,
    /// Answer judge.
    pub judge: Judge,
    /// Chat formatting.
    pub format: PromptFormat,
    /// Prefill prompts' shared prefix once in generation.
    pub share_prefix: bool,
    /// How stored weights are multiplied in the runs' forward passes (the first-order
    /// estimate's gradients stay exact).
    pub compute: hd_lm::Compute,
}

impl Options {
    /// Prompts per plain (untraced) forward pass: `--batch-size`, default 32.
    fn forward_batch(&self) -> usize {
        self.batch_size.unwrap_or(32)
    }
}

/// One run of the table.
#[derive(Debug, Clone)]
struct RunDef {
    spec: String,
    layer: Option<usize>,
    comp: Option<usize>,
    op: Option<Op>,
    alpha: Option<f32>,
    edits: Vec<Edit>,
    generate: bool,
}

impl RunDef {
    /// The run's full name in answers.csv, where no other column tells two runs apart:
    /// `L14-C2:sub:0.5` for a component (its whole spec), `dim:L14` for the
    /// difference-in-means direction of one layer, else the spec (`none`, `random`).
    fn label(&self) -> String {
        match (self.comp, self.op, self.alpha, self.layer) {
            (Some(_), Some(op), Some(a), _) => format!("{}:{}:{a}", self.spec, op.name()),
            (None, _, _, Some(l)) if self.spec == "dim" => format!("dim:L{l}"),
            _ => self.spec.clone(),
        }
    }
}

/// What one run measured, per prompt.
#[derive(Debug, Clone, Default)]
struct Measured {
    score: Vec<f64>,
    projection: Vec<f64>,
    answers: Option<Vec<String>>,
    ppl: Option<f64>,
}

/// Prompt and answer token ids of the benign rows.
type Benign = (Vec<Vec<u32>>, Vec<Vec<u32>>);

struct Study {
    model: Model,
    table: PromptTable,
    rows: Vec<usize>,
    cats: Vec<String>,
    seqs: Vec<Vec<u32>>,
    benign: Option<Benign>,
    refusal: RefusalTokens,
    readout: (usize, Vec<f32>),
    comps: TensorFile,
    judge: Judge,
    /// Per study row, the request its answers are judged against.
    requests: Vec<String>,
}

fn check_args(o: &Options) -> Result<()> {
    if o.batch_size == Some(0) {
        return Err(hd_cli::usage("--batch-size must be at least 1"));
    }
    if o.spec.is_empty() && o.rank.is_none() {
        return Err(hd_cli::usage("give --spec items or --rank-top N"));
    }
    if o.benign_limit.is_some() && o.benign_answers.is_none() {
        return Err(hd_cli::usage("--benign-limit needs --benign-answers"));
    }
    if o.dim_layers.is_some() && o.dim.is_none() {
        return Err(hd_cli::usage("--dim-layers needs --dim"));
    }
    if let Some(r) = o.rank {
        if r.top == 0 || r.k == 0 {
            return Err(hd_cli::usage("--rank-top and --rank-k must be at least 1"));
        }
    }
    Ok(())
}

/// Reads the inputs, runs every intervention, then writes the outputs together.
pub fn run(o: &Options) -> Result<()> {
    check_args(o)?;
    let config = Model::read_config(&o.model)?;
    hd_cli::check_new_tokens(
        "--max-new-tokens",
        o.max_new_tokens,
        config.max_position_embeddings,
    )?;
    let nl = config.num_layers;
    let layers: Vec<usize> = match &o.at {
        At::Set(set) => set.layers(nl),
        At::List(v) => v.clone(),
    };
    if let Some(&l) = layers.iter().find(|&&l| l > nl) {
        return Err(hd_cli::usage(format!(
            "--at {l}: the residual stream of {} has indices 0..={nl} (L = the last block's \
             output, before the final norm)",
            o.model.display()
        )));
    }
    let study = read_study(o, &config)?;
    let names = [SWEEP_CSV.0, ESTIMATES_CSV.0, ANSWERS_CSV.0, RANK_CSV.0];
    let paths = names.map(|n| o.out_dir.join(n));
    // The folder is created when the outputs are staged, after every late failure.
    let mut outs = Outputs::new()
        .input("--model", &o.model)
        .input("--components", &o.components)
        .input("--prompts", &o.prompts)
        .input_opt("--benign-answers", o.benign_answers.as_deref())
        .input_opt("--dim", o.dim.as_deref())
        .output_in_dir("--out-dir", &o.out_dir, &names)
        .check()?;
    let mut runs = base_runs(o, &study, &layers)?;
    let (estimates, ranked) = match o.rank {
        Some(r) => rank_candidates(o, &study, &layers, r)?,
        None => (Vec::new(), Vec::new()),
    };
    let n_base = runs.len();
    runs.extend(ranked);
    let measured = measure_all(o, &study, &mut runs, n_base)?;
    let none_ppl = measured[0].ppl;
    let sweep = sweep_csv(&study, &runs, &measured, none_ppl)?;
    let (est, rank) = estimates_csv(
        &estimates,
        &runs[n_base..],
        &measured[n_base..],
        &measured[0],
    )?;
    let answers = answers_csv(&study, &runs, &measured)?;
    for (p, bytes) in paths.iter().zip([sweep, est, answers, rank]) {
        outs.stage(p, |w| w.write_all(&bytes))?;
    }
    outs.commit()?;
    Ok(())
}

fn read_study(o: &Options, config: &hd_lm::Config) -> Result<Study> {
    let (nl, d) = (config.num_layers, config.hidden_size);
    let comps = TensorFile::read(&o.components)?;
    for s in &o.spec {
        if s.layer >= nl {
            bail!(
                "--spec {}: the residual stream of {} has indices 0..{nl}",
                s.name(),
                o.model.display()
            );
        }
        read_dirs(&comps, &o.components, s.layer, s.comp + 1, d)
            .with_context(|| format!("--spec {}", s.name()))?;
    }
    let readout = o.readout.unwrap_or((nl * 5).div_ceil(6).min(nl));
    if readout > nl {
        return Err(hd_cli::usage(format!(
            "--readout {readout}: expected 0..={nl}"
        )));
    }
    let c1 = read_dirs(&comps, &o.components, readout, 1, d)
        .with_context(|| format!("--readout {readout}"))?
        .remove(0);
    let table = PromptTable::read(&o.prompts)?;
    if table.is_empty() {
        bail!("{}: no prompt rows", o.prompts.display());
    }
    let rows = table
        .rows_by_category(o.categories.as_deref(), o.per_category)
        .map_err(hd_cli::categories_error)?;
    let all = categories(&table);
    let cats: Vec<String> = rows.iter().map(|&i| all[i].clone()).collect();
    let mut model = Model::load(&o.model)?;
    model.compute = o.compute;
    let mut seqs = Vec::with_capacity(rows.len());
    for &i in &rows {
        let ids = model
            .encode_prompt(table.prompt(i), &o.format)
            .with_context(|| format!("{}: row with id '{}'", o.prompts.display(), table.id(i)))?;
        seqs.push(ids);
    }
    let benign = o
        .benign_answers
        .as_deref()
        .map(|p| read_benign(&model, p, o.benign_limit, &o.format))
        .transpose()?;
    let refusal =
        RefusalTokens::parse(&model.tokenizer, &o.refusal_tokens).context("--refusal-tokens")?;
    let requests = table.requests();
    let requests = rows.iter().map(|&i| requests[i].clone()).collect();
    Ok(Study {
        model,
        table,
        rows,
        cats,
        seqs,
        benign,
        refusal,
        readout: (readout, c1),
        comps,
        judge: o.judge.clone(),
        requests,
    })
}

/// Prompt and answer token ids of the benign rows of a generate output CSV.
fn read_benign(
    model: &Model,
    path: &std::path::Path,
    limit: Option<usize>,
    fmt: &PromptFormat,
) -> Result<Benign> {
    let t = PromptTable::read(path)?;
    if t.column("response").is_none() {
        bail!(
            "{}: no column 'response' (a generate output CSV)",
            path.display()
        );
    }
    let keep: Vec<usize> = (0..t.len())
        .filter(|&i| t.get(i, "label").is_none_or(|l| l == "harmless"))
        .filter(|&i| !t.get(i, "response").unwrap_or("").is_empty())
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    if keep.is_empty() {
        bail!("{}: no harmless rows with a response", path.display());
    }
    let (mut p, mut a) = (Vec::new(), Vec::new());
    for i in keep {
        let ctx = || format!("{}: row with id '{}'", path.display(), t.id(i));
        p.push(model.encode_prompt(t.prompt(i), fmt).with_context(ctx)?);
        let ans = model
            .tokenizer
            .encode(t.get(i, "response").unwrap_or(""), false)
            .with_context(ctx)?;
        a.push(ans);
    }
    Ok((p, a))
}

/// The `--dim` file: a shift-svd `--contrast` output (its `mean_shift.{l}` is the
/// difference in means). Another shift's mean (tuned - base) is not that direction.
fn read_dim_file(path: &std::path::Path) -> Result<TensorFile> {
    let f = TensorFile::read(path)?;
    match f.metadata.get("shift") {
        Some(s) if s.starts_with("contrast") => {}
        Some(s) => bail!(
            "{}: --dim needs a shift-svd --contrast file (its mean_shift is the difference in \
             means), but this file's shift is '{s}'",
            f.path
        ),
        None => tracing::warn!(
            "{}: records no 'shift' metadata; taking its mean_shift as the difference in means",
            f.path
        ),
    }
    Ok(f)
}

/// `mean_shift.{layer}` of the `--dim` file, checked: width `d`, finite, not zero (a zero
/// direction would make the `dim` run the `none` run under another name).
fn dim_direction(f: &TensorFile, layer: usize, d: usize) -> Result<Vec<f32>> {
    let name = mean_shift_name(layer);
    let v = f.expect_shape(&name, &[Some(d)])?.to_f32_vec();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        bail!(
            "{}: tensor '{name}' has a non-finite value ({}) at index {i}",
            f.path,
            v[i]
        );
    }
    if v.iter().all(|&x| x == 0.0) {
        bail!(
            "{}: tensor '{name}' is all zeros: there is no difference-in-means direction to \
             project out",
            f.path
        );
    }
    Ok(v)
}

fn comp_edit(study: &Study, o: &Options, s: &SpecItem, layers: &[usize]) -> Result<Edit> {
    let d = study.model.config.hidden_size;
    let v = read_dirs(&study.comps, &o.components, s.layer, s.comp + 1, d)?.remove(s.comp);
    Ok(Edit {
        layers: layers.to_vec(),
        op: s.op,
        alpha: s.alpha,
        v,
        start: o.start,
    })
}

fn base_runs(o: &Options, study: &Study, layers: &[usize]) -> Result<Vec<RunDef>> {
    let mut runs = vec![RunDef {
        spec: "none".into(),
        layer: None,
        comp: None,
        op: None,
        alpha: None,
        edits: vec![],
        generate: true,
    }];
    let first = match (o.spec.first(), o.rank) {
        (Some(s), _) => s.clone(),
        // Ranking only: the random control takes the candidates' op and alpha on C1's norm.
        (None, Some(r)) => SpecItem {
            layer: study.readout.0.min(study.model.config.num_layers - 1),
            comp: 0,
            op: r.op,
            alpha: r.alpha,
        },
        (None, None) => unreachable!("checked in check_args"),
    };
    let first_edit = comp_edit(study, o, &first, layers)?;
    runs.push(RunDef {
        spec: "random".into(),
        layer: None,
        comp: None,
        op: Some(first.op),
        alpha: Some(first.alpha),
        edits: vec![Edit {
            v: random_like(&first_edit.v, o.seed),
            ..first_edit
        }],
        generate: true,
    });
    if let Some(dim) = &o.dim {
        let f = read_dim_file(dim)?;
        // Both come from the analysis prompts (the contrast of one model, the shift of two).
        if let Some(w) = hd_formats::meta::check_same_prompts(&study.comps, &f)? {
            tracing::warn!("{w}");
        }
        let nl = study.model.config.num_layers;
        for l in o.dim_layers.clone().unwrap_or(vec![first.layer]) {
            let v = dim_direction(&f, l, study.model.config.hidden_size)?;
            runs.push(RunDef {
                spec: "dim".into(),
                layer: Some(l),
                comp: None,
                op: Some(Op::Project),
                alpha: Some(1.0),
                edits: vec![Edit {
                    layers: HookSet::All.layers(nl),
                    op: Op::Project,
                    alpha: 1.0,
                    v,
                    start: Start::All,
                }],
                generate: true,
            });
        }
    }
    for s in &o.spec {
        runs.push(RunDef {
            spec: s.name(),
            layer: Some(s.layer),
            comp: Some(s.comp),
            op: Some(s.op),
            alpha: Some(s.alpha),
            edits: vec![comp_edit(study, o, s, layers)?],
            generate: true,
        });
    }
    for r in &runs {
        check_edits(&study.model, &r.edits).with_context(|| format!("run {}", r.spec))?;
    }
    Ok(runs)
}

/// A seeded Gaussian direction with the norm of `like`.
fn random_like(like: &[f32], seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    let mut v: Vec<f64> = (0..like.len())
        .map(|_| {
            // Box-Muller on two uniforms in (0, 1].
            let (a, b) = (1.0 - rng.next_f64(), rng.next_f64());
            (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let want = like
        .iter()
        .map(|&x| x as f64 * x as f64)
        .sum::<f64>()
        .sqrt();
    for x in &mut v {
        *x *= want / n;
    }
    v.into_iter().map(|x| x as f32).collect()
}

/// One candidate's estimate.
#[derive(Debug, Clone)]
struct Estimate {
    layer: usize,
    comp: usize,
    mean: f64,
}

fn rank_candidates(
    o: &Options,
    study: &Study,
    layers: &[usize],
    r: Rank,
) -> Result<(Vec<Estimate>, Vec<RunDef>)> {
    if o.start != Start::LastPrompt {
        return Err(hd_cli::usage(
            "--rank-top estimates edits of the last prompt token: use --positions last",
        ));
    }
    tracing::info!(
        "first-order estimate: gradients of {} prompts",
        study.seqs.len()
    );
    let grads = all_grads(o, study)?;
    let nl = study.model.config.num_layers;
    let d = study.model.config.hidden_size;
    let mut est = Vec::new();
    for l in 0..nl {
        let name = hd_formats::tensors::components_name(l);
        let Ok(t) = study.comps.get(&name) else {
            continue;
        };
        let k = r.k.min(t.shape.first().copied().unwrap_or(0));
        for (c, v) in read_dirs(&study.comps, &o.components, l, k, d)?
            .iter()
            .enumerate()
        {
            let m = grads
                .iter()
                .map(|g| estimate(g, layers, v, r.alpha as f64, r.op == Op::Project))
                .sum::<f64>()
                / grads.len() as f64;
            est.push(Estimate {
                layer: l,
                comp: c,
                mean: m,
            });
        }
    }
    // Most negative first: the largest estimated drop of the refusal score.
    let mut order: Vec<usize> = (0..est.len()).collect();
    order.sort_by(|&a, &b| est[a].mean.total_cmp(&est[b].mean).then(a.cmp(&b)));
    let mut runs = Vec::new();
    for &i in order.iter().take(r.top) {
        let s = SpecItem {
            layer: est[i].layer,
            comp: est[i].comp,
            op: r.op,
            alpha: r.alpha,
        };
        runs.push(RunDef {
            spec: s.name(),
            layer: Some(s.layer),
            comp: Some(s.comp),
            op: Some(s.op),
            alpha: Some(s.alpha),
            edits: vec![comp_edit(study, o, &s, layers)?],
            generate: false,
        });
    }
    Ok((est, runs))
}

fn all_grads(o: &Options, study: &Study) -> Result<Vec<LastTokenGrads>> {
    // The study's model: its weights are shared (mapped or reference-counted), not loaded again.
    let m = &study.model;
    let diff = DiffModel::new(m.config.clone(), m.weights.clone())?;
    let pb = hd_cli::progress(study.seqs.len() as u64, "prompts (estimate)");
    let mut out = Vec::with_capacity(study.seqs.len());
    let given = o.batch_size.map(|b| b.min(16));
    let batch = hd_cli::traced_batch(given, m, &study.seqs, m.config.num_layers, 16);
    for chunk in study.seqs.chunks(batch) {
        out.extend(last_token_grads(&diff, chunk, &study.refusal.ids)?);
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    Ok(out)
}

/// First-token measures of every run (those of the base runs that edit every position come
/// from their generation), then generation and perplexity for the runs that generate: the
/// base runs, and the `generate_top` ranked runs with the largest measured drop of the
/// pass-relevant score.
fn measure_all(
    o: &Options,
    study: &Study,
    runs: &mut [RunDef],
    n_base: usize,
) -> Result<Vec<Measured>> {
    let mut m: Vec<Measured> = vec![Measured::default(); runs.len()];
    // Base runs that generate and edit every position get their first-token measures from
    // their own generation: they cannot share the prompts' prefill, so a pass of their own
    // would run every prompt once more.
    let can_probe = o.max_new_tokens > 0 && study.readout.0 < study.model.config.num_layers;
    let probed: Vec<bool> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| can_probe && i < n_base && r.generate && !from_last(&r.edits))
        .collect();
    first_tokens(o, study, runs, &probed, &mut m)?;
    let mut ranked: Vec<usize> = (n_base..runs.len()).collect();
    ranked.sort_by(|&a, &b| {
        pass_rate(&m[b].score)
            .total_cmp(&pass_rate(&m[a].score))
            .then(a.cmp(&b))
    });
    for &i in ranked.iter().take(o.generate_top) {
        runs[i].generate = true;
    }
    let gen: Vec<usize> = (0..runs.len()).filter(|&i| runs[i].generate).collect();
    let names: Vec<&str> = gen.iter().map(|&i| runs[i].spec.as_str()).collect();
    tracing::info!(
        "generation and perplexity for {} runs: {}",
        gen.len(),
        names.join(", ")
    );
    let edits: Vec<&[Edit]> = gen.iter().map(|&i| runs[i].edits.as_slice()).collect();
    if o.max_new_tokens > 0 {
        let probe: Vec<bool> = gen.iter().map(|&i| probed[i]).collect();
        for (&i, (a, ft)) in gen.iter().zip(answers(o, study, &edits, &probe)?) {
            m[i].answers = Some(a);
            if let Some(ft) = ft {
                m[i].score = ft.score;
                m[i].projection = ft.projection;
            }
        }
    }
    if let Some((p, a)) = &study.benign {
        tracing::info!("benign perplexity of {} runs", gen.len());
        for (&i, ppl) in gen.iter().zip(perplexity(o, study, p, a, &edits)?) {
            m[i].ppl = Some(ppl);
        }
    }
    Ok(m)
}

/// First-token measures of every run not `probed` (one prefill per batch serves every
/// run whose edits start at the last prompt token).
fn first_tokens(
    o: &Options,
    study: &Study,
    runs: &[RunDef],
    probed: &[bool],
    m: &mut [Measured],
) -> Result<()> {
    let todo: Vec<usize> = (0..runs.len()).filter(|&i| !probed[i]).collect();
    tracing::info!("first-token measures of {} runs", todo.len());
    let pb = hd_cli::progress(
        (study.seqs.len() * todo.len()) as u64,
        "prompt-runs (first token)",
    );
    let ro = (study.readout.0, study.readout.1.as_slice());
    for chunk in study.seqs.chunks(o.forward_batch()) {
        let prefill = Prefill::new(&study.model, chunk)?;
        for &i in &todo {
            let edits = &runs[i].edits;
            let pre = from_last(edits).then_some(&prefill);
            let ft = first_token(&study.model, chunk, edits, pre, &study.refusal.ids, ro)?;
            m[i].score.extend(ft.score);
            m[i].projection.extend(ft.projection);
            pb.inc(chunk.len() as u64);
        }
    }
    pb.finish_and_clear();
    Ok(())
}

/// Edits that start at the last prompt token can share one prefill of the prompts.
fn from_last(edits: &[Edit]) -> bool {
    edits.iter().all(|e| e.start == Start::LastPrompt)
}

/// One prefill of `prompts` when some run can use it.
fn shared_prefill(
    study: &Study,
    prompts: &[Vec<u32>],
    runs: &[&[Edit]],
) -> Result<Option<Prefill>> {
    Ok(match runs.iter().any(|e| from_last(e)) {
        true => Some(Prefill::new(&study.model, prompts)?),
        false => None,
    })
}

/// Greedy answers of every prompt under each run's edits, and for the runs marked in
/// `probe` the first-token measures of the same pass: per batch, the prompts are prefilled
/// once (up to their last token) for all runs whose edits start there.
fn answers(
    o: &Options,
    study: &Study,
    runs: &[&[Edit]],
    probe: &[bool],
) -> Result<Vec<(Vec<String>, Option<FirstToken>)>> {
    let mut out: Vec<(Vec<String>, Option<FirstToken>)> = probe
        .iter()
        .map(|&p| {
            (
                Vec::with_capacity(study.seqs.len()),
                p.then(FirstToken::default),
            )
        })
        .collect();
    let pb = hd_cli::progress(
        (study.seqs.len() * runs.len()) as u64,
        "prompt-runs (answers)",
    );
    let ro = (study.readout.0, study.readout.1.as_slice());
    let (model, ids, n) = (&study.model, &study.refusal.ids, o.max_new_tokens);
    for chunk in study.seqs.chunks(o.forward_batch()) {
        let prefill = shared_prefill(study, chunk, runs)?;
        for (edits, (got, ft)) in runs.iter().zip(out.iter_mut()) {
            let pre = prefill.as_ref().filter(|_| from_last(edits));
            let toks = match ft {
                Some(ft) => {
                    let (toks, f) = generate_probed(model, chunk, edits, n, pre, ids, ro)?;
                    ft.score.extend(f.score);
                    ft.projection.extend(f.projection);
                    toks
                }
                None => generate(model, chunk, edits, n, pre)?,
            };
            for t in toks {
                got.push(model.tokenizer.decode(&t, true)?);
            }
            pb.inc(chunk.len() as u64);
        }
    }
    pb.finish_and_clear();
    Ok(out)
}

/// Benign perplexity under each run's edits (prompts prefilled once per batch, as in
/// [`answers`]).
fn perplexity(
    o: &Options,
    study: &Study,
    prompts: &[Vec<u32>],
    answers: &[Vec<u32>],
    runs: &[&[Edit]],
) -> Result<Vec<f64>> {
    let mut acc = vec![(0.0f64, 0usize); runs.len()];
    for (p, a) in prompts
        .chunks(o.forward_batch())
        .zip(answers.chunks(o.forward_batch()))
    {
        let prefill = shared_prefill(study, p, runs)?;
        for (edits, (nll, n)) in runs.iter().zip(acc.iter_mut()) {
            let pre = prefill.as_ref().filter(|_| from_last(edits));
            let (s, c) = answer_nll(&study.model, p, a, edits, pre)?;
            *nll += s;
            *n += c;
        }
    }
    Ok(acc
        .into_iter()
        .map(|(nll, n)| {
            if n == 0 {
                f64::NAN
            } else {
                (nll / n as f64).exp()
            }
        })
        .collect())
}

fn pass_rate(scores: &[f64]) -> f64 {
    scores.iter().filter(|&&s| s <= 0.0).count() as f64 / scores.len().max(1) as f64
}

fn sweep_csv(
    study: &Study,
    runs: &[RunDef],
    m: &[Measured],
    none_ppl: Option<f64>,
) -> Result<Vec<u8>> {
    let mut order = vec!["all".to_string()];
    order.extend(
        category_order(&study.cats)
            .into_iter()
            .filter(|c| c != "all"),
    );
    let mut rows = Vec::new();
    for (r, mr) in runs.iter().zip(m) {
        let degenerate = match (mr.ppl, none_ppl) {
            (Some(p), Some(n)) => (p > 2.0 * n).to_string(),
            _ => String::new(),
        };
        for cat in &order {
            let idx: Vec<usize> = (0..study.cats.len())
                .filter(|&i| cat == "all" || &study.cats[i] == cat)
                .collect();
            let n = idx.len() as f64;
            let ft_k = idx.iter().filter(|&&i| mr.score[i] <= 0.0).count();
            let ft = ft_k as f64 / n;
            // Counts of refused, complied, neither among the generated answers.
            let counts = mr.answers.as_ref().map(|a| {
                let mut c = [0usize; 3];
                for &i in &idx {
                    c[study_outcome(study, i, &a[i]) as usize] += 1;
                }
                c
            });
            let gen = counts.map(|c| (c[1] + c[2]) as f64 / n);
            let proj = idx.iter().map(|&i| mr.projection[i]).sum::<f64>() / n;
            let mut rates = ci_cells(ft_k, idx.len()).to_vec();
            match counts {
                Some(c) => {
                    rates.extend(ci_cells(c[1] + c[2], idx.len()));
                    rates.push(num(c[0] as f64 / n));
                    for k in [c[1], c[2]] {
                        rates.push(num(k as f64 / n));
                        rates.extend(ci_cells(k, idx.len()));
                    }
                }
                None => rates.extend(std::iter::repeat_n(String::new(), 9)),
            }
            rows.push(vec![
                r.spec.clone(),
                r.layer.map(|l| l.to_string()).unwrap_or_default(),
                r.comp.map(|c| (c + 1).to_string()).unwrap_or_default(),
                r.op.map(|o| o.name().to_string()).unwrap_or_default(),
                r.alpha.map(|a| format!("{a}")).unwrap_or_default(),
                cat.clone(),
                idx.len().to_string(),
                num(ft),
                gen.map(num).unwrap_or_default(),
                num(proj),
                mr.ppl.map(num).unwrap_or_default(),
                degenerate.clone(),
            ]);
            rows.last_mut().expect("pushed").extend(rates);
        }
    }
    csv_bytes(SWEEP_CSV.1, rows)
}

/// The outcome of study row `i`'s answer `text`.
fn study_outcome(study: &Study, i: usize, text: &str) -> Outcome {
    study.judge.outcome(&study.requests[i], text)
}

/// `ci_low`, `ci_high` cells of the 95% Wilson interval of `k` of `n`.
fn ci_cells(k: usize, n: usize) -> [String; 2] {
    let (lo, hi) = wilson(k, n);
    [num(lo), num(hi)]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn estimates_csv(
    est: &[Estimate],
    ranked: &[RunDef],
    m: &[Measured],
    none: &Measured,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut order: Vec<usize> = (0..est.len()).collect();
    order.sort_by(|&a, &b| est[a].mean.total_cmp(&est[b].mean).then(a.cmp(&b)));
    let mut rank = vec![0usize; est.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r + 1;
    }
    let base_score = mean(&none.score);
    let base_pass = pass_rate(&none.score);
    let mut pairs = Vec::new();
    let mut rows = Vec::new();
    for (i, e) in est.iter().enumerate() {
        let hit = ranked
            .iter()
            .position(|r| r.layer == Some(e.layer) && r.comp == Some(e.comp));
        let (ds, dp) = match hit {
            Some(j) => {
                let ds = mean(&m[j].score) - base_score;
                let dp = pass_rate(&m[j].score) - base_pass;
                pairs.push((e.mean, ds, dp));
                (num(ds), num(dp))
            }
            None => (String::new(), String::new()),
        };
        let r0 = ranked.first();
        rows.push(vec![
            comp_name(e.layer, e.comp),
            e.layer.to_string(),
            (e.comp + 1).to_string(),
            r0.and_then(|r| r.op)
                .map(|o| o.name().to_string())
                .unwrap_or_default(),
            r0.and_then(|r| r.alpha)
                .map(|a| format!("{a}"))
                .unwrap_or_default(),
            num(e.mean),
            rank[i].to_string(),
            ds,
            dp,
        ]);
    }
    let est_v: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let ds_v: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    // A larger pass rate goes with a more negative estimate: correlate with −Δpass.
    let dp_v: Vec<f64> = pairs.iter().map(|p| -p.2).collect();
    let corr = csv_bytes(
        RANK_CSV.1,
        [vec![
            pairs.len().to_string(),
            num(spearman(&est_v, &ds_v)),
            num(spearman(&est_v, &dp_v)),
        ]],
    )?;
    Ok((csv_bytes(ESTIMATES_CSV.1, rows)?, corr))
}

fn answers_csv(study: &Study, runs: &[RunDef], m: &[Measured]) -> Result<Vec<u8>> {
    let mut rows = Vec::new();
    for (r, mr) in runs.iter().zip(m) {
        let Some(a) = &mr.answers else { continue };
        let label = r.label();
        for (i, text) in a.iter().enumerate() {
            rows.push(vec![
                label.clone(),
                study.table.id(study.rows[i]).to_string(),
                study.cats[i].clone(),
                u8::from(study.judge.refused(text)).to_string(),
                study_outcome(study, i, text).name().to_string(),
                text.clone(),
            ]);
        }
    }
    csv_bytes(ANSWERS_CSV.1, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// answers.csv has no other column to tell runs apart: each is labelled by its full spec.
    #[test]
    fn answers_label_runs_by_their_full_spec() {
        let run = |spec: &str, layer, comp, op, alpha| RunDef {
            spec: spec.into(),
            layer,
            comp,
            op,
            alpha,
            edits: Vec::new(),
            generate: true,
        };
        let sub = run("L14-C2", Some(14), Some(1), Some(Op::Sub), Some(0.5));
        let project = run("L14-C2", Some(14), Some(1), Some(Op::Project), Some(1.0));
        assert_eq!(sub.label(), "L14-C2:sub:0.5");
        assert_eq!(project.label(), "L14-C2:project:1");
        let dim = run("dim", Some(22), None, Some(Op::Project), Some(1.0));
        assert_eq!(dim.label(), "dim:L22");
        assert_eq!(run("none", None, None, None, None).label(), "none");
    }

    /// The same run twice could not be told apart in the outputs: a usage error.
    #[test]
    fn duplicate_spec_items_are_refused() {
        let items: Vec<SpecItem> = ["L14-C2:sub:0.5", "L14-C2:project:1", "L14-C2:sub:0.50"]
            .iter()
            .map(|s| SpecItem::parse(s).unwrap())
            .collect();
        assert_eq!(
            check_distinct(&items).unwrap_err(),
            "--spec: L14-C2:sub:0.5 is given twice; give each run once"
        );
        check_distinct(&items[..2]).unwrap();
    }

    #[test]
    fn spec_items() {
        let s = SpecItem::parse("L14-C6:sub:1.15").unwrap();
        assert_eq!((s.layer, s.comp, s.op, s.alpha), (14, 5, Op::Sub, 1.15));
        for bad in [
            "L14-C6:sub",
            "L14-C0:sub:1",
            "L14-C6:add:1",
            "L14-C6:sub:nan",
            "L14-C6:sub:inf",
            "x:sub:1",
        ] {
            assert!(SpecItem::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn random_direction_has_the_norm_asked_and_is_seeded() {
        let like = vec![0.6f32, 0.8, 0.0, 0.0];
        let a = random_like(&like, 7);
        let n: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5);
        assert_eq!(a, random_like(&like, 7));
        assert_ne!(a, random_like(&like, 8));
    }
}
