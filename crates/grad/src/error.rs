/// Errors of the differentiable decoder: bad input (one line naming what was expected and
/// what was found) or a failed tensor operation.
#[derive(Debug, thiserror::Error)]
pub enum GradError {
    /// Bad input data or arguments.
    #[error("{0}")]
    Input(String),
    /// A tensor operation failed (a shape bug or a non-CPU device).
    #[error("tensor op: {0}")]
    Candle(String),
}

impl From<candle_core::Error> for GradError {
    fn from(e: candle_core::Error) -> Self {
        // candle appends a backtrace to some messages; keep the first line.
        GradError::Candle(
            e.to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
        )
    }
}

/// Result alias of this crate.
pub type Result<T, E = GradError> = std::result::Result<T, E>;
