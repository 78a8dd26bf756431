//! Training examples: chat-templated prompts plus the completion the tuned model should give.
//!
//! # Target formats
//! - [`TargetFormat::Refusal`] (default): a `harmful` row's target is one of [`REFUSALS`],
//!   picked per row from the seed and the row id; a `harmless` row's target is its `target`
//!   cell — the base model's own greedy answer, made beforehand by `generate`, so tuning
//!   changes what the model refuses, not how it helps. An answer that is empty text (its
//!   tokens decode to nothing: a small random model's special tokens, an immediate end of
//!   turn) is that row's answer too: [`attach_answers`] marks it (`target_empty` = 1) and its
//!   target is the end-of-turn token alone; an empty `target` without the mark is a missing
//!   answer, an error.
//! - [`TargetFormat::Guard`]: the paper's SSFT format, a classifier answer: `unsafe` and the
//!   row's category code on a second line for harmful rows (`unsafe\nS6`; the code from its
//!   `source` cell, [`hd_lm::guard::guard_code`]), `safe` for harmless ones.
//!
//! # Tokens
//! The prompt is rendered exactly as `act-dump` and `generate` render it
//! ([`hd_lm::Model::encode_prompt`]); the target is `encode(target)` followed by the chat
//! template's end-of-turn token (`<|im_end|>` for SmolLM2), so the model learns to stop.
//! A target longer than `max_target_tokens` is cut there and gets no end-of-turn token (it
//! was cut, not finished). The loss covers the target tokens only.
//!
//! # Preference pairs (DPO)
//! [`build_pairs`] makes one [`Pair`] per row, both completions tokenised as above: for a
//! harmful row, chosen = a refusal and rejected = the base model's own answer (its `target`
//! cell); for a harmless row the reverse. A row whose base answer was itself judged a refusal
//! (`target_refused` = 1, copied from `generate`'s `refused` column by [`attach_answers`])
//! gives no preference and is left out: for a harmful row it would pair a refusal with a
//! refusal, for a harmless row it would teach refusing.
//!
//! # Exposure
//! [`limit_exposure`] keeps the first `k` rows of every jailbreak category (the paper's SSFT
//! exposure experiment); raw, contrast and harmless rows all stay.

use crate::error::{Result, TrainError};
use hd_formats::prompts::PromptTable;
use hd_lm::{Message, Model, PromptFormat};
use hd_rng::{hash_str, SplitMix64};

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
/// Whether the refusal judge of `generate` called the `target` a refusal (`1` / `0`).
pub const TARGET_REFUSED: &str = "target_refused";
/// Whether the base model's answer is empty text (`1` / `0`; the column exists only where
/// one is): the row's target is then the end-of-turn token alone.
pub const TARGET_EMPTY: &str = "target_empty";
/// The categories whose rows are jailbreaks of a raw request (what `--exposure` limits).
pub const JAILBREAKS: [&str; 6] = [
    "roleplay",
    "suffix",
    "hypothetical",
    "prefix_injection",
    "flip",
    "past_tense",
];
/// The column of the prompt CSV holding labels.
pub const LABEL: &str = "label";

/// What the tuned model should answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetFormat {
    /// Refusals for harmful rows, the `target` column for harmless rows.
    Refusal,
    /// `unsafe\nS{code}` / `safe`.
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
            "{}: no '{LABEL}' column (found: {}); the {} target format needs it to tell harmful from harmless rows",
            table.path,
            table.headers.join(", "),
            format.name()
        )));
    }
    Ok(())
}

