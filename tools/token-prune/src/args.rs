//! The command line of `token-prune`, translated to the library's `Options`.

use std::path::PathBuf;

use clap::Parser;
use hd_analysis::prune::Method;
use token_prune::{parse_categories, parse_methods, TargetSpec};

/// Delete the trigger tokens that make a (safety-tuned) model refuse: attribution-guided
/// deletion, against random, gradient-norm and occlusion deletion under the same budget.
///
/// This is the local, model-free form of the paper's attack (the paper rewrites prompts with
/// a 70B model and a remote judge; here user-text tokens are only deleted, never the chat
/// template). Candidates are the prompts the model refuses at the first token. Each step
/// deletes the --step tokens that most support the target, decodes the kept tokens back to
/// text, re-encodes that text through the template and scores it again, until the model stops
/// refusing or the budget is spent. Successes at the first token are confirmed by greedy
/// generation and the refusal judge.
///
/// Writes --out (a prompt CSV: id, prompt = pruned text, the original columns, original_id,
/// original_prompt, method, repeat, target, deleted (JSON list), n_deleted, n_user_tokens,
/// fraction, refusal_score, success_first_token, success_generated, answer) and --summary
/// (method,category,budget,n,success_first_token,success_generated,mean_deleted,top_deleted,
/// success_first_token_sd,success_generated_sd; rates in 0..1, one row per category and `all`).
#[derive(Parser)]
#[command(
    version,
    after_help = "Example (after `make tuned`, from the repository root):\n  token-prune --model runs/default/tuned --prompts runs/default/data/test.csv \\\n    --categories raw,roleplay,hypothetical --out /tmp/pruned.csv --summary /tmp/summary.csv"
)]
pub struct Args {
    /// The attacked model: GGUF file or Hugging Face directory (the tuned model).
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Prompt CSV (id, prompt; a category column for --categories and per-category rows).
    #[arg(long, value_name = "CSV")]
    prompts: PathBuf,
    /// Pruned prompts (a prompt CSV).
    #[arg(long, value_name = "CSV")]
    out: PathBuf,
    /// Success rates per method and category.
    #[arg(long, value_name = "CSV")]
    summary: PathBuf,
    /// Also write every candidate's first-step token scores under each method (id, category,
    /// method, position, token, score, rank; rank 1 is deleted first) and log how closely
    /// each method's ranking follows occlusion's (mean per-prompt Spearman). Costs one more
    /// step of each method.
    #[arg(long, value_name = "CSV")]
    scores: Option<PathBuf>,
    /// What the deletions lower: `refusal` (the first-token refusal log-odds) or a component
    /// `L{layer}-C{k}` of --components (k 1-based; its projection at the last prompt token).
    /// Success is always judged on refusal.
    #[arg(long, default_value = "refusal", value_parser = TargetSpec::parse)]
    target: TargetSpec,
    /// Components file (components.{i} [k, d], e.g. shift-svd's svd.safetensors), for a
    /// component target.
    #[arg(long, value_name = "FILE")]
    components: Option<PathBuf>,
    /// Largest fraction of a prompt's user tokens that may be deleted (0 < budget <= 1;
    /// at least one token).
    #[arg(long, default_value_t = 0.25)]
    budget: f64,
    /// Absolute cap on deleted tokens per prompt.
    #[arg(long, default_value_t = 8)]
    max_tokens: usize,
    /// Tokens deleted per step (scores are recomputed after each step).
    #[arg(long, default_value_t = 1)]
    step: usize,
    /// Methods, comma-separated: attribution (AttnLRP relevance, ours), random (seeded
    /// control), gradnorm (plain gradient norm), occlusion (exact leave-one-out).
    #[arg(long, default_value = "attribution,random,gradnorm,occlusion", value_parser = parse_methods)]
    methods: std::vec::Vec<Method>,
    /// Runs of the random control (its rates are means over the runs, with their spread).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Seed of the random control.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Categories the candidates come from, comma-separated [default: every row].
    #[arg(long, value_name = "LIST", value_parser = parse_categories)]
    categories: Option<std::vec::Vec<String>>,
    #[command(flatten)]
    per_category: hd_cli::PerCategoryArgs,
    /// New tokens generated (greedy) to confirm a first-token success with the refusal judge;
    /// 0 skips the confirmation.
    #[arg(long, default_value_t = 48)]
    confirm_tokens: usize,
    /// Prompts per traced (attribution, gradnorm) forward pass [default: 32, fewer when the
    /// memory available would not hold them] (32: about 10% faster than 16 on 2 cores, ~3 GB
    /// peak on the default model; the deletions do not depend on it).
    #[arg(long)]
    batch_size: Option<usize>,
    /// The attribution method's rules: attnlrp (the paper's) or grad-x-input (the exact
    /// gradient, for families with no AttnLRP rules: Gemma 2).
    #[arg(long, value_enum, default_value = "attnlrp")]
    rules: hd_cli::RulesArg,
    #[command(flatten)]
    chat: hd_cli::ChatArgs,
    #[command(flatten)]
    compute: hd_cli::ComputeArgs,
    #[command(flatten)]
    log: hd_cli::LogArgs,
}

impl Args {
    /// Runs the tool.
    pub fn run(self) -> anyhow::Result<()> {
        let _ = &self.log;
        token_prune::run(&token_prune::Options {
            model: self.model,
            prompts: self.prompts,
            out: self.out,
            summary: self.summary,
            scores: self.scores,
            target: self.target,
            components: self.components,
            budget: self.budget,
            max_tokens: self.max_tokens,
            step: self.step,
            methods: self.methods,
            repeats: self.repeats,
            seed: self.seed,
            categories: self.categories,
            per_category: self.per_category.get()?,
            confirm_tokens: self.confirm_tokens,
            batch_size: self.batch_size,
            rules: self.rules.into(),
            format: self.chat.format()?,
            share_prefix: !self.chat.no_share_prefix,
            compute: self.compute.compute.into(),
        })
    }
}
