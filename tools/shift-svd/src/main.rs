//! `shift-svd`: see `shift-svd --help`; the work is in the library (`src/lib.rs`).

mod args;

use std::process::ExitCode;

fn main() -> ExitCode {
    hd_cli::main_with::<args::Args>("shift-svd", |a| shift_svd::run(&a.into_options()).map(drop))
}
