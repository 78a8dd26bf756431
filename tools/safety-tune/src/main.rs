//! `safety-tune`: the command line over [`safety_tune::tune`] and [`safety_tune::select`].
//! Flags live in `args.rs`.

mod args;

use args::{Args, Cmd};
use hd_train::data::TargetFormat;

fn main() -> std::process::ExitCode {
    hd_cli::main_with::<Args>("safety-tune", |a| {
        a.device.apply()?;
        match a.cmd {
            Some(Cmd::Select {
                train,
                out,
                harmful,
            }) => safety_tune::select(&train, &out, TargetFormat::Refusal, harmful),
            None => safety_tune::tune(&a.options()?),
        }
    })
}
