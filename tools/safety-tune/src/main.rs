//! `safety-tune`: the command line over [`safety_tune::tune`] and [`safety_tune::select`].
//! Flags live in `args.rs`.

mod args;

use args::{Args, Cmd, ObjectiveArg};
use hd_train::data::TargetFormat;

fn main() -> std::process::ExitCode {
    hd_cli::main_with::<Args>("safety-tune", |a| {
        a.device.apply()?;
        match a.cmd {
            Some(Cmd::Select {
                train,
                out,
                objective,
            }) => safety_tune::select(
                &train,
                &out,
                TargetFormat::Refusal,
                objective == ObjectiveArg::Dpo,
            ),
            None => safety_tune::tune(&a.options()),
        }
    })
}
