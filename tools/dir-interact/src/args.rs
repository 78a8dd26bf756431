//! The command line of `dir-interact`: one clap subcommand per question, each translated to
//! its library `Options`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use dir_interact::{relevance, sweep};

/// How the directions of the safety residual space drive each other, and what removing one
/// does.
#[derive(Parser)]
#[command(version)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: hd_cli::LogArgs,
}

#[derive(Subcommand)]
enum Command {
    Relevance(RelevanceArgs),
    Sweep(SweepArgs),
}

/// Component relevance between layers: how much each top component of a source layer S
/// feeds each top component of a target layer L at the last prompt token,
/// R(k->j) = z_k (v_k . g), g the AttnLRP gradient at h_S of the seed c_j/(c_j . h_L)
/// (the paper's reference), averaged over prompts and per category.
///
/// Writes relevance.safetensors (relevance.{S}.{L} [k_S, k_L]), relevance.csv
/// (source_layer,source_component,target_layer,target_component,category,mean,std,n) and
/// edges.csv (source,target,source_layer,target_layer,relevance: the strongest edges) into
/// --out-dir. Components are named L{l}-C{k}, 1-based.
#[derive(clap::Args)]
#[command(
    after_help = "Example (after `make tuned` and the tuned shift SVD):\n  dir-interact relevance --model runs/default/tuned \\\n    --components runs/default/shift-tuned/svd.safetensors --prompts runs/default/data/test.csv \\\n    --target 14 --out-dir /tmp/relevance"
)]
struct RelevanceArgs {
    /// GGUF file or Hugging Face directory (the tuned model, as the reference).
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Components (components.{i} [k, d]; shift-svd's output).
    #[arg(long, value_name = "FILE")]
    components: PathBuf,
    /// Prompt CSV (id, prompt; category used when present).
    #[arg(long, value_name = "CSV")]
    prompts: PathBuf,
    /// Target layer L (hidden-state index); not with --all-adjacent.
    #[arg(
        long,
        required_unless_present = "all_adjacent",
        conflicts_with = "all_adjacent"
    )]
    target: Option<usize>,
    /// Source layer S < L [default: L - 1].
    #[arg(long, conflicts_with = "all_adjacent")]
    source: Option<usize>,
    /// Every adjacent pair (S, S+1) the components file holds, in one run.
    #[arg(long)]
    all_adjacent: bool,
    /// Top components of the source layer.
    #[arg(long, default_value_t = 5)]
    k_source: usize,
    /// Top components of the target layer.
    #[arg(long, default_value_t = 5)]
    k_target: usize,
    /// Folder for the outputs (created if missing).
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Only prompts of these categories (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    categories: Option<Vec<String>>,
    #[command(flatten)]
    per_category: hd_cli::PerCategoryArgs,
    /// attnlrp: the linearised AttnLRP rules (the paper's); grad-x-input: the exact gradient.
    #[arg(long, value_enum, default_value = "attnlrp")]
    rules: hd_cli::RulesArg,
    /// Prompts per traced forward pass [default: 16, fewer when the memory available would
    /// not hold them].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Edges in edges.csv: the N strongest by |relevance| of category all.
    #[arg(long, default_value_t = 60, conflicts_with = "edge_threshold")]
    edges: usize,
    /// Edges in edges.csv: every edge with |relevance| at least this.
    #[arg(long)]
    edge_threshold: Option<f64>,
    #[command(flatten)]
    chat: hd_cli::ChatArgs,
}

