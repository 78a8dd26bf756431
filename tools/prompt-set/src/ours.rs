//! Our own harmless prompts: `benign.csv` and `borderline.csv` in the `--ours` folder
//! (committed under `data/prompts/`). Columns `id,prompt` are required; `source` is used
//! when present; other columns are ignored.

use std::collections::HashMap;
use std::path::Path;

use hd_formats::prompts::PromptTable;

use crate::error::Error;
use crate::text::dedup_key;

/// One of our harmless prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurPrompt {
    /// Its id in our CSV (e.g. `benign-0042`); becomes the row's `behaviour_id`.
    pub id: String,
    /// The prompt.
    pub prompt: String,
    /// The `source` column, or `hidden-dims`.
    pub source: String,
}

/// File names inside `--ours`.
pub const BENIGN_FILE: &str = "benign.csv";
/// File names inside `--ours`.
pub const BORDERLINE_FILE: &str = "borderline.csv";

fn read_one(path: &Path) -> Result<Vec<OurPrompt>, Error> {
    if !path.is_file() {
        return Err(Error::MissingOurs {
            path: path.to_path_buf(),
        });
    }
    let t = PromptTable::read(path)?;
    let mut out = Vec::with_capacity(t.len());
    for i in 0..t.len() {
        let prompt = t.prompt(i).trim();
        if prompt.is_empty() {
            return Err(Error::Invalid {
                path: path.to_path_buf(),
                msg: format!("row with id '{}' has an empty prompt", t.id(i)),
            });
        }
        let source = t
            .get(i, "source")
            .filter(|s| !s.is_empty())
            .unwrap_or("hidden-dims");
        out.push(OurPrompt {
            id: t.id(i).to_string(),
            prompt: prompt.to_string(),
            source: source.to_string(),
        });
    }
    if out.is_empty() {
        return Err(Error::Invalid {
            path: path.to_path_buf(),
            msg: "no prompts (header only)".into(),
        });
    }
    Ok(out)
}

/// Reads both files and checks that no prompt appears twice (after normalising case and
/// whitespace), within or across them: a repeated prompt could otherwise land in two splits.
/// Ids must also be distinct across the two files, since they become `behaviour_id`s.
pub fn load(dir: &Path) -> Result<(Vec<OurPrompt>, Vec<OurPrompt>), Error> {
    let benign_path = dir.join(BENIGN_FILE);
    let borderline_path = dir.join(BORDERLINE_FILE);
    let benign = read_one(&benign_path)?;
    let borderline = read_one(&borderline_path)?;
    let mut by_text: HashMap<String, String> = HashMap::new();
    let mut ids: HashMap<&str, ()> = HashMap::new();
    for (path, rows) in [(&benign_path, &benign), (&borderline_path, &borderline)] {
        for r in rows.iter() {
            if ids.insert(r.id.as_str(), ()).is_some() {
                return Err(Error::Invalid {
                    path: path.to_path_buf(),
                    msg: format!("id '{}' is also used in the other file", r.id),
                });
            }
            if let Some(first) = by_text.insert(dedup_key(&r.prompt), r.id.clone()) {
                return Err(Error::Invalid {
                    path: path.to_path_buf(),
                    msg: format!(
                        "prompt of '{}' duplicates '{}' (after normalising case and spaces)",
                        r.id, first
                    ),
                });
            }
        }
    }
    Ok((benign, borderline))
}
