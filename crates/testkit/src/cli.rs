//! Running a tool's real binary in a test: exit code and stderr, with a cleared environment
//! (no `RUST_LOG`, no colour settings of the developer's shell) in a given folder.

use std::path::Path;
use std::process::Command;

/// A path as a command-line argument (the tests' paths are UTF-8).
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// How a run ended.
pub struct Run {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Everything the tool wrote to stderr.
    pub stderr: String,
}

/// Runs `bin` (a test's `env!("CARGO_BIN_EXE_tool")`) with `args` in `dir`.
pub fn run(bin: &str, dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// [`run`], which must succeed.
pub fn ok(bin: &str, dir: &Path, args: &[&str]) {
    let r = run(bin, dir, args);
    assert_eq!(r.code, 0, "{bin} {args:?} failed:\n{}", r.stderr);
}

impl Run {
    /// Checks a refused run (`what` names the case in messages): exit `code`, stderr a
    /// single line when `one_line` (clap's own usage messages are longer), holding every
    /// needle.
    pub fn assert_error(&self, what: &str, code: i32, one_line: bool, needles: &[&str]) {
        assert_eq!(self.code, code, "{what}: stderr:\n{}", self.stderr);
        if one_line {
            assert_eq!(
                self.stderr.trim_end().lines().count(),
                1,
                "{what}: one line:\n{}",
                self.stderr
            );
        }
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "{what}: stderr lacks {n:?}:\n{}",
                self.stderr
            );
        }
    }
}

/// The staged temporary files (`*.tmp`) in `dir`: what a refused or interrupted run must
/// not leave behind.
pub fn temps_in(dir: &Path) -> Vec<String> {
    left_in(dir)
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

/// The names of the entries of `dir` (none when it does not exist): what a refused run
/// left behind.
pub fn left_in(dir: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default()
}