impl RelevanceArgs {
    fn into_options(self) -> anyhow::Result<relevance::Options> {
        let pairs = match (self.all_adjacent, self.target) {
            (true, _) => relevance::Pairs::AllAdjacent,
            (false, Some(target)) => {
                let source = match self.source {
                    Some(s) => s,
                    None => target.checked_sub(1).ok_or_else(|| {
                        hd_cli::usage("--target 0 has no earlier layer; give --target >= 1")
                    })?,
                };
                relevance::Pairs::One { source, target }
            }
            (false, None) => return Err(hd_cli::usage("give --target L or --all-adjacent")),
        };
        Ok(relevance::Options {
            model: self.model,
            components: self.components,
            prompts: self.prompts,
            pairs,
            k_source: self.k_source,
            k_target: self.k_target,
            out_dir: self.out_dir,
            categories: self.categories,
            per_category: self.per_category.get()?,
            rules: self.rules.into(),
            batch_size: self.batch_size,
            edges: match self.edge_threshold {
                Some(t) => relevance::EdgeCut::Threshold(t),
                None => relevance::EdgeCut::Top(self.edges),
            },
            format: self.chat.format()?,
        })
    }
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum PositionsArg {
    Last,
    All,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum OpArg {
    Sub,
    Project,
}

/// Interventions on the model: each --spec item subtracts (h <- h - alpha v) or projects out
/// (h <- h - alpha (h . v^) v^) one component direction at every layer (or --at) from the
/// last prompt token on (or every position), through the generated tokens; beside them,
/// always: none, random (a seeded direction of the same norm, op and alpha as the first
/// item) and, with --dim, the difference-in-means direction projected out everywhere.
///
/// --rank-top N first estimates every candidate (C1..C{--rank-k} of every layer) by the
/// gradient of the refusal score, then runs the N best for real (--generate-top of them
/// with generation too), and reports the estimate's rank correlation with the measured
/// effect.
///
/// Writes sweep.csv (spec,layer,component,op,alpha,category,n,pass_first_token,
/// pass_generated,c1_projection,benign_ppl,degenerate, then 95% Wilson intervals and the
/// refused/complied/neither split of the generated answers), estimates.csv, answers.csv and
/// rank_correlation.csv into --out-dir. A run whose benign perplexity exceeds twice the
/// none run's is flagged degenerate: a broken model is not a jailbreak.
#[derive(clap::Args)]
#[command(
    after_help = "Example (after `make tuned` and the tuned shift SVD):\n  dir-interact sweep --model runs/default/tuned \\\n    --components runs/default/shift-tuned/svd.safetensors --prompts runs/default/data/test.csv \\\n    --spec L14-C6:sub:1.15,L25-C1:project:1 --out-dir /tmp/sweep \\\n    --benign-answers runs/default/base/test_responses.csv"
)]
struct SweepArgs {
    /// GGUF file or Hugging Face directory (the tuned model).
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Components (components.{i} [k, d]; shift-svd's output).
    #[arg(long, value_name = "FILE")]
    components: PathBuf,
    /// Prompt CSV (id, prompt; category used when present).
    #[arg(long, value_name = "CSV")]
    prompts: PathBuf,
    /// Interventions, comma-separated, each L{l}-C{k}:sub|project:ALPHA.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    spec: Vec<String>,
    /// Folder for the outputs (created if missing).
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Layers edited by the component runs (hidden-state indices): blocks (1..L, every
    /// block's output, the last before the final norm; the paper's hooks), all (0..L, the
    /// embeddings too; Arditi et al.), inner (1..L-1; old name all-layers) or a list of
    /// indices 0..L. The `dim` baseline always edits `all`.
    #[arg(long, default_value = "blocks", value_name = "blocks|all|inner|LIST")]
    at: String,
    /// Positions edited: the last prompt token (the reference) or every position; both
    /// continue through the generated tokens.
    #[arg(long, value_enum, default_value = "last")]
    positions: PositionsArg,
    /// Generated tokens per answer (0: no generation).
    #[arg(long, default_value_t = 48)]
    max_new_tokens: usize,
    /// A generate output CSV of the base model (prompt, response; rows labelled harmless
    /// when a label column exists): their perplexity under each intervention.
    #[arg(long, value_name = "CSV")]
    benign_answers: Option<PathBuf>,
    /// Only the first N of those harmless answers (file order).
    #[arg(long, value_name = "N")]
    benign_limit: Option<usize>,
    /// A shift-svd --contrast file of the tuned model: its mean_shift.{l} at the first spec
    /// item's layer is the `dim` baseline.
    #[arg(long, value_name = "FILE")]
    dim: Option<PathBuf>,
    /// One `dim` run per layer of this list (the layer sweep of the baseline).
    #[arg(long, value_name = "LIST", requires = "dim")]
    dim_layers: Option<String>,
    /// Only prompts of these categories (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    categories: Option<Vec<String>>,
    #[command(flatten)]
    per_category: hd_cli::PerCategoryArgs,
    /// Rank every candidate by the first-order estimate and run the N best.
    #[arg(long, value_name = "N")]
    rank_top: Option<usize>,
    /// Components per layer among the candidates (C1..C{K}).
    #[arg(long, default_value_t = 10)]
    rank_k: usize,
    /// Operation of the ranked candidates.
    #[arg(long, value_enum, default_value = "project")]
    rank_op: OpArg,
    /// Alpha of the ranked candidates.
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    rank_alpha: f64,
    /// Of the ranked runs, the best M (by measured first-token effect) also generate and
    /// get the benign perplexity.
    #[arg(long, default_value_t = 5)]
    generate_top: usize,
    /// Hidden-state index where the dominant direction (C1) is read [default: 5/6 of the
    /// depth].
    #[arg(long)]
    readout: Option<usize>,
    /// Seed of the random direction.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Prompts per forward pass [default: 32; the estimate's traced passes: at most 16, fewer
    /// when the memory available would not hold them].
    #[arg(long)]
    batch_size: Option<usize>,
    /// First tokens of a refusal, comma-separated (the first-token judge).
    #[arg(long, default_value = hd_analysis::refusal::DEFAULT_REFUSAL_TOKENS)]
    refusal_tokens: String,
    /// Refusal phrases of the answer judge, one per line (default: the built-in list).
    #[arg(long, value_name = "FILE")]
    refusal_phrases: Option<PathBuf>,
    #[command(flatten)]
    chat: hd_cli::ChatArgs,
    #[command(flatten)]
    compute: hd_cli::ComputeArgs,
}

impl SweepArgs {
    fn into_options(self) -> anyhow::Result<sweep::Options> {
        let mut spec = Vec::new();
        for s in &self.spec {
            spec.push(sweep::SpecItem::parse(s).map_err(hd_cli::usage)?);
        }
        sweep::check_distinct(&spec).map_err(hd_cli::usage)?;
        let at = match hd_analysis::intervene::HookSet::parse(&self.at) {
            Some(set) => sweep::At::Set(set),
            None => sweep::At::List(parse_list(&self.at, "--at")?),
        };
        let dim_layers = self
            .dim_layers
            .as_deref()
            .map(|s| parse_list(s, "--dim-layers"))
            .transpose()?;
        let judge = match &self.refusal_phrases {
            Some(p) => hd_analysis::judge::Judge::from_file(p)?,
            None => Default::default(),
        };
        if !self.rank_alpha.is_finite() {
            return Err(hd_cli::usage(format!(
                "--rank-alpha {}: expected a finite number",
                self.rank_alpha
            )));
        }
        Ok(sweep::Options {
            model: self.model,
            components: self.components,
            prompts: self.prompts,
            spec,
            out_dir: self.out_dir,
            at,
            start: match self.positions {
                PositionsArg::Last => hd_analysis::intervene::Start::LastPrompt,
                PositionsArg::All => hd_analysis::intervene::Start::All,
            },
            max_new_tokens: self.max_new_tokens,
            benign_answers: self.benign_answers,
            benign_limit: hd_cli::at_least_one("--benign-limit", self.benign_limit)?,
            dim: self.dim,
            dim_layers,
            categories: self.categories,
            per_category: self.per_category.get()?,
            rank: self.rank_top.map(|top| sweep::Rank {
                top,
                k: self.rank_k,
                op: match self.rank_op {
                    OpArg::Sub => hd_analysis::intervene::Op::Sub,
                    OpArg::Project => hd_analysis::intervene::Op::Project,
                },
                alpha: self.rank_alpha as f32,
            }),
            generate_top: self.generate_top,
            readout: self.readout,
            seed: self.seed,
            batch_size: self.batch_size,
            refusal_tokens: self.refusal_tokens,
            judge,
            format: self.chat.format()?,
            share_prefix: !self.chat.no_share_prefix,
            compute: self.compute.compute.into(),
        })
    }
}

fn parse_list(s: &str, flag: &str) -> anyhow::Result<Vec<usize>> {
    let bad = || hd_cli::usage(format!("{flag} '{s}': expected e.g. 14 or 10-20 or 3,5,7"));
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if b < a {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

impl Args {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        let _ = &self.log;
        match self.command {
            Command::Relevance(a) => relevance::run(&a.into_options()?),
            Command::Sweep(a) => sweep::run(&a.into_options()?),
        }
    }
}
