use act_dump::{dump, merge, parse_positions, DumpOptions, Shard, DEFAULT_REFUSAL_TOKENS};
use clap::{Parser, Subcommand};
use hd_cli::{ChatArgs, DeviceArgs, LayerArgs, LogArgs};
use hd_formats::tensors::Format;
use hd_lm::{Positions, PromptFormat};
use std::path::PathBuf;

/// Dump residual-stream activations of a chat model for every prompt of a CSV.
///
/// `resid.{i}` follows Hugging Face output_hidden_states: 0 = embeddings, i = output of block
/// i-1, L = after the final norm. Output format by extension: .safetensors, .npz, .npy.
#[derive(Parser, Debug)]
#[command(
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Example:\n  act-dump --model models/SmolLM2-135M-Instruct.Q4_1.gguf --prompts data/prompts/benign.csv \\\n           --out runs/acts.safetensors --rows runs/rows.csv --layers all --batch-size 16"
)]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Model: a .gguf file or a Hugging Face directory.
    #[arg(long, required = true, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Prompt CSV with columns id, prompt ('-' for stdin).
    #[arg(long, required = true, value_name = "CSV")]
    prompts: Option<PathBuf>,
    /// Activation file to write ('-' for stdout: safetensors unless --format says otherwise).
    #[arg(long, required = true, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Format of --out, instead of its extension (or of safetensors on a pipe).
    #[arg(long, value_name = "safetensors|npz|npy")]
    format: Option<Format>,
    /// Also write the prompt rows plus n_tokens, top1_id, top1_token, top1_logprob, refusal_score.
    #[arg(long, value_name = "CSV")]
    rows: Option<PathBuf>,
    #[command(flatten)]
    layers: LayerArgs,
    /// Positions kept: last (the last prompt token) or all (adds offsets and token_ids).
    #[arg(long, default_value = "last", value_parser = parse_positions)]
    positions: Positions,
    /// Prompts per forward pass (packed, no padding).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    #[command(flatten)]
    chat: ChatArgs,
    /// Process every N-th batch starting at batch K (0-based); join with `act-dump merge`.
    #[arg(long, value_name = "K/N")]
    shard: Option<Shard>,
    /// Refusal-token set for refusal_score: comma-separated strings, each giving its first token.
    #[arg(long, default_value = DEFAULT_REFUSAL_TOKENS, value_name = "LIST")]
    refusal_tokens: String,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Join --shard outputs into the file an unsharded run writes.
    Merge {
        /// Merged activation file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Merged rows CSV (reads each shard's recorded --rows file).
        #[arg(long, value_name = "CSV")]
        rows: Option<PathBuf>,
        /// Shard files, any order.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    hd_cli::main_with::<Args>("act-dump", |a| {
        if let Some(Cmd::Merge { out, rows, shards }) = a.cmd {
            return merge(&shards, &out, rows.as_deref());
        }
        a.device.apply()?;
        dump(&DumpOptions {
            model: a.model.expect("required"),
            prompts: a.prompts.expect("required"),
            out: a.out.expect("required"),
            out_format: a.format,
            rows: a.rows,
            layers: a.layers.layers,
            positions: a.positions,
            batch_size: a.batch_size as usize,
            format: PromptFormat {
                system: a.chat.system,
                no_template: a.chat.no_template,
            },
            shard: a.shard,
            refusal_tokens: a.refusal_tokens,
            share_prefix: !a.chat.no_share_prefix,
        })
    })
}