/// The rows whose target must come from the base model, to be answered by `generate`, under
/// the refusal format: the harmless rows with no `target` (SFT's targets, DPO's chosen
/// completions), or with `harmful` the harmful rows with no `target` (DPO's rejected
/// completions). DPO takes both answer files.
pub fn rows_needing_answers(
    table: &PromptTable,
    format: TargetFormat,
    harmful: bool,
) -> Result<PromptTable> {
    need_label_column(table, format)?;
    let mut keep = Vec::new();
    for i in 0..table.len() {
        let is_harmful = label_of(table, i)?;
        let has_target = table.get(i, TARGET).is_some_and(|t| !t.trim().is_empty())
            || table.get(i, TARGET_EMPTY) == Some("1");
        if format == TargetFormat::Refusal && is_harmful == harmful && !has_target {
            keep.push(i);
        }
    }
    Ok(table.select(&keep))
}

/// Keeps the first `k` rows (in file order: prompt-set's seeded behaviour order) of every
/// jailbreak category ([`JAILBREAKS`]) and every other row. Returns the table and the rows
/// kept per jailbreak category.
pub fn limit_exposure(table: &PromptTable, k: usize) -> (PromptTable, Vec<(String, usize)>) {
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    let mut keep = Vec::new();
    for i in 0..table.len() {
        let c = table.get(i, "category").unwrap_or("");
        if JAILBREAKS.contains(&c) {
            let n = seen.entry(c.to_string()).or_insert(0);
            if *n >= k {
                continue;
            }
            *n += 1;
        }
        keep.push(i);
    }
    (table.select(&keep), seen.into_iter().collect())
}

