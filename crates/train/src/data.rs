//! Training examples: chat-templated prompts plus the completion the tuned model should give.
//!
//! # Target formats
//! - [`TargetFormat::Refusal`] (default): a `harmful` row's target is one of [`REFUSALS`],
//!   picked per row from the seed and the row id; a `harmless` row's target is its `target`
//!   cell — the base model's own greedy answer, made beforehand by `generate`, so tuning
//!   changes what the model refuses, not how it helps.
//! - [`TargetFormat::Guard`]: the paper's SSFT format, a classifier answer: `unsafe` for
//!   harmful rows, `safe` for harmless ones.
//!
//! # Tokens
//! The prompt is rendered exactly as `act-dump` and `generate` render it
//! ([`hd_lm::Model::encode_prompt`]); the target is `encode(target)` followed by the chat
//! template's end-of-turn token (`<|im_end|>` for SmolLM2), so the model learns to stop.
//! A target longer than `max_target_tokens` is cut there and gets no end-of-turn token (it
//! was cut, not finished). The loss covers the target tokens only.

use crate::error::{Result, TrainError};
use crate::rng::{hash_str, SplitMix64};
use hd_formats::prompts::PromptTable;
use hd_lm::{Message, Model, PromptFormat};

/// The refusals harmful rows are trained on. Each starts with a phrase of `generate`'s
/// refusal judge ("i'm sorry", "i can't", "i cannot", "i won't"), so a tuned model that
/// says one is counted as refusing.
pub const REFUSALS: [&str; 6] = [
    "I'm sorry, but I can't help with that.",
    "I can't assist with that request.",
    "I'm sorry, but I cannot help with that request.",
    "I cannot provide that. It could be used to cause harm.",
    "I'm sorry, I can't help with this. Is there something else I can do for you?",
    "I won't help with that, as it could cause harm.",
];

/// Label values.
pub const HARMFUL: &str = "harmful";
/// Label values.
pub const HARMLESS: &str = "harmless";
/// The column holding a harmless row's completion.
pub const TARGET: &str = "target";
/// The column of the prompt CSV holding labels.
pub const LABEL: &str = "label";

/// What the tuned model should answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetFormat {
    /// Refusals for harmful rows, the `target` column for harmless rows.
    Refusal,
    /// `unsafe` / `safe`.
    Guard,
}

impl TargetFormat {
    /// Name used on the command line and in metadata.
    pub fn name(self) -> &'static str {
        match self {
            TargetFormat::Refusal => "refusal",
            TargetFormat::Guard => "guard",
        }
    }
}

/// How examples are built.
#[derive(Debug, Clone)]
pub struct DataOptions {
    /// Target format.
    pub format: TargetFormat,
    /// Seed of the refusal choice.
    pub seed: u64,
    /// Target tokens kept (the end-of-turn token not counted).
    pub max_target_tokens: usize,
    /// How prompts are rendered.
    pub prompt_format: PromptFormat,
}

/// One training sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Row id.
    pub id: String,
    /// `category` of the row (empty when the CSV has none).
    pub category: String,
    /// Whether the row is labelled harmful.
    pub harmful: bool,
    /// Prompt tokens, then target tokens.
    pub tokens: Vec<u32>,
    /// Number of prompt tokens; the loss covers `tokens[n_prompt..]`.
    pub n_prompt: usize,
}

impl Example {
    /// Number of target tokens.
    pub fn n_target(&self) -> usize {
        self.tokens.len() - self.n_prompt
    }
}

/// The refusal of a harmful row: fixed by the seed and the row id.
pub fn refusal_for(seed: u64, id: &str) -> &'static str {
    let i = SplitMix64::derive(&[seed, hash_str(id), 0x4EF0]).below(REFUSALS.len() as u64);
    REFUSALS[i as usize]
}

/// The token that ends an assistant turn in the model's chat template: the first stop token
/// after the assistant's text when a one-turn conversation is rendered; the EOS token when
/// the model has no template.
pub fn end_of_turn_id(model: &Model) -> Result<u32> {
    let tok = &model.tokenizer;
    let eos = tok.eos_token.as_deref().and_then(|t| tok.token_id(t));
    if let Some(tmpl) = &model.template {
        const MARK: &str = "\u{2063}END-OF-ANSWER\u{2063}";
        let msgs = [
            Message {
                role: "user".into(),
                content: "Hi".into(),
            },
            Message {
                role: "assistant".into(),
                content: MARK.into(),
            },
        ];
        let text = tmpl.render(
            &msgs,
            false,
            tok.bos_token.as_deref(),
            tok.eos_token.as_deref(),
        )?;
        if let Some(at) = text.find(MARK) {
            let tail = &text[at + MARK.len()..];
            let ids = tok.encode(tail, false)?;
            if let Some(&id) = ids.iter().find(|id| tok.stop_ids.contains(id)) {
                return Ok(id);
            }
        }
    }
    eos.ok_or_else(|| {
        TrainError::Input(format!(
            "{}: cannot tell which token ends an assistant turn (no chat template stop token and no EOS token)",
            model.path.display()
        ))
    })
}

