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

/// Records the table's [`PromptTable::ids_hash`] under [`PROMPT_IDS_HASH`].
pub fn set_prompt_ids_hash(metadata: &mut BTreeMap<String, String>, table: &PromptTable) {
    metadata.insert(PROMPT_IDS_HASH.to_string(), table.ids_hash());
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

/// Checks two files' `prompt_ids_hash` metadata: if both present and differ -> Error naming
/// both files. A file without the key (e.g. a plain `.npy`) is not checked.
pub fn check_same_prompts(a: &TensorFile, b: &TensorFile) -> Result<(), Error> {
    match (prompt_ids_hash(a), prompt_ids_hash(b)) {
        (Some(x), Some(y)) if x != y => Err(Error::PromptsMismatch {
            a: a.path.clone(),
            b: b.path.clone(),
            a_hash: x.to_string(),
            b_hash: y.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Like [`check_same_prompts`], between a tensor file and the prompt table a tool was given
/// alongside it (e.g. the `--rows` CSV of a dump).
pub fn check_prompts_match(file: &TensorFile, table: &PromptTable) -> Result<(), Error> {
    match prompt_ids_hash(file) {
        Some(h) if h != table.ids_hash() => Err(Error::PromptsMismatch {
            a: file.path.clone(),
            b: table.path.clone(),
            a_hash: h.to_string(),
            b_hash: table.ids_hash(),
        }),
        _ => Ok(()),
    }
}
