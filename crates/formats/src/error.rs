//! The one error type of `hd-formats`.
//!
//! Every message is a single line that starts with the file it is about (or `<stdin>` /
//! `<stdout>`), then the place inside it (line, column, tensor), then what was expected and
//! what was found. Callers add no context of their own for these errors.
//!
//! An I/O failure carries the OS error *inside its own message* and is deliberately not
//! exposed through [`std::error::Error::source`]: `anyhow`'s `{:#}` prints every source
//! after the message, so exposing it would print "Broken pipe: Broken pipe". Code that needs
//! the kind (the broken-pipe check in `hd-cli`) asks [`Error::io_kind`].

use std::fmt;
use std::io;

/// Where a CSV problem sits.
///
/// Files read from disk or stdin are located by [`Loc::Line`]: the 1-based line number a text
/// editor shows, header included, of the line where the record *starts* (a quoted field may
/// span several lines). Tables built in memory ([`crate::prompts::PromptTable::from_rows`])
/// have no lines and use [`Loc::Row`]: the 1-based index of the data row, header excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    /// 1-based line in the file as an editor shows it (the header is line 1).
    Line(u64),
    /// 1-based data row (the first row after the header is row 1).
    Row(usize),
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Loc::Line(n) => write!(f, "line {n}"),
            Loc::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// Errors of `hd-formats`; `Display` is always one line naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused an open/read/write/rename.
    #[error("{path}: {action}: {error}")]
    Io {
        /// File (or `<stdin>`/`<stdout>`) as the user named it.
        path: String,
        /// What we were doing, e.g. "cannot open", "cannot write".
        action: &'static str,
        /// The OS error (kept out of `source()`, see the module docs).
        error: io::Error,
    },

    /// A CSV file with no header row at all.
    #[error("{path}: empty file, expected a header row with {expected}")]
    EmptyFile {
        /// File name.
        path: String,
        /// What the header must contain, e.g. "'id' and 'prompt'".
        expected: String,
    },

    /// A required CSV column is absent.
    #[error("{path}: missing required column '{column}' (found columns: {found})")]
    MissingColumn {
        /// File name.
        path: String,
        /// The required column.
        column: String,
        /// Comma-separated header as found.
        found: String,
    },

    /// Two header cells with the same name.
    #[error(
        "{path}: column '{column}' appears twice in the header (columns {first} and {second})"
    )]
    DuplicateColumn {
        /// File name.
        path: String,
        /// The repeated name.
        column: String,
        /// 1-based column number of the first occurrence.
        first: usize,
        /// 1-based column number of the second occurrence.
        second: usize,
    },

    /// An id that was already used by an earlier row.
    #[error("{path}: {at}: duplicate id '{id}' (first seen at {first})")]
    DuplicateId {
        /// File name.
        path: String,
        /// Where the repeat is.
        at: Loc,
        /// The id.
        id: String,
        /// Where the id was first seen.
        first: Loc,
    },

    /// A row whose id cell is empty.
    #[error("{path}: {at}: empty id (every row needs a unique, non-empty 'id')")]
    EmptyId {
        /// File name.
        path: String,
        /// Where.
        at: Loc,
    },

    /// A row whose prompt is empty or only white space. One rule for every tool: such a row
    /// measures the chat template, not a prompt.
    #[error(
        "{path}: {at}: row with id '{id}' has an empty prompt, expected text to send to the model"
    )]
    EmptyPrompt {
        /// File name.
        path: String,
        /// Where.
        at: Loc,
        /// The row's id.
        id: String,
    },

    /// A cell that is not valid UTF-8.
    #[error("{path}: {at}: invalid UTF-8 in column '{column}' (valid up to byte {valid_up_to} of the cell)")]
    InvalidUtf8 {
        /// File name.
        path: String,
        /// Where.
        at: Loc,
        /// Column name (or its 1-based number when the header itself is bad).
        column: String,
        /// Byte offset inside the cell where decoding failed.
        valid_up_to: usize,
    },

    /// A row with a different number of cells than the header.
    #[error("{path}: {at}: has {found} fields, expected {expected} (one per header column)")]
    Ragged {
        /// File name.
        path: String,
        /// Where.
        at: Loc,
        /// Number of header columns.
        expected: usize,
        /// Number of cells in the row.
        found: usize,
    },

    /// The CSV parser itself failed (other than UTF-8 / ragged rows).
    #[error("{path}: {at}: {message}")]
    Csv {
        /// File name.
        path: String,
        /// Where.
        at: Loc,
        /// Parser message.
        message: String,
    },

    /// A value a row selection names (a category asked for) that no row has.
    #[error("{path}: column '{column}' has no row '{value}'")]
    NoRowWith {
        /// File name.
        path: String,
        /// The column.
        column: String,
        /// The value asked for.
        value: String,
    },

    /// A tensor format name we do not know.
    #[error("unknown tensor format '{found}', expected safetensors (or st), npz or npy")]
    UnknownFormatName {
        /// The name given.
        found: String,
    },

    /// A tensor file whose extension we cannot map to a format.
    #[error(
        "{path}: unknown tensor file extension '{found}', expected .safetensors, .st, .npz or .npy"
    )]
    UnknownFormat {
        /// File name.
        path: String,
        /// The extension found ("" when none).
        found: String,
    },

    /// A tensor file that is truncated or not what its extension claims.
    #[error("{path}: {message}")]
    Corrupt {
        /// File name.
        path: String,
        /// What is wrong, with expected vs found sizes where they apply.
        message: String,
    },

    /// A tensor name that is not in the file.
    #[error("{path}: no tensor '{name}' (file has {available})")]
    NoSuchTensor {
        /// File name.
        path: String,
        /// Requested name.
        name: String,
        /// Abbreviated list of the names present.
        available: String,
    },

    /// A tensor with the wrong shape.
    #[error("{path}: tensor '{tensor}' has shape {found}, expected {expected}")]
    TensorShape {
        /// File name.
        path: String,
        /// Tensor name.
        tensor: String,
        /// Shape found, e.g. `[128, 2048]`.
        found: String,
        /// Shape expected, e.g. `[_, 4096]`.
        expected: String,
    },

    /// A tensor with the wrong element type.
    #[error("{path}: tensor '{tensor}' has dtype {found}, expected {expected}")]
    TensorDtype {
        /// File name.
        path: String,
        /// Tensor name.
        tensor: String,
        /// Dtype found.
        found: String,
        /// Dtype expected.
        expected: String,
    },

    /// A tensor stored in an element type we do not read.
    #[error("{path}: tensor '{tensor}' has unsupported dtype {dtype} (supported: F32, F64, F16, BF16, I64, I32, I16, I8, U32, U16, U8)")]
    UnsupportedDtype {
        /// File name.
        path: String,
        /// Tensor name.
        tensor: String,
        /// Dtype as written in the file.
        dtype: String,
    },

    /// Building a tensor whose data length does not match its shape.
    #[error("tensor data has {len} elements, shape {shape} needs {needed}")]
    ShapeLen {
        /// The shape, formatted.
        shape: String,
        /// Elements given.
        len: usize,
        /// Elements the shape needs.
        needed: usize,
    },

    /// A request the file or table cannot satisfy (e.g. several tensors into one `.npy`).
    #[error("{path}: {message}")]
    Invalid {
        /// File name (or table label).
        path: String,
        /// What is wrong.
        message: String,
    },

    /// A `--layers` value that does not parse.
    #[error("invalid layer spec '{spec}': bad item '{token}' ({why}; use 'all', 'last', N, -N (from the end) or A-B, comma-separated)")]
    LayerSpec {
        /// The whole spec.
        spec: String,
        /// The offending item.
        token: String,
        /// Why it is bad.
        why: String,
    },

    /// A layer index outside the model.
    #[error("layer {layer} out of range 0..={max}{hint}")]
    LayerOutOfRange {
        /// The index as the user wrote it (may be negative).
        layer: i64,
        /// Largest valid index.
        max: usize,
        /// Extra explanation for negative indices ("" otherwise).
        hint: String,
    },

    /// A layer that the file at hand does not contain.
    #[error("layer {layer} is not available (have: {available})")]
    LayerNotAvailable {
        /// The resolved layer.
        layer: usize,
        /// The layers present.
        available: String,
    },

    /// A command line that names the same file twice where that would destroy data (an
    /// output that is an input, two outputs that are one file). A usage error: exit 2.
    #[error("{message}")]
    Usage {
        /// The whole one-line message, naming both flags and the file.
        message: String,
    },

    /// Two files made from different prompt sets.
    #[error("{a} and {b} were made from different prompts: {detail}")]
    PromptsMismatch {
        /// First file.
        a: String,
        /// Second file.
        b: String,
        /// Where they differ (the first row, or the hashes).
        detail: String,
    },
}

impl Error {
    /// The `io::ErrorKind` when this is an I/O error (used to treat a broken pipe as success).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { error, .. } => Some(error.kind()),
            _ => None,
        }
    }

    /// True for errors of the command line rather than of the data (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Usage { .. })
    }

    /// A usage error with this message.
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
        }
    }

    pub(crate) fn io(path: &str, action: &'static str, error: io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            action,
            error,
        }
    }

    pub(crate) fn corrupt(path: &str, message: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(path: &str, message: impl Into<String>) -> Self {
        Error::Invalid {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// `[2, 3]` — the way shapes appear in messages.
pub(crate) fn fmt_shape(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// A list of names abbreviated for a one-line message: all of them when short, else the
/// first few, an ellipsis and the last two, with the count.
pub(crate) fn abbreviate<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    match names.len() {
        0 => "no entries".to_string(),
        n if n <= 8 => names.join(", "),
        n => format!(
            "{n}: {}, ..., {}",
            names[..5].join(", "),
            names[n - 2..].join(", ")
        ),
    }
}
