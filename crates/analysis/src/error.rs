use std::path::PathBuf;

/// Errors of the analysis crate: one line naming the file, row, column or tensor, what was
/// expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// Bad input data or arguments.
    #[error("{0}")]
    Input(String),
    /// The model refused something (encoding, running).
    #[error(transparent)]
    Lm(#[from] hd_lm::LmError),
    /// The file system refused something.
    #[error("{}: {action}: {error}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What we were doing.
        action: &'static str,
        /// The OS error.
        error: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = AnalysisError> = std::result::Result<T, E>;
