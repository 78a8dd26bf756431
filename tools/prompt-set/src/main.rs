//! `prompt-set`: the command line over [`prompt_set::run`]. Flags live in `args.rs`.

mod args;

use std::process::ExitCode;

fn run(a: args::Args) -> anyhow::Result<()> {
    let report = prompt_set::run(&a.config()).map_err(|e| match e {
        prompt_set::Error::Setting { .. } => hd_cli::usage(e),
        prompt_set::Error::Formats(e) if e.is_usage() => hd_cli::usage(e),
        e => e.into(),
    })?;
    if a.summary {
        // Asked for explicitly: a table on stderr (stdout stays free for data).
        eprint!("{}", report.summary());
    }
    Ok(())
}

fn main() -> ExitCode {
    hd_cli::main_with::<args::Args>("prompt-set", run)
}
