use clap::Parser;
use generate::{generate, GenerateOptions, Judge};
use hd_cli::{ChatArgs, DeviceArgs, LogArgs};
use hd_lm::PromptFormat;
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
struct Args {
    /// Model: a .gguf file or a Hugging Face directory.
    #[arg(long, value_name = "PATH")]
    model: PathBuf,
    /// Prompt CSV with columns id, prompt ('-' for stdin).
    #[arg(long, value_name = "CSV")]
    prompts: PathBuf,
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
    /// Also write refusal rates per category (the `category` column) to this text file.
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    log: LogArgs,
}

fn main() -> std::process::ExitCode {
    hd_cli::main_with::<Args>("generate", |a| {
        a.device.apply()?;
        let judge = match &a.refusal_phrases {
            Some(p) => Judge::from_file(p)?,
            None => Judge::default(),
        };
        generate(&GenerateOptions {
            model: a.model,
            prompts: a.prompts,
            out: a.out,
            max_new_tokens: a.max_new_tokens,
            batch_size: a.batch_size as usize,
            format: PromptFormat {
                system: a.chat.system,
                no_template: a.chat.no_template,
            },
            judge,
            summary: a.summary,
            share_prefix: !a.chat.no_share_prefix,
        })
    })
}
