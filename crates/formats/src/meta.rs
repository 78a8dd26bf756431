//! Self-describing outputs: the standard `__metadata__` keys and the prompt-set check.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::prompts::{hex, PromptTable};
use crate::tensors::TensorFile;
use crate::Error;

/// Metadata key: the tool that wrote the file.
pub const TOOL: &str = "tool";
/// Metadata key: that tool's version.
pub const VERSION: &str = "version";
/// Metadata key: the full command line, as a JSON array of strings.
pub const ARGV: &str = "argv";
/// Metadata key: [`PromptTable::ids_hash`] of the prompts the file was made from.
pub const PROMPT_IDS_HASH: &str = "prompt_ids_hash";
/// Metadata key: [`PromptTable::prompts_hash`] (ids and prompt text) of those prompts.
pub const PROMPTS_HASH: &str = "prompts_hash";
/// Metadata key: [`PromptTable::row_hashes`] joined with `,` (names the first row that
/// differs between two files).
pub const PROMPT_ROW_HASHES: &str = "prompt_row_hashes";
/// Metadata key: how prompts became tokens where that is not the default chat template
/// alone (`no template`, the system prompt's hash, a user template's name and hash: see
/// `hd_lm::PromptFormat::describe`); absent = the model's template.
pub const PROMPT_FORMAT: &str = "prompt_format";
/// What the pairing check calls the format of a file that records its prompts but no
/// [`PROMPT_FORMAT`]: the model's own chat template.
pub const DEFAULT_PROMPT_FORMAT: &str = "the model's chat template";
/// The keys that say which prompts a file was made from: carried from a tool's input to
/// its output ([`copy_prompt_keys`]) and compared between files.
pub const PROMPT_KEYS: [&str; 4] = [
    PROMPT_IDS_HASH,
    PROMPTS_HASH,
    PROMPT_ROW_HASHES,
    PROMPT_FORMAT,
];

/// `tool`, `version` and `argv` (from `std::env::args_os`, lossily decoded, as a JSON array
/// string). Callers add their own keys to the returned map.
pub fn base_metadata(tool: &str, version: &str) -> BTreeMap<String, String> {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut m = BTreeMap::new();
    m.insert(TOOL.to_string(), tool.to_string());
    m.insert(VERSION.to_string(), version.to_string());
    m.insert(
        ARGV.to_string(),
        serde_json::to_string(&argv).expect("strings serialize"),
    );
    m
}

/// Records which prompts a file was made from: the table's ids hash, ids-and-text hash
/// and row hashes ([`PROMPT_KEYS`]).
pub fn set_prompt_hashes(metadata: &mut BTreeMap<String, String>, table: &PromptTable) {
    metadata.insert(PROMPT_IDS_HASH.to_string(), table.ids_hash());
    metadata.insert(PROMPTS_HASH.to_string(), table.prompts_hash());
    metadata.insert(PROMPT_ROW_HASHES.to_string(), table.row_hashes().join(","));
}

/// Copies the [`PROMPT_KEYS`] an input file has into an output's metadata.
pub fn copy_prompt_keys(from: &BTreeMap<String, String>, to: &mut BTreeMap<String, String>) {
    for k in PROMPT_KEYS {
        if let Some(v) = from.get(k) {
            to.insert(k.to_string(), v.clone());
        }
    }
}

/// The file's [`PROMPT_IDS_HASH`], if it has one.
pub fn prompt_ids_hash(file: &TensorFile) -> Option<&str> {
    file.metadata.get(PROMPT_IDS_HASH).map(String::as_str)
}

/// `sha256:<hex>` of some bytes (e.g. a CSV about to be written).
pub fn sha256_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// `sha256:<hex>` of a file's contents, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    let label = path.display().to_string();
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(&label, "cannot open", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(&label, "cannot read", e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex(&h.finalize())))
}

/// What one side of a pairing check knows about its prompts.
struct Side<'a> {
    label: &'a str,
    ids: Option<&'a str>,
    content: Option<&'a str>,
    rows: Option<Vec<&'a str>>,
    format: Option<&'a str>,
    /// The ids by row, when the side is a prompt table (to name the row's id).
    table: Option<&'a PromptTable>,
}

