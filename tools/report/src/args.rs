//! The command line of `report`, translated to [`report::Options`].

use std::path::PathBuf;

use clap::Parser;

/// The study's results as one self-contained HTML page (inline SVG and CSS, no network) and
/// every figure as its own SVG and PNG, our numbers beside the paper's.
///
/// Reads the CSVs the pipeline wrote under --run (refusal summaries, effective rank and
/// spectrum, dir-label, dir-interact, token-prune); a stage that has not run shows as a box
/// naming its make target. Writes index.html, FIGURE.svg, FIGURE.png, figures.json (each
/// figure's data), numbers.csv and numbers.md (the numbers the README quotes) into --out.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example (after `make demo`):\n  report --run runs/default --out runs/default/report\n  xdg-open runs/default/report/index.html"
)]
pub struct Args {
    /// The run folder (the pipeline's RUN).
    #[arg(long, value_name = "DIR", default_value = "runs/default")]
    run: PathBuf,
    /// Output folder (created if missing); default: <run>/report.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Layer of the per-layer figures (hidden-state index; the paper's L14).
    #[arg(long, default_value_t = 14)]
    layer: usize,
    /// Skip the PNG copies of the figures.
    #[arg(long)]
    no_png: bool,
    #[command(flatten)]
    log: hd_cli::LogArgs,
}

impl Args {
    /// Runs the tool.
    pub fn run(self) -> anyhow::Result<()> {
        let out = self.out.unwrap_or_else(|| report::default_out(&self.run));
        if out.as_os_str() == "-" {
            return Err(hd_cli::usage(
                "--out -: the report is a folder of files and cannot go to stdout; give a folder",
            ));
        }
        if out.exists() && !out.is_dir() {
            return Err(hd_cli::usage(format!(
                "--out {} exists and is not a folder; give a folder",
                out.display()
            )));
        }
        let s = report::run(&report::Options {
            run: self.run,
            out,
            layer: self.layer,
            png: !self.no_png,
        })?;
        tracing::info!(
            "report: {} ({} figures{})",
            s.index.display(),
            s.figures,
            if s.not_run.is_empty() {
                String::new()
            } else {
                format!("; stages not run: {}", s.not_run.join(", "))
            }
        );
        Ok(())
    }
}
