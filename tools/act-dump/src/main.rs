//! `act-dump`: see `act-dump --help`; the work is in the library (`src/lib.rs`).

mod args;

use std::process::ExitCode;

fn main() -> ExitCode {
    hd_cli::main_with::<args::Args>("act-dump", args::Args::run)
}
