//! The command line of `shift-svd`: a clap struct and its translation to [`Options`].

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use shift_svd::{Options, ShiftMode, Source};

/// The safety residual space: per layer, the SVD of the activation shift between a base and a
/// safety-tuned model (or, with --contrast, between harmful and harmless prompts of one).
///
/// Writes components.{i} [k, d] (unit rows, oriented so the mean shift projects >= 0),
/// singular_values.{i} (all) and mean_shift.{i} per layer; optional CSVs use 1-based
/// component numbers (L14-C6 = layer 14, component 6).
#[derive(Parser)]
#[command(
    version,
    after_help = "Example (from the repository root):\n  shift-svd --base testdata/shift-svd/base.npz --tuned testdata/shift-svd/tuned.npz \\\n    --out /tmp/svd.safetensors --spectrum /tmp/spectrum.csv --rank /tmp/rank.csv"
)]
pub struct Args {
    /// Base model activations (resid.{i} [n, d]; safetensors, .npz or .npy).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tuned",
        required_unless_present = "contrast"
    )]
    base: Option<PathBuf>,
    /// Safety-tuned model activations over the same prompts.
    #[arg(long, value_name = "FILE", requires = "base")]
    tuned: Option<PathBuf>,
    /// One model's activations: D = harmful rows - mean of harmless rows.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["base", "tuned", "shift"], requires = "rows")]
    contrast: Option<PathBuf>,
    /// Prompt CSV of the --contrast activations (its rows, in order).
    #[arg(long, value_name = "CSV", requires = "contrast")]
    rows: Option<PathBuf>,
    /// Column of --rows holding harmful/harmless (empty cells: row left out).
    #[arg(
        long,
        value_name = "COLUMN",
        default_value = "label",
        requires = "contrast"
    )]
    by: String,
    /// Components file to write (.safetensors or .npz).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Format of --out, instead of its extension (or of safetensors on a pipe, '-').
    #[arg(long, value_name = "safetensors|npz")]
    format: Option<hd_formats::tensors::Format>,
    /// Write layer,component,singular_value,explained_ratio,cumulative.
    #[arg(long, value_name = "CSV")]
    spectrum: Option<PathBuf>,
    /// Write layer,tau,effective_rank (paper: smallest k whose top-k share of s² reaches tau).
    #[arg(long, value_name = "CSV")]
    rank: Option<PathBuf>,
    /// Write |cos| of C1 across all layer pairs and of C1..C5 between neighbouring layers.
    #[arg(long, value_name = "CSV")]
    alignment: Option<PathBuf>,
    #[command(flatten)]
    layers: hd_cli::LayerArgs,
    /// Components kept per layer (clamped to min(n, d), with a note).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    k: u64,
    /// How the shift is formed from base X and tuned Y.
    #[arg(long, value_enum, default_value_t = Shift::Identity)]
    shift: Shift,
    /// Subtract the mean shift before the SVD (the paper does not; C1 is then the direction
    /// along which prompts' shifts differ most, rather than the mean shift).
    #[arg(long)]
    center: bool,
    /// Effective-rank thresholds, each in (0, 1].
    #[arg(long, value_delimiter = ',', default_value = "0.4,0.6,0.7,0.8,0.9", value_parser = tau)]
    tau: Vec<f64>,
    #[command(flatten)]
    log: hd_cli::LogArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Shift {
    /// D = Y - X.
    Identity,
    /// D = X W - X, W the minimum-norm least-squares fit of X W = Y (numpy's lstsq).
    Lstsq,
}

fn tau(s: &str) -> Result<f64, String> {
    let t: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    hd_linalg::spectrum::check_tau(t).map_err(|e| e.to_string())?;
    Ok(t)
}

impl Args {
    /// The library's options; clap has already enforced which flags go together.
    pub fn into_options(self) -> Options {
        let a = self;
        let source = match (a.base, a.tuned, a.contrast, a.rows) {
            (Some(base), Some(tuned), None, _) => Source::Pair {
                base,
                tuned,
                shift: match a.shift {
                    Shift::Identity => ShiftMode::Identity,
                    Shift::Lstsq => ShiftMode::Lstsq,
                },
            },
            (_, _, Some(acts), Some(rows)) => Source::Contrast {
                acts,
                rows,
                by: a.by,
            },
            _ => unreachable!("clap enforces --base/--tuned or --contrast/--rows"),
        };
        Options {
            source,
            out: a.out,
            out_format: a.format,
            spectrum: a.spectrum,
            rank: a.rank,
            alignment: a.alignment,
            layers: a.layers.layers,
            k: usize::try_from(a.k).unwrap_or(usize::MAX),
            center: a.center,
            taus: a.tau,
        }
    }
}