impl<'a> Side<'a> {
    fn file(f: &'a TensorFile) -> Self {
        let get = |k: &str| f.metadata.get(k).map(String::as_str);
        // A file that records its prompts but no format was made with the model's own chat
        // template: that is a format too, and a guard-template dump must not pair with it.
        // A file recording nothing (a plain export) says nothing about its format either.
        let format = get(PROMPT_FORMAT).or(get(PROMPTS_HASH).map(|_| DEFAULT_PROMPT_FORMAT));
        Side {
            label: &f.path,
            ids: get(PROMPT_IDS_HASH),
            content: get(PROMPTS_HASH),
            rows: get(PROMPT_ROW_HASHES).map(|r| r.split(',').collect()),
            format,
            table: None,
        }
    }
}

/// Checks that two files were made from the same prompts (ids and prompt text, in order,
/// and the same prompt format where both record it). Differing -> [`Error::PromptsMismatch`]
/// naming both files and the first row that differs. `Ok(Some(warning))` when a file
/// records no prompt text hash (older files, plain `.npy`/`.npz` exports): the pair could
/// not be checked in full, which the tool should say.
pub fn check_same_prompts(a: &TensorFile, b: &TensorFile) -> Result<Option<String>, Error> {
    compare(&Side::file(a), &Side::file(b))
}

/// Like [`check_same_prompts`], between a tensor file and the prompt table a tool was given
/// alongside it (e.g. the `--rows` CSV of a dump).
pub fn check_prompts_match(
    file: &TensorFile,
    table: &PromptTable,
) -> Result<Option<String>, Error> {
    let (ids, content, rows) = (table.ids_hash(), table.prompts_hash(), table.row_hashes());
    let t = Side {
        label: &table.path,
        ids: Some(&ids),
        content: Some(&content),
        rows: Some(rows.iter().map(String::as_str).collect()),
        format: None,
        table: Some(table),
    };
    compare(&Side::file(file), &t)
}

fn compare(a: &Side, b: &Side) -> Result<Option<String>, Error> {
    let mismatch = |detail: String| Error::PromptsMismatch {
        a: a.label.to_string(),
        b: b.label.to_string(),
        detail,
    };
    if let (Some(x), Some(y)) = (a.format, b.format) {
        if x != y {
            return Err(mismatch(format!("prompt_format '{x}' vs '{y}'")));
        }
    }
    match (a.content, b.content) {
        (Some(x), Some(y)) if x == y => return Ok(None),
        (Some(x), Some(y)) => return Err(mismatch(first_difference(a, b, x, y))),
        _ => {}
    }
    if let (Some(x), Some(y)) = (a.ids, b.ids) {
        if x != y {
            return Err(mismatch(format!("prompt_ids_hash {x} vs {y}")));
        }
    }
    let old = if a.content.is_none() {
        a.label
    } else {
        b.label
    };
    let other = if a.content.is_none() {
        b.label
    } else {
        a.label
    };
    Ok(Some(format!(
        "{old} records no '{PROMPTS_HASH}' (an older or exported file): cannot check that it \
         was made from the same prompt texts as {other}{}",
        if a.ids.is_some() && b.ids.is_some() {
            " (their ids agree)"
        } else {
            ""
        }
    )))
}

/// `row N (id 'x') differs`, or the counts, or the two hashes when no rows are recorded.
fn first_difference(a: &Side, b: &Side, x: &str, y: &str) -> String {
    let (Some(ra), Some(rb)) = (&a.rows, &b.rows) else {
        return format!("{PROMPTS_HASH} {x} vs {y}");
    };
    match ra.iter().zip(rb).position(|(p, q)| p != q) {
        Some(i) => {
            let id = a
                .table
                .or(b.table)
                .map(|t| format!(" (id '{}' in {})", t.id(i), t.path))
                .unwrap_or_default();
            format!("prompt row {}{id} differs in id or text", i + 1)
        }
        None => format!("{} prompt rows vs {}", ra.len(), rb.len()),
    }
}
