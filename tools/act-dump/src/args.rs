//! The command line of act-dump: clap's view of the flags, turned into the library's
//! [`Options`] (or a merge) by [`Args::run`].

use act_dump::{merge, parse_positions, Options, Shard, DEFAULT_REFUSAL_TOKENS};
use clap::{Parser, Subcommand};
use hd_cli::{ChatArgs, ComputeArgs, DeviceArgs, LayerArgs, LogArgs, PerCategoryArgs};
use hd_formats::tensors::Format;
use hd_lm::Positions;
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
pub struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Model: a .gguf file or a Hugging Face directory.
    #[arg(long, required = true, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Prompt CSV with columns id, prompt ('-' for stdin).
    #[arg(long, required = true, value_name = "CSV")]
    prompts: Option<PathBuf>,
    #[command(flatten)]
    per_category: PerCategoryArgs,
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
    /// Score the refusal tokens against these instead (comma-separated, first tokens):
    /// refusal_score = log p(refusal tokens) − log p(these), > 0 when the model prefers the
    /// first (a guard: --refusal-tokens unsafe --versus-tokens safe).
    #[arg(long, value_name = "LIST")]
    versus_tokens: Option<String>,
    #[command(flatten)]
    compute: ComputeArgs,
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

impl Args {
    /// Runs the dump, or `act-dump merge`.
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(Cmd::Merge { out, rows, shards }) = self.cmd {
            return merge(&shards, &out, rows.as_deref());
        }
        self.device.apply()?;
        act_dump::run(&self.into_options()?)
    }

    fn into_options(self) -> anyhow::Result<Options> {
        Ok(Options {
            model: self.model.expect("required"),
            prompts: self.prompts.expect("required"),
            per_category: self.per_category.get()?,
            out: self.out.expect("required"),
            out_format: self.format,
            rows: self.rows,
            layers: self.layers.layers,
            positions: self.positions,
            batch_size: self.batch_size as usize,
            format: self.chat.format()?,
            shard: self.shard,
            refusal_tokens: self.refusal_tokens,
            versus_tokens: self.versus_tokens,
            share_prefix: !self.chat.no_share_prefix,
            compute: self.compute.compute.into(),
        })
    }
}
