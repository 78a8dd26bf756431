//! The command line of `dir-label`: one clap subcommand per question, each translated to
//! its library `Options`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use dir_label::{classify, tokens};

/// What each direction of the safety residual space means.
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
    Classify(ClassifyArgs),
    Tokens(TokensArgs),
}

/// Which input tokens drive each component: relevance of every token of every prompt to the
/// projection of the last prompt token's state on a component (AttnLRP, as the paper's token
/// PLRP, or plain gradient x input).
///
/// Writes tokens.csv (id,component,position,token_id,token,relevance,raw_relevance,
/// projection), top_tokens.csv (component,rank,token,mean_relevance,count,cumulative_share,
/// top) and labels.csv (component,name,acc,auc,best_category,best_category_auc,top_tokens,
/// suggested_label; edit it by hand) into --out-dir. Components are 1-based (L14-C6).
#[derive(clap::Args)]
#[command(
    after_help = "Example (after `make demo`, from the repository root):\n  dir-label tokens --model models/SmolLM2-135M-Instruct.Q4_1.gguf \\\n    --components runs/default/contrast/svd.safetensors --prompts testdata/smoke/prompts.csv \\\n    --layer 14 --comps 1-10 --out-dir /tmp/tokens"
)]
struct TokensArgs {
    /// GGUF file or Hugging Face directory (the model the map explains).
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Components (components.{i} [k, d]; e.g. shift-svd's output).
    #[arg(long, value_name = "FILE")]
    components: PathBuf,
    /// Prompt CSV (id, prompt).
    #[arg(long, value_name = "CSV")]
    prompts: PathBuf,
    /// Hidden-state index of the components (HF numbering).
    #[arg(long)]
    layer: usize,
    /// Components to explain, 1-based: 1-10, 1,3,6, 2-4,8.
    #[arg(long, default_value = "1-10", value_parser = tokens::parse_comps)]
    comps: std::vec::Vec<usize>,
    /// Folder for the three CSVs (created if missing).
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// attnlrp: the linearised AttnLRP rules (the paper's); grad-x-input: the exact gradient.
    #[arg(long, value_enum, default_value = "attnlrp")]
    rules: hd_cli::RulesArg,
    /// Reported positions: the user text or every token of the templated prompt.
    #[arg(long, value_enum, default_value = "user")]
    positions: PositionsArg,
    /// Prompts per traced forward pass [default: 16, fewer when the memory available would
    /// not hold them].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Share of the positive relevance mass the top tokens cover (the reference's 0.4).
    #[arg(long, default_value_t = 0.4)]
    tau: f64,
    /// A `dir-label classify` folder of the same components: accuracy and best category in
    /// labels.csv.
    #[arg(long, value_name = "DIR")]
    classify: Option<PathBuf>,
    #[command(flatten)]
    per_category: hd_cli::PerCategoryArgs,
    #[command(flatten)]
    chat: hd_cli::ChatArgs,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum PositionsArg {
    User,
    All,
}

impl TokensArgs {
    fn into_options(self) -> anyhow::Result<tokens::Options> {
        Ok(tokens::Options {
            model: self.model,
            components: self.components,
            prompts: self.prompts,
            layer: self.layer,
            comps: self.comps,
            out_dir: self.out_dir,
            rules: self.rules.into(),
            positions: match self.positions {
                PositionsArg::User => tokens::Positions::User,
                PositionsArg::All => tokens::Positions::All,
            },
            batch_size: self.batch_size,
            tau: self.tau,
            classify: self.classify,
            per_category: self.per_category.get()?,
            format: self.chat.format()?,
        })
    }
}

/// Each component as a refusal classifier, beside a probe, the pooled probe and the
/// difference in means, per layer; and how each prompt category projects on each component.
///
/// Writes components.csv (layer,component,name,acc_paper,acc,auc,sep),
/// layers.csv (layer,c1_acc_paper,c1_acc,c1_auc,best_k,best_acc,probe_acc,probe_auc,
/// pooled_probe_acc,dim_acc,cos_probe_c1) and categories.csv (layer,component,category,n,
/// mean_proj,std_proj,auc_vs_harmless,cohen_d) into --out-dir. Component numbers are 1-based
/// (L14-C6 = layer 14, component 6).
#[derive(clap::Args)]
#[command(
    after_help = "Example (after `make demo`, from the repository root):\n  dir-label classify --acts runs/default/base/analysis.safetensors \\\n    --components runs/default/contrast/svd.safetensors --rows runs/default/data/analysis.csv \\\n    --out-dir runs/default/contrast/classify"
)]
struct ClassifyArgs {
    /// Activations (resid.{i} [n, d], one row per prompt of --rows; e.g. act-dump's output).
    #[arg(long, value_name = "FILE")]
    acts: PathBuf,
    /// Components (components.{i} [k, d]; e.g. shift-svd's output).
    #[arg(long, value_name = "FILE")]
    components: PathBuf,
    /// Prompt CSV of the activations' rows, in order (labels and the category column).
    #[arg(long, value_name = "CSV")]
    rows: PathBuf,
    /// Folder for the three CSVs (created if missing).
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Label column of --rows with two values (empty cells: row left out), or `refused`:
    /// refusal_score > 0 in --rows-from.
    #[arg(long, value_name = "COLUMN", default_value = "label")]
    by: String,
    /// The positive value of the --by column.
    #[arg(long, value_name = "VALUE", default_value = "harmful")]
    positive: String,
    /// With --by refused: an act-dump rows CSV over the same prompts (its refusal_score).
    #[arg(long, value_name = "CSV")]
    rows_from: Option<PathBuf>,
    /// Components scored per layer [default: 100, or all the file holds if fewer].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    k: Option<u64>,
    /// Seed of the held-out half split of the probes.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    layers: hd_cli::LayerArgs,
}

impl Args {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Classify(a) => classify::run(&a.into_options()?).map(drop),
            Command::Tokens(a) => tokens::run(&a.into_options()?),
        }
    }
}

impl ClassifyArgs {
    fn into_options(self) -> anyhow::Result<classify::Options> {
        let labels = match (self.by.as_str(), self.rows_from) {
            ("refused", Some(rows_from)) => classify::Labels::Refused { rows_from },
            ("refused", None) => {
                return Err(hd_cli::usage(
                    "--by refused needs --rows-from (an act-dump rows CSV with refusal_score)",
                ))
            }
            (by, Some(_)) => {
                return Err(hd_cli::usage(format!(
                    "--rows-from goes with --by refused (got --by {by})"
                )))
            }
            (_, None) => classify::Labels::Column {
                by: self.by,
                positive: self.positive,
            },
        };
        Ok(classify::Options {
            acts: self.acts,
            components: self.components,
            rows: self.rows,
            out_dir: self.out_dir,
            labels,
            k: self.k.map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
            seed: self.seed,
            layers: self.layers.layers,
        })
    }
}
