//! The command line of `safety-tune` (binary only: the library knows nothing of clap).

use clap::{Parser, Subcommand, ValueEnum};
use hd_cli::{DeviceArgs, LogArgs};
use hd_grad::diff::Method;
use hd_train::data::TargetFormat;
use safety_tune::TuneOptions;
use std::path::PathBuf;

/// Safety fine-tuning of a chat model: refusals for harmful prompts, its own answers for the rest.
///
/// Harmful rows (label column) are trained towards a refusal, harmless rows towards their
/// `target` (the base model's answer: `safety-tune select` -> `generate` -> --answers); loss on
/// target tokens only. Writes a Hugging Face directory (merged weights, tokenizer, chat
/// template) plus loss.csv and safety_tune.json. Exit codes: 0 ok, 1 data error, 2 usage error.
#[derive(Parser, Debug)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    args_override_self = true,
    after_help = "Example:\n  safety-tune select --train runs/default/data/train.csv --out need.csv\n  generate --model models/SmolLM2-135M-Instruct.Q4_1.gguf --prompts need.csv \\\n           --out answers.csv --max-new-tokens 48\n  safety-tune --model models/SmolLM2-135M-Instruct.Q4_1.gguf \\\n              --train runs/default/data/train.csv --answers answers.csv --out runs/default/tuned"
)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    /// Base model: a .gguf file or a Hugging Face directory.
    #[arg(long, required = true, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Train CSV (id, prompt, label; target for harmless rows).
    #[arg(long, required = true, value_name = "CSV")]
    train: Option<PathBuf>,
    /// A `generate` output whose `response` column fills empty `target` cells, by id; may be
    /// repeated (DPO: the harmless rows' answers, then the harmful rows').
    #[arg(long, value_name = "CSV", action = clap::ArgAction::Append)]
    answers: Vec<PathBuf>,
    /// Output directory (Hugging Face layout); replaced only when the run completes.
    #[arg(long, required = true, value_name = "DIR")]
    out: Option<PathBuf>,
    /// lora: low-rank adapters, merged at export; full: every projection and norm.
    #[arg(long, value_enum, default_value = "lora")]
    method: MethodArg,
    /// LoRA rank.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    rank: u64,
    /// LoRA alpha (the update is scaled by alpha/rank).
    #[arg(long, default_value_t = 32.0, value_parser = positive, allow_hyphen_values = true)]
    alpha: f64,
    /// Projections with adapters: qkv, o, gate_up, down (comma-separated) or all.
    #[arg(long, default_value = "all", value_parser = safety_tune::parse_modules)]
    modules: std::vec::Vec<hd_grad::diff::Module>,
    /// First trained block; the blocks below stay frozen.
    #[arg(long, default_value_t = 0)]
    first_layer: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3, value_parser = positive, allow_hyphen_values = true)]
    lr: f64,
    /// Passes over the train rows.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    epochs: u64,
    /// Rows per optimiser step.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Fraction of the steps spent on linear warm-up.
    #[arg(long, default_value_t = 0.1, value_parser = fraction, allow_hyphen_values = true)]
    warmup: f64,
    /// Learning rate at the end of the cosine decay, as a fraction of --lr.
    #[arg(long, default_value_t = 0.0, value_parser = fraction, allow_hyphen_values = true)]
    min_lr_ratio: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative, allow_hyphen_values = true)]
    weight_decay: f64,
    /// Clip the global gradient norm to this (0 = off).
    #[arg(long, default_value_t = 1.0, value_parser = non_negative, allow_hyphen_values = true)]
    clip: f64,
    /// refusal: refusals / the target column; guard: "unsafe\nS{code}" / "safe" (the codes:
    /// hd_lm::guard). Default: guard with --objective guard, else refusal.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Target tokens kept; longer targets are cut and get no end-of-turn token.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..))]
    max_target_tokens: u64,
    /// sft: targets (refusals / base answers); dpo: preference pairs against the base model;
    /// guard: the paper's SSFT, a classifier fine-tune: every prompt in the guard template
    /// (--template guard unless given), target "safe" or "unsafe\nS{code}" then end-of-turn,
    /// loss on the completion only.
    #[arg(long, value_enum, default_value = "sft")]
    objective: ObjectiveArg,
    /// DPO's beta (inverse temperature of the implicit reward; TRL's default).
    #[arg(long, default_value_t = 0.1, value_parser = positive, allow_hyphen_values = true)]
    beta: f64,
    /// dpo: weight of the chosen answers' mean token NLL added to DPO's loss (RPO; 0 = plain
    /// DPO), which keeps the chosen refusals likely instead of only more likely than the
    /// rejected answers.
    #[arg(long, default_value_t = 0.0, value_name = "WEIGHT", value_parser = non_negative)]
    nll_weight: f64,
    /// Keep only the first K rows of each jailbreak category (the exposure experiment).
    #[arg(long, value_name = "K")]
    exposure: Option<usize>,
    /// Seed of shuffles, adapter initialisation and refusal choice.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// System message for the chat template (as given to act-dump and generate).
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// Write each prompt into a template first (as given to act-dump and generate): `guard`
    /// or a Jinja file placing {{ prompt }}. Default with --objective guard: guard.
    #[arg(long, value_name = "guard|FILE")]
    template: Option<String>,
    /// Checkpoint folder (default: <out>.ckpt).
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Steps between checkpoints (0 = none).
    #[arg(long, default_value_t = 25)]
    save_every: usize,
    /// Checkpoints kept (the latest ones).
    #[arg(long, default_value_t = 1)]
    keep_checkpoints: usize,
    /// Resume from a checkpoint file, or the latest one in a folder.
    #[arg(long, value_name = "PATH")]
    resume: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Write the train rows that need a base-model answer (harmless rows without a target).
    Select {
        /// Train CSV.
        #[arg(long, value_name = "CSV")]
        train: PathBuf,
        /// Output CSV ('-' for stdout).
        #[arg(long, value_name = "CSV")]
        out: PathBuf,
        /// The harmful rows instead (their base answers are DPO's rejected completions).
        #[arg(long)]
        harmful: bool,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectiveArg {
    Sft,
    Dpo,
    Guard,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum MethodArg {
    Lora,
    Full,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum FormatArg {
    Refusal,
    Guard,
}

// Numbers the training would only trip over later (a NaN loss blamed on --lr, a warm-up
// longer than the run): usage errors from the parser, exit 2, before anything loads.

fn number(s: &str) -> Result<f64, String> {
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("{s} is not a finite number"))
    }
}

fn positive(s: &str) -> Result<f64, String> {
    let x = number(s)?;
    if x > 0.0 {
        Ok(x)
    } else {
        Err(format!("{s}: must be greater than 0"))
    }
}

fn non_negative(s: &str) -> Result<f64, String> {
    let x = number(s)?;
    if x >= 0.0 {
        Ok(x)
    } else {
        Err(format!("{s}: must be 0 or more"))
    }
}

fn fraction(s: &str) -> Result<f64, String> {
    let x = number(s)?;
    if (0.0..=1.0).contains(&x) {
        Ok(x)
    } else {
        Err(format!("{s}: must be a fraction between 0 and 1"))
    }
}

impl Args {
    /// The library options these flags describe (for a tuning run, not `select`); a
    /// `--template` file that cannot be read is an error naming it.
    pub fn options(self) -> anyhow::Result<TuneOptions> {
        let guard = self.objective == ObjectiveArg::Guard;
        let format = match (self.format, guard) {
            (Some(FormatArg::Refusal), true) => {
                return Err(hd_cli::usage(
                    "--objective guard trains guard answers; --format refusal contradicts it",
                ))
            }
            (Some(FormatArg::Guard), _) | (None, true) => TargetFormat::Guard,
            (Some(FormatArg::Refusal), false) | (None, false) => TargetFormat::Refusal,
        };
        let template = match (&self.template, guard) {
            (Some(spec), _) => Some(hd_lm::UserTemplate::from_spec(spec)?),
            (None, true) => Some(hd_lm::UserTemplate::guard()),
            (None, false) => None,
        };
        let method = match self.method {
            MethodArg::Lora => Method::Lora {
                rank: self.rank as usize,
                alpha: self.alpha,
                modules: self.modules,
            },
            MethodArg::Full => Method::Full,
        };
        Ok(TuneOptions {
            model: self.model.expect("required by clap"),
            train: self.train.expect("required by clap"),
            answers: self.answers,
            out: self.out.expect("required by clap"),
            method,
            first_layer: self.first_layer,
            lr: self.lr,
            epochs: self.epochs as usize,
            batch_size: self.batch_size as usize,
            warmup: self.warmup,
            min_lr_ratio: self.min_lr_ratio,
            weight_decay: self.weight_decay,
            clip: self.clip,
            seed: self.seed,
            format,
            max_target_tokens: self.max_target_tokens as usize,
            prompt_format: hd_lm::PromptFormat {
                system: self.system,
                no_template: false,
                // the study reads answers, not thoughts (Qwen3; other templates ignore it)
                enable_thinking: Some(false),
                user_template: template,
            },
            checkpoint_dir: self.checkpoint_dir,
            save_every: self.save_every,
            keep_checkpoints: self.keep_checkpoints,
            resume: self.resume,
            objective: match self.objective {
                ObjectiveArg::Sft | ObjectiveArg::Guard => hd_train::train::Objective::Sft,
                ObjectiveArg::Dpo => hd_train::train::Objective::Dpo {
                    beta: self.beta,
                    nll: self.nll_weight,
                },
            },
            exposure: self.exposure,
        })
    }
}
