use std::path::PathBuf;

/// Errors of the training crate. Each message is one line that names the file, row or
/// tensor, and says what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Loading or running the model failed.
    #[error(transparent)]
    Lm(#[from] hd_lm::LmError),
    /// Reading or writing one of the project's file formats failed.
    #[error(transparent)]
    Formats(#[from] hd_formats::Error),
    /// The differentiable decoder refused its input or failed.
    #[error(transparent)]
    Grad(#[from] hd_grad::GradError),
    /// Bad input data or arguments (the message names the file and row).
    #[error("{0}")]
    Input(String),
    /// Rows that need the base model's answer as their target and have none: `msg` names
    /// the file and the rows. (A tool says how its user supplies the answers.)
    #[error("{msg} (fill the target column with the base model's answers: `safety-tune select`, then `generate`)")]
    NoAnswers {
        /// What is missing, naming the file and rows.
        msg: String,
    },
    /// The loss stopped being finite, usually because the learning rate is too high.
    #[error("step {step}: the loss is {loss}; lower the learning rate")]
    Diverged {
        /// The 1-based step.
        step: usize,
        /// The loss it computed.
        loss: f64,
    },
    /// A checkpoint that cannot be used.
    #[error("{}: {msg}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
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
    /// A tensor operation failed (a shape bug or a non-CPU device).
    #[error("tensor op: {0}")]
    Candle(String),
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        // candle appends a backtrace to some messages; keep the first line.
        TrainError::Candle(
            e.to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
        )
    }
}

impl TrainError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        error: std::io::Error,
    ) -> Self {
        TrainError::Io {
            path: path.into(),
            action,
            error,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
