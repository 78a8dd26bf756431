use std::path::PathBuf;

/// How [`LmError::NoChatTemplate`] ends, wherever it is wrapped (a tool recognises it to name
/// its own flag for raw text).
pub const NO_CHAT_TEMPLATE: &str = "the model has no chat template";

/// Errors of the model runtime. Each message is one line that names the file (and tensor or
/// key) and says what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    /// The file or directory could not be read.
    #[error("{}: {error}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error (kept out of the source chain so it prints once).
        error: std::io::Error,
    },
    /// The file is not what it claims to be (truncated, corrupt, missing keys).
    #[error("{}: {msg}", path.display())]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What was wrong.
        msg: String,
    },
    /// A model or tokenizer we do not support.
    #[error("{}: unsupported {what}", path.display())]
    Unsupported {
        /// The offending file.
        path: PathBuf,
        /// What is unsupported, with the supported alternatives.
        what: String,
    },
    /// Bad caller input (token ids out of range, empty prompt, bad hook).
    #[error("{0}")]
    Input(String),
    /// A prompt to chat-format for a model without a chat template (raw text, with
    /// [`crate::PromptFormat::no_template`], needs none).
    #[error("{}: {}", path.display(), NO_CHAT_TEMPLATE)]
    NoChatTemplate {
        /// The model.
        path: PathBuf,
    },
    /// The chat template failed to render.
    #[error("chat template: {0}")]
    Template(String),
    /// NaN or infinity in what a forward pass computed (corrupt weights, a bad intervention).
    #[error("{what} of sequence {sequence} of the batch are not finite")]
    NonFinite {
        /// 0-based index of the sequence in the batch given to the call.
        sequence: usize,
        /// What was not finite, e.g. "logits at step 3".
        what: String,
    },
}

impl LmError {
    pub(crate) fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        LmError::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LmError::Io {
            path: path.into(),
            error: source,
        }
    }
}

/// The first line of a candle error: candle appends a backtrace to its messages.
pub(crate) fn candle_msg(e: &candle_core::Error) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Result alias for this crate.
pub type Result<T, E = LmError> = std::result::Result<T, E>;
