//! Our own prompts, committed under `data/prompts/` (the `--ours` folder). Columns `id,prompt`
//! are required; `source` is used when present; other columns are ignored.
//!
//! | file | required | used as |
//! |---|---|---|
//! | `benign.csv` | yes | `benign`, cut into the three splits |
//! | `borderline.csv` | yes | `borderline`, cut into the three splits |
//! | `train_borderline.csv` | no | more `borderline` rows, train split only |
//! | `train_harmful.csv` | no | `contrast` rows (harmful requests in borderline words), train split only |
//! | `heldout_safe.csv`, `heldout_harmful.csv` | no | never written to a split: the over-refusal evaluation sets; only checked to be disjoint from everything else |
//!
//! The held-out files are evaluation-only, so their prompts must not appear, even nearly, in
//! anything a model is trained or analysed on: [`check_heldout`] refuses exact repeats (after
//! normalising case, spaces and final punctuation) and near-twins (content-word Jaccard at
//! least [`NEAR_DUP_THRESHOLD`]) of any other prompt of ours or of the vendor data.

use std::collections::HashMap;
use std::path::Path;

use hd_formats::prompts::PromptTable;

use crate::error::Error;
use crate::text::{content_words, dedup_key, jaccard};
use crate::vendor::{Vendor, NEAR_DUP_THRESHOLD};

/// One of our prompts.
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
/// Optional: borderline rows for the train split only.
pub const TRAIN_BORDERLINE_FILE: &str = "train_borderline.csv";
/// Optional: harmful rows for the train split only.
pub const TRAIN_HARMFUL_FILE: &str = "train_harmful.csv";
/// Optional, evaluation only: safe prompts that look unsafe.
pub const HELDOUT_SAFE_FILE: &str = "heldout_safe.csv";
/// Optional, evaluation only: harmful prompts in the same styles.
pub const HELDOUT_HARMFUL_FILE: &str = "heldout_harmful.csv";

/// Everything read from `--ours`.
#[derive(Debug, Clone, Default)]
pub struct Ours {
    /// `benign.csv`.
    pub benign: Vec<OurPrompt>,
    /// `borderline.csv`.
    pub borderline: Vec<OurPrompt>,
    /// `train_borderline.csv` (empty when absent).
    pub train_borderline: Vec<OurPrompt>,
    /// `train_harmful.csv` (empty when absent).
    pub train_harmful: Vec<OurPrompt>,
    /// `heldout_safe.csv` (empty when absent).
    pub heldout_safe: Vec<OurPrompt>,
    /// `heldout_harmful.csv` (empty when absent).
    pub heldout_harmful: Vec<OurPrompt>,
}

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

fn read_optional(path: &Path) -> Result<Vec<OurPrompt>, Error> {
    if path.exists() {
        read_one(path)
    } else {
        Ok(Vec::new())
    }
}

/// Reads every file and checks that no prompt appears twice (after normalising case and
/// whitespace), within or across them: a repeated prompt could otherwise land in two splits,
/// or in training and in the held-out evaluation. Ids must also be distinct across the
/// files, since they become `behaviour_id`s.
pub fn load(dir: &Path) -> Result<Ours, Error> {
    let paths = [
        BENIGN_FILE,
        BORDERLINE_FILE,
        TRAIN_BORDERLINE_FILE,
        TRAIN_HARMFUL_FILE,
        HELDOUT_SAFE_FILE,
        HELDOUT_HARMFUL_FILE,
    ]
    .map(|f| dir.join(f));
    let ours = Ours {
        benign: read_one(&paths[0])?,
        borderline: read_one(&paths[1])?,
        train_borderline: read_optional(&paths[2])?,
        train_harmful: read_optional(&paths[3])?,
        heldout_safe: read_optional(&paths[4])?,
        heldout_harmful: read_optional(&paths[5])?,
    };
    let mut by_text: HashMap<String, String> = HashMap::new();
    let mut ids: HashMap<&str, ()> = HashMap::new();
    let files: [&[OurPrompt]; 6] = [
        &ours.benign,
        &ours.borderline,
        &ours.train_borderline,
        &ours.train_harmful,
        &ours.heldout_safe,
        &ours.heldout_harmful,
    ];
    for (path, rows) in paths.iter().zip(files) {
        for r in rows {
            if ids.insert(r.id.as_str(), ()).is_some() {
                return Err(Error::Invalid {
                    path: path.to_path_buf(),
                    msg: format!("id '{}' is also used in another file", r.id),
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
    Ok(ours)
}

/// Refuses a held-out prompt that nearly repeats (content-word Jaccard at least
/// [`NEAR_DUP_THRESHOLD`]) any prompt a split can contain: ours, the vendor behaviours and
/// the past-tense lines. Exact repeats among our files are already refused by [`load`];
/// this also catches rewordings and repeats of vendor text.
pub fn check_heldout(dir: &Path, ours: &Ours, vendor: &Vendor) -> Result<(), Error> {
    let mut pool: Vec<(&str, &str)> = Vec::new();
    for r in ours
        .benign
        .iter()
        .chain(&ours.borderline)
        .chain(&ours.train_borderline)
        .chain(&ours.train_harmful)
    {
        pool.push((r.id.as_str(), r.prompt.as_str()));
    }
    for b in vendor
        .behaviours
        .iter()
        .chain(vendor.past_tense.iter().flatten())
    {
        pool.push((b.id.as_str(), b.text.as_str()));
    }
    let keys: HashMap<String, &str> = pool.iter().map(|(id, t)| (dedup_key(t), *id)).collect();
    let sigs: Vec<Vec<String>> = pool.iter().map(|(_, t)| content_words(t)).collect();
    let heldout = (ours.heldout_safe.iter().map(|h| (HELDOUT_SAFE_FILE, h))).chain(
        ours.heldout_harmful
            .iter()
            .map(|h| (HELDOUT_HARMFUL_FILE, h)),
    );
    for (file, h) in heldout {
        if let Some(id) = keys.get(&dedup_key(&h.prompt)) {
            return Err(Error::Invalid {
                path: dir.join(file),
                msg: format!(
                    "held-out prompt '{}' repeats '{id}', which can be trained or analysed on",
                    h.id
                ),
            });
        }
        let sig = content_words(&h.prompt);
        for ((id, _), s) in pool.iter().zip(&sigs) {
            let j = jaccard(&sig, s);
            if j >= NEAR_DUP_THRESHOLD {
                return Err(Error::Invalid {
                    path: dir.join(file),
                    msg: format!(
                        "held-out prompt '{}' nearly repeats '{id}' (content-word overlap {j:.2} >= {NEAR_DUP_THRESHOLD}), which can be trained or analysed on",
                        h.id
                    ),
                });
            }
        }
    }
    Ok(())
}