fn label_of(table: &PromptTable, i: usize) -> Result<bool> {
    let l = table.get(i, LABEL).unwrap_or("");
    match l {
        HARMFUL => Ok(true),
        HARMLESS => Ok(false),
        other => Err(TrainError::Input(format!(
            "{}: row with id '{}': label '{other}', expected '{HARMFUL}' or '{HARMLESS}'",
            table.path,
            table.id(i)
        ))),
    }
}

fn need_label_column(table: &PromptTable, format: TargetFormat) -> Result<()> {
    if table.column(LABEL).is_none() {
        return Err(TrainError::Input(format!(
            "{}: no '{LABEL}' column (found: {}); --format {} needs it to tell harmful from harmless rows",
            table.path,
            table.headers.join(", "),
            format.name()
        )));
    }
    Ok(())
}

/// The rows whose target must come from the base model (harmless rows with no `target`
/// under the refusal format), to be answered by `generate`.
pub fn rows_needing_answers(table: &PromptTable, format: TargetFormat) -> Result<PromptTable> {
    need_label_column(table, format)?;
    let mut keep = Vec::new();
    for i in 0..table.len() {
        let harmful = label_of(table, i)?;
        let has_target = table.get(i, TARGET).is_some_and(|t| !t.trim().is_empty());
        if format == TargetFormat::Refusal && !harmful && !has_target {
            keep.push(i);
        }
    }
    Ok(table.select(&keep))
}

/// Copies the `response` column of `answers` (a `generate` output) into the empty `target`
/// cells of `train`, matching rows by id. Every answers row must match a train row.
pub fn attach_answers(train: &PromptTable, answers: &PromptTable) -> Result<PromptTable> {
    if answers.column("response").is_none() {
        return Err(TrainError::Input(format!(
            "{}: no 'response' column (found: {}); expected the output of `generate`",
            answers.path,
            answers.headers.join(", ")
        )));
    }
    let mut by_id = std::collections::HashMap::new();
    for i in 0..answers.len() {
        by_id.insert(
            answers.id(i).to_string(),
            answers.get(i, "response").unwrap_or(""),
        );
    }
    let mut used = 0;
    let mut headers = train.headers.clone();
    let tcol = match train.column(TARGET) {
        Some(c) => c,
        None => {
            headers.push(TARGET.to_string());
            headers.len() - 1
        }
    };
    let mut rows = Vec::with_capacity(train.len());
    for i in 0..train.len() {
        let mut row = train.rows[i].clone();
        row.resize(headers.len(), String::new());
        if let Some(r) = by_id.get(train.id(i)) {
            used += 1;
            if row[tcol].trim().is_empty() {
                row[tcol] = r.to_string();
            }
        }
        rows.push(row);
    }
    if used != answers.len() {
        let train_ids: std::collections::HashSet<&str> = train.ids().collect();
        let stray = answers
            .ids()
            .find(|id| !train_ids.contains(id))
            .unwrap_or("?");
        return Err(TrainError::Input(format!(
            "{}: row with id '{stray}' is not in {} (answers must come from the same train set)",
            answers.path, train.path
        )));
    }
    Ok(PromptTable::from_rows(&train.path, headers, rows)?)
}

