//! `generate`: see `generate --help`; the work is in the library (`src/lib.rs`).

mod args;

use std::process::ExitCode;

fn main() -> ExitCode {
    hd_cli::main_with::<args::Args>("generate", args::Args::run)
}