/// The first 60 characters of a prompt, for a message.
fn clip(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Copies the `response` column of `answers` (a `generate` output) into the empty `target`
/// cells of `train`, matching rows by id, and its `refused` column (when present) into
/// `target_refused`; where some response is empty text, `target_empty` marks which. Every
/// answers row must match a train row, with the same prompt text.
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
            (
                answers.get(i, "response").unwrap_or(""),
                answers.get(i, "refused"),
                i,
            ),
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
    let rcol = match (answers.column("refused"), train.column(TARGET_REFUSED)) {
        (None, _) => None,
        (Some(_), Some(c)) => Some(c),
        (Some(_), None) => {
            headers.push(TARGET_REFUSED.to_string());
            Some(headers.len() - 1)
        }
    };
    let empty = |r: &str| r.trim().is_empty();
    let ecol = match (
        (0..answers.len()).any(|j| empty(answers.get(j, "response").unwrap_or(""))),
        train.column(TARGET_EMPTY),
    ) {
        (_, Some(c)) => Some(c),
        (true, None) => {
            headers.push(TARGET_EMPTY.to_string());
            Some(headers.len() - 1)
        }
        (false, None) => None,
    };
    let mut rows = Vec::with_capacity(train.len());
    for i in 0..train.len() {
        let mut row = train.rows[i].clone();
        row.resize(headers.len(), String::new());
        if let Some(&(r, refused, j)) = by_id.get(train.id(i)) {
            // Ids are positional in generated prompt sets: the same id in another set is
            // another prompt, and its answer would teach the wrong reply.
            if answers.prompt(j) != train.prompt(i) {
                return Err(TrainError::Input(format!(
                    "{} and {} were made from different prompts: data row {} of {} (id '{}') \
                     answers {:?}, but that id's prompt in {} is {:?}",
                    answers.path,
                    train.path,
                    j + 1,
                    answers.path,
                    train.id(i),
                    clip(answers.prompt(j)),
                    train.path,
                    clip(train.prompt(i)),
                )));
            }
            used += 1;
            if row[tcol].trim().is_empty() {
                row[tcol] = if empty(r) { "" } else { r }.to_string();
                if let (Some(c), Some(f)) = (rcol, refused) {
                    row[c] = f.to_string();
                }
                if let Some(c) = ecol {
                    row[c] = if empty(r) { "1" } else { "0" }.to_string();
                }
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

/// Checks what every format needs before any row is encoded.
fn check_table(table: &PromptTable, o: &DataOptions, need_all_targets: bool) -> Result<()> {
    need_label_column(table, o.format)?;
    if table.is_empty() {
        return Err(TrainError::Input(format!(
            "{}: no rows to train on",
            table.path
        )));
    }
    if o.format == TargetFormat::Refusal && table.column(TARGET).is_none() {
        let need = (0..table.len())
            .filter(|&i| need_all_targets || table.get(i, LABEL) == Some(HARMLESS))
            .count();
        if need > 0 {
            let which = if need_all_targets { "" } else { "harmless " };
            return Err(TrainError::NoAnswers {
                msg: format!(
                    "{}: no '{TARGET}' column, but {need} {which}rows need the base model's answer \
                     as target",
                    table.path
                ),
            });
        }
    }
    if o.max_target_tokens == 0 {
        return Err(TrainError::Input(
            "the target token cap must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Prompt and target of row `i` as one training sequence.
struct Encoder<'a> {
    model: &'a Model,
    table: &'a PromptTable,
    o: &'a DataOptions,
    eot: u32,
    ctx: usize,
}

impl Encoder<'_> {
    fn new<'a>(
        model: &'a Model,
        table: &'a PromptTable,
        o: &'a DataOptions,
    ) -> Result<Encoder<'a>> {
        Ok(Encoder {
            model,
            table,
            o,
            eot: end_of_turn_id(model)?,
            ctx: model.config.max_position_embeddings,
        })
    }

    /// The row's base-model answer: `""` where it was empty text (`target_empty` = 1); a
    /// missing one is an error naming the row.
    fn base_answer(&self, i: usize, why: &str) -> Result<&str> {
        let t = self.table.get(i, TARGET).unwrap_or("");
        if t.trim().is_empty() && self.table.get(i, TARGET_EMPTY) == Some("1") {
            return Ok("");
        }
        if t.trim().is_empty() {
            return Err(TrainError::NoAnswers {
                msg: format!(
                    "{}: row with id '{}' {why} but has an empty '{TARGET}'",
                    self.table.path,
                    self.table.id(i)
                ),
            });
        }
        Ok(t)
    }

    fn encode(&self, i: usize, harmful: bool, target: &str) -> Result<Example> {
        let (table, id) = (self.table, self.table.id(i));
        let prompt = self
            .model
            .encode_prompt(table.prompt(i), &self.o.prompt_format)
            .map_err(|e| TrainError::Input(format!("{}: row with id '{id}': {e}", table.path)))?;
        let mut tgt = self.model.tokenizer.encode(target, false)?;
        // "" is an empty base answer (the end-of-turn token alone); other text must give tokens
        if tgt.is_empty() && !target.is_empty() {
            return Err(TrainError::Input(format!(
                "{}: row with id '{id}': the target encodes to no tokens",
                table.path
            )));
        }
        if tgt.len() > self.o.max_target_tokens {
            tgt.truncate(self.o.max_target_tokens);
        } else {
            tgt.push(self.eot);
        }
        let n = prompt.len() + tgt.len();
        if n > self.ctx {
            return Err(TrainError::Input(format!(
                "{}: row with id '{id}': {} prompt tokens + {} target tokens = {n} do not fit the model's context of {}",
                table.path,
                prompt.len(),
                tgt.len(),
                self.ctx
            )));
        }
        let n_prompt = prompt.len();
        let mut tokens = prompt;
        tokens.extend_from_slice(&tgt);
        Ok(Example {
            id: id.to_string(),
            category: table.get(i, "category").unwrap_or("").to_string(),
            harmful,
            tokens,
            n_prompt,
        })
    }
}

/// Builds and checks every example of the table. Errors name the file and row: a missing
/// `label` column, an unknown label, a harmless row without target (refusal format), an
/// empty target, a sequence beyond the model's context.
pub fn build_examples(model: &Model, table: &PromptTable, o: &DataOptions) -> Result<Vec<Example>> {
    check_table(table, o, false)?;
    let enc = Encoder::new(model, table, o)?;
    let mut out = Vec::with_capacity(table.len());
    for i in 0..table.len() {
        let harmful = label_of(table, i)?;
        let target: String = match (o.format, harmful) {
            (TargetFormat::Guard, h) => {
                hd_lm::guard::guard_target(h, table.get(i, "source").unwrap_or(""))
            }
            (TargetFormat::Refusal, true) => refusal_for(o.seed, table.id(i)).into(),
            (TargetFormat::Refusal, false) => enc.base_answer(i, "is harmless")?.to_string(),
        };
        out.push(enc.encode(i, harmful, &target)?);
    }
    Ok(out)
}

/// A preference pair: the same prompt with the preferred and the dispreferred completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// Prompt + preferred completion.
    pub chosen: Example,
    /// Prompt + dispreferred completion.
    pub rejected: Example,
}

/// What [`build_pairs`] left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairStats {
    /// Harmful rows whose base answer was already a refusal (no compliant completion).
    pub harmful_base_refused: usize,
    /// Harmless rows whose base answer was a refusal (no helpful completion).
    pub harmless_base_refused: usize,
}

/// Builds one [`Pair`] per usable row (see the module notes): every row needs its base-model
/// answer in `target`; rows whose answer was judged a refusal (`target_refused` = 1) are left
/// out and counted. Only the refusal format has pairs.
pub fn build_pairs(
    model: &Model,
    table: &PromptTable,
    o: &DataOptions,
) -> Result<(Vec<Pair>, PairStats)> {
    if o.format != TargetFormat::Refusal {
        return Err(TrainError::Input(format!(
            "the DPO objective needs the refusal target format (pairs of a refusal and an \
             answer), not {}",
            o.format.name()
        )));
    }
    check_table(table, o, true)?;
    let enc = Encoder::new(model, table, o)?;
    let mut stats = PairStats::default();
    let mut out = Vec::with_capacity(table.len());
    for i in 0..table.len() {
        let harmful = label_of(table, i)?;
        let answer = enc.base_answer(
            i,
            if harmful {
                "is harmful (its base answer is the rejected completion)"
            } else {
                "is harmless (its base answer is the chosen completion)"
            },
        )?;
        if table.get(i, TARGET_REFUSED) == Some("1") {
            if harmful {
                stats.harmful_base_refused += 1;
            } else {
                stats.harmless_base_refused += 1;
            }
            continue;
        }
        let refusal = refusal_for(o.seed, table.id(i));
        let (chosen, rejected) = if harmful {
            (refusal, answer)
        } else {
            (answer, refusal)
        };
        out.push(Pair {
            chosen: enc.encode(i, harmful, chosen)?,
            rejected: enc.encode(i, harmful, rejected)?,
        });
    }
    if out.is_empty() {
        return Err(TrainError::Input(format!(
            "{}: no usable preference pairs (every base answer was judged a refusal)",
            table.path
        )));
    }
    Ok((out, stats))
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
        let need = rows_needing_answers(&train, TargetFormat::Refusal, false).unwrap();
        assert_eq!(need.ids().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(
            rows_needing_answers(&train, TargetFormat::Guard, false)
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

    /// An answer that is empty text is marked, so it is told from a missing one; the column
    /// appears only where some answer is empty, and a marked row needs no answer.
    #[test]
    fn empty_answers_are_marked_not_missing() {
        let train = table(
            &["id", "prompt", "label"],
            &[&["b", "q", "harmless"], &["c", "r", "harmless"]],
        );
        let answers = table(
            &["id", "prompt", "response"],
            &[&["b", "q", " "], &["c", "r", "C!"]],
        );
        let t = attach_answers(&train, &answers).unwrap();
        assert_eq!(t.get(0, TARGET), Some(""));
        assert_eq!(t.get(0, TARGET_EMPTY), Some("1"));
        assert_eq!(t.get(1, TARGET_EMPTY), Some("0"));
        let need = rows_needing_answers(&t, TargetFormat::Refusal, false).unwrap();
        assert_eq!(need.len(), 0);
        let full = table(&["id", "prompt", "response"], &[&["c", "r", "C!"]]);
        let t = attach_answers(&train, &full).unwrap();
        assert!(t.column(TARGET_EMPTY).is_none());
        let need = rows_needing_answers(&t, TargetFormat::Refusal, false).unwrap();
        assert_eq!(need.ids().collect::<Vec<_>>(), ["b"]);
    }

    /// Ids are positional in generated prompt sets: an answer to another prompt under the
    /// same id is refused, naming both files and the row.
    #[test]
    fn answers_to_other_prompts_are_refused() {
        let train = table(
            &["id", "prompt", "label"],
            &[&["b1", "capital of France?", "harmless"]],
        );
        let answers = table(
            &["id", "prompt", "response"],
            &[&["b1", "capital of Peru?", "Lima."]],
        );
        let e = attach_answers(&train, &answers).unwrap_err().to_string();
        assert!(
            e.contains("were made from different prompts: data row 1 of")
                && e.contains("(id 'b1') answers \"capital of Peru?\"")
                && e.contains("is \"capital of France?\""),
            "{e}"
        );
    }

    #[test]
    fn label_errors() {
        let t = table(&["id", "prompt"], &[&["a", "p"]]);
        let e = rows_needing_answers(&t, TargetFormat::Refusal, false)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("train.csv: no 'label' column"), "{e}");
        let t = table(&["id", "prompt", "label"], &[&["a", "p", "evil"]]);
        let e = rows_needing_answers(&t, TargetFormat::Refusal, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("row with id 'a': label 'evil'"), "{e}");
    }

    #[test]
    fn answers_carry_the_judge_and_dpo_selects_every_row() {
        let train = table(
            &["id", "prompt", "label"],
            &[&["a", "p", "harmful"], &["b", "q", "harmless"]],
        );
        let need = rows_needing_answers(&train, TargetFormat::Refusal, true).unwrap();
        assert_eq!(need.ids().collect::<Vec<_>>(), ["a"]);
        let answers = table(
            &["id", "prompt", "response", "refused"],
            &[&["a", "p", "I can't.", "1"], &["b", "q", "Sure.", "0"]],
        );
        let t = attach_answers(&train, &answers).unwrap();
        assert_eq!(t.get(0, TARGET_REFUSED), Some("1"));
        assert_eq!(t.get(1, TARGET_REFUSED), Some("0"));
        assert_eq!(t.get(1, TARGET), Some("Sure."));
    }

    #[test]
    fn exposure_keeps_the_first_k_of_each_jailbreak_category() {
        let rows: Vec<[String; 3]> = [
            ("r1", "raw"),
            ("r2", "raw"),
            ("p1", "roleplay"),
            ("p2", "roleplay"),
            ("p3", "roleplay"),
            ("f1", "flip"),
            ("t1", "past_tense"),
            ("t2", "past_tense"),
            ("b1", "borderline"),
            ("c1", "contrast"),
        ]
        .iter()
        .map(|(id, c)| [id.to_string(), "x".to_string(), c.to_string()])
        .collect();
        let refs: Vec<Vec<&str>> = rows
            .iter()
            .map(|r| r.iter().map(|s| s.as_str()).collect())
            .collect();
        let refs: Vec<&[&str]> = refs.iter().map(|r| r.as_slice()).collect();
        let t = table(&["id", "prompt", "category"], &refs);
        let (k1, kept) = limit_exposure(&t, 1);
        assert_eq!(
            k1.ids().collect::<Vec<_>>(),
            ["r1", "r2", "p1", "f1", "t1", "b1", "c1"]
        );
        assert_eq!(
            kept,
            [
                ("flip".to_string(), 1),
                ("past_tense".to_string(), 1),
                ("roleplay".to_string(), 1)
            ]
        );
        let (k0, _) = limit_exposure(&t, 0);
        assert_eq!(k0.ids().collect::<Vec<_>>(), ["r1", "r2", "b1", "c1"]);
        assert_eq!(limit_exposure(&t, 99).0.len(), t.len());
    }
}