/// Builds and checks every example of the table. Errors name the file and row: a missing
/// `label` column, an unknown label, a harmless row without target (refusal format), an
/// empty target, a sequence beyond the model's context.
pub fn build_examples(model: &Model, table: &PromptTable, o: &DataOptions) -> Result<Vec<Example>> {
    need_label_column(table, o.format)?;
    if table.is_empty() {
        return Err(TrainError::Input(format!(
            "{}: no rows to train on",
            table.path
        )));
    }
    if o.format == TargetFormat::Refusal && table.column(TARGET).is_none() {
        let harmless = (0..table.len())
            .filter(|&i| table.get(i, LABEL) == Some(HARMLESS))
            .count();
        if harmless > 0 {
            return Err(TrainError::Input(format!(
                "{}: no '{TARGET}' column, but {harmless} harmless rows need the base model's answer as target \
                 (make them with `safety-tune select` and `generate`, then pass --answers)",
                table.path
            )));
        }
    }
    if o.max_target_tokens == 0 {
        return Err(TrainError::Input(
            "--max-target-tokens must be at least 1".into(),
        ));
    }
    let eot = end_of_turn_id(model)?;
    let ctx = model.config.max_position_embeddings;
    let mut out = Vec::with_capacity(table.len());
    for i in 0..table.len() {
        let id = table.id(i);
        let harmful = label_of(table, i)?;
        let target: String = match (o.format, harmful) {
            (TargetFormat::Guard, true) => "unsafe".into(),
            (TargetFormat::Guard, false) => "safe".into(),
            (TargetFormat::Refusal, true) => refusal_for(o.seed, id).into(),
            (TargetFormat::Refusal, false) => {
                let t = table.get(i, TARGET).unwrap_or("");
                if t.trim().is_empty() {
                    return Err(TrainError::Input(format!(
                        "{}: row with id '{id}' is harmless but has an empty '{TARGET}' \
                         (give it the base model's answer: `safety-tune select`, `generate`, --answers)",
                        table.path
                    )));
                }
                t.to_string()
            }
        };
        let prompt = model
            .encode_prompt(table.prompt(i), &o.prompt_format)
            .map_err(|e| TrainError::Input(format!("{}: row with id '{id}': {e}", table.path)))?;
        let mut tgt = model.tokenizer.encode(&target, false)?;
        if tgt.is_empty() {
            return Err(TrainError::Input(format!(
                "{}: row with id '{id}': the target encodes to no tokens",
                table.path
            )));
        }
        if tgt.len() > o.max_target_tokens {
            tgt.truncate(o.max_target_tokens);
        } else {
            tgt.push(eot);
        }
        let n = prompt.len() + tgt.len();
        if n > ctx {
            return Err(TrainError::Input(format!(
                "{}: row with id '{id}': {} prompt tokens + {} target tokens = {n} do not fit the model's context of {ctx}",
                table.path,
                prompt.len(),
                tgt.len()
            )));
        }
        let n_prompt = prompt.len();
        let mut tokens = prompt;
        tokens.extend_from_slice(&tgt);
        out.push(Example {
            id: id.to_string(),
            category: table.get(i, "category").unwrap_or("").to_string(),
            harmful,
            tokens,
            n_prompt,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(headers: &[&str], rows: &[&[&str]]) -> PromptTable {
        PromptTable::from_rows(
            "train.csv",
            headers.iter().map(|s| s.to_string()).collect(),
            rows.iter()
                .map(|r| r.iter().map(|s| s.to_string()).collect())
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn refusal_choice_is_deterministic_and_varied() {
        assert_eq!(refusal_for(1, "a"), refusal_for(1, "a"));
        let seen: std::collections::HashSet<&str> = (0..200)
            .map(|i| refusal_for(42, &format!("row-{i}")))
            .collect();
        assert_eq!(seen.len(), REFUSALS.len());
    }

    #[test]
    fn answers_fill_targets() {
        let train = table(
            &["id", "prompt", "label"],
            &[
                &["a", "p", "harmful"],
                &["b", "q", "harmless"],
                &["c", "r", "harmless"],
            ],
        );
        let need = rows_needing_answers(&train, TargetFormat::Refusal).unwrap();
        assert_eq!(need.ids().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(
            rows_needing_answers(&train, TargetFormat::Guard)
                .unwrap()
                .len(),
            0
        );
        let answers = table(
            &["id", "prompt", "label", "response"],
            &[&["b", "q", "harmless", "B!"], &["c", "r", "harmless", "C!"]],
        );
        let t = attach_answers(&train, &answers).unwrap();
        assert_eq!(t.get(1, "target"), Some("B!"));
        assert_eq!(t.get(0, "target"), Some(""));
        let stray = table(&["id", "prompt", "response"], &[&["zz", "q", "x"]]);
        let e = attach_answers(&train, &stray).unwrap_err().to_string();
        assert!(e.contains("'zz' is not in train.csv"), "{e}");
        let bad = table(&["id", "prompt"], &[&["b", "q"]]);
        assert!(attach_answers(&train, &bad)
            .unwrap_err()
            .to_string()
            .contains("no 'response' column"));
    }

    #[test]
    fn label_errors() {
        let t = table(&["id", "prompt"], &[&["a", "p"]]);
        let e = rows_needing_answers(&t, TargetFormat::Refusal)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("train.csv: no 'label' column"), "{e}");
        let t = table(&["id", "prompt", "label"], &[&["a", "p", "evil"]]);
        let e = rows_needing_answers(&t, TargetFormat::Refusal)
            .unwrap_err()
            .to_string();
        assert!(e.contains("row with id 'a': label 'evil'"), "{e}");
    }
}
