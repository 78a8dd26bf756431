//! The command line of generate: clap's view of the flags, turned into the library's
//! [`Options`] by [`Args::into_options`].

use clap::Parser;
use generate::{Judge, Options};
use hd_cli::{ChatArgs, ComputeArgs, DeviceArgs, LogArgs};
use std::path::PathBuf;

/// Greedy, batched, KV-cached answers of a chat model to every prompt of a CSV.
///
/// Writes the prompt rows plus response, n_new_tokens and refused (1 when a refusal phrase
/// appears in the first 200 characters; see --refusal-phrases).
#[derive(Parser, Debug)]
#[command(
    version,
    after_help = "Example:\n  generate --model models/SmolLM2-135M-Instruct.Q4_1.gguf --prompts data/prompts/benign.csv \\\n           --out runs/responses.csv --max-new-tokens 64"
)]
pub struct Args {
    /// Model: a .gguf file or a Hugging Face directory.
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Prompt CSV with columns id, prompt ('-' for stdin).
    #[arg(long, value_name = "CSV")]
    prompts: PathBuf,
    #[command(flatten)]
    per_category: hd_cli::PerCategoryArgs,
    /// Output CSV ('-' for stdout).
    #[arg(long, value_name = "CSV")]
    out: PathBuf,
    /// Token limit per answer.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// Prompts decoded together.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    #[command(flatten)]
    chat: ChatArgs,
    /// Replace the refusal phrases with those in FILE (one per line, case-insensitive).
    #[arg(long, value_name = "FILE")]
    refusal_phrases: Option<PathBuf>,
    /// answers: refused / complied / neither (the phrase judge); guard: a guard model's
    /// verdict, the first word of its answer: unsafe (written as refused = 1), safe or other.
    #[arg(
        long,
        value_enum,
        default_value = "answers",
        conflicts_with = "refusal_phrases"
    )]
    judge: JudgeArg,
    /// Also write refusal rates per category (the `category` column) to this text file.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    #[command(flatten)]
    compute: ComputeArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum JudgeArg {
    Answers,
    Guard,
}

impl Args {
    /// Applies the device flags and runs the answers.
    pub fn run(self) -> anyhow::Result<()> {
        self.device.apply()?;
        generate::run(&self.into_options()?)
    }

    fn into_options(self) -> anyhow::Result<Options> {
        let judge = match &self.refusal_phrases {
            Some(p) => Judge::from_file(p)?,
            None => Judge::default(),
        };
        Ok(Options {
            model: self.model,
            prompts: self.prompts,
            per_category: self.per_category.get()?,
            out: self.out,
            max_new_tokens: self.max_new_tokens,
            batch_size: self.batch_size as usize,
            format: self.chat.format()?,
            judge,
            guard: self.judge == JudgeArg::Guard,
            summary: self.summary,
            share_prefix: !self.chat.no_share_prefix,
            compute: self.compute.compute.into(),
        })
    }
}
