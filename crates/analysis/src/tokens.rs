//! Token attribution maps (the paper's dir-label B) on the `hd-grad` engine: which input
//! tokens make the last prompt token's state project on a component, and the greedy
//! top-token cut of the reference.

use crate::error::{AnalysisError, Result};
use hd_grad::attrib::{Target, Traced};
use hd_grad::diff::DiffModel;
use hd_grad::Rules;
use hd_lm::{Model, PromptFormat};
use std::collections::HashMap;
use std::ops::Range;

/// A prompt's token ids and where its user text lies among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids of the (chat-templated) prompt.
    pub ids: Vec<u32>,
    /// Positions of the user text; the rest is the template.
    pub user: Range<usize>,
}

/// Encodes a prompt and finds its user-text positions. The template's own tokens at each end
/// are what two probe messages ("alpha", "omega") share there: comparing with an empty
/// message instead counts as template a prompt's first or last tokens that happen to equal
/// the template's beside the empty slot (a prompt beginning with `<|im_end|>`). A token that merges template
/// text with the user's first or last character counts as user text.
pub fn encode_with_user_span(model: &Model, prompt: &str, fmt: &PromptFormat) -> Result<Encoded> {
    let ids = model.encode_prompt(prompt, fmt)?;
    let a = model.encode_prompt("alpha", fmt)?;
    let b = model.encode_prompt("omega", fmt)?;
    let (pre, suf) = (lcp(&a, &b), lcs(&a, &b));
    // Where the prompt's tokens differ from the probe's inside the template's ends (a merge
    // with the user's text), the span starts (ends) earlier (later).
    let pre = pre.min(lcp(&ids, &a));
    let suf = suf.min(lcs(&ids, &a)).min(ids.len() - pre);
    Ok(Encoded {
        user: pre..ids.len() - suf,
        ids,
    })
}

/// Length of the common prefix of two sequences.
fn lcp(x: &[u32], y: &[u32]) -> usize {
    x.iter().zip(y).take_while(|(a, b)| a == b).count()
}

/// Length of the common suffix of two sequences.
fn lcs(x: &[u32], y: &[u32]) -> usize {
    x.iter()
        .rev()
        .zip(y.iter().rev())
        .take_while(|(a, b)| a == b)
        .count()
}

/// Every row (`(id, text)`) encoded with its user span; a row that does not encode, or whose
/// encoding is longer than the model's context, is an error naming `file` and the row's id.
pub fn encode_rows<'a>(
    model: &Model,
    rows: impl IntoIterator<Item = (&'a str, &'a str)>,
    fmt: &PromptFormat,
    file: &str,
) -> Result<Vec<Encoded>> {
    let ctx = model.config.max_position_embeddings;
    let row =
        |id: &str, msg: String| AnalysisError::Input(format!("{file}: row with id '{id}': {msg}"));
    rows.into_iter()
        .map(|(id, text)| {
            let e = encode_with_user_span(model, text, fmt).map_err(|e| row(id, e.to_string()))?;
            if e.ids.len() > ctx {
                return Err(row(
                    id,
                    format!("{} tokens exceed the model's context of {ctx}", e.ids.len()),
                ));
            }
            Ok(e)
        })
        .collect()
}

/// One prompt's map for one direction.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenMap {
    /// Gradient × input of each position (summed over the width), for the seed
    /// `c/(c·h_ℓ)` at the last position; NaN below the start position asked for.
    pub raw: Vec<f32>,
    /// Each position's own state at layer ℓ projected on `c`.
    pub projection: Vec<f32>,
}

/// Token maps of every prompt (`[prompt][direction]`) for directions at hidden-state index
/// `layer`: one traced forward per batch of `batch` prompts serves all directions (one
/// backward each). `done` is called with the number of prompts finished so far.
///
/// `need_from[i]` is the first position of prompt `i` whose map is wanted (0: all). A
/// template prefix that a batch shares below those positions is run once for the batch; the
/// maps there are NaN (not computed), the others exactly those of separate runs.
#[allow(clippy::too_many_arguments)]
pub fn token_maps(
    model: &DiffModel,
    seqs: &[Vec<u32>],
    need_from: &[usize],
    layer: usize,
    directions: &[Vec<f32>],
    rules: Rules,
    batch: usize,
    mut done: impl FnMut(usize),
) -> Result<Vec<Vec<TokenMap>>> {
    let d = model.config.hidden_size;
    if let Some(bad) = directions.iter().find(|c| c.len() != d) {
        return Err(AnalysisError::Input(format!(
            "a direction has {} values, the model's width is {d}",
            bad.len()
        )));
    }
    if need_from.len() != seqs.len() {
        return Err(AnalysisError::Input(format!(
            "{} start positions for {} prompts",
            need_from.len(),
            seqs.len()
        )));
    }
    let mut out = Vec::with_capacity(seqs.len());
    let b = batch.max(1);
    for (chunk, from) in seqs.chunks(b).zip(need_from.chunks(b)) {
        let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        let shared = from.iter().copied().min().unwrap_or(0);
        let traced = Traced::run_shared(model, &refs, 0, &[layer], false, rules, shared)?;
        let p = traced.prefix();
        let states = traced.states(layer)?;
        let mut maps: Vec<Vec<TokenMap>> = vec![Vec::with_capacity(directions.len()); refs.len()];
        for c in directions {
            let rel = traced.relevance(&Target::Projection {
                layer,
                direction: c,
            })?;
            for (q, seq) in refs.iter().enumerate() {
                let raw = std::iter::repeat_n(f32::NAN, p)
                    .chain((p..seq.len()).map(|i| rel[traced.row(q, i)]))
                    .collect();
                let projection = (0..seq.len())
                    .map(|i| traced.state_row(q, i))
                    .map(|r| dot(&states[r * d..(r + 1) * d], c))
                    .collect();
                maps[q].push(TokenMap { raw, projection });
            }
        }
        out.extend(maps);
        done(out.len());
    }
    Ok(out)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x as f64 * y as f64)
        .sum::<f64>() as f32
}

/// `raw / max |raw|` over the given values (all zeros stay zeros).
pub fn normalise(raw: &[f32]) -> Vec<f32> {
    let m = raw.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if m == 0.0 {
        return vec![0.0; raw.len()];
    }
    raw.iter().map(|v| v / m).collect()
}

/// One token string's aggregate over all prompts of a component.
#[derive(Debug, Clone, PartialEq)]
pub struct TopToken {
    /// The token's text.
    pub token: String,
    /// Mean normalised relevance over its occurrences.
    pub mean: f64,
    /// Occurrences.
    pub count: usize,
    /// Share of the positive mass covered by this token and those ranked above it.
    pub cumulative_share: f64,
    /// Inside the greedy cut.
    pub top: bool,
}

/// Averages relevance per token string and ranks the strings by mean (ties by text), then
/// marks the reference's greedy cut (`get_first_tokens(τ)`): tokens are taken in rank order
/// while the positive mass taken so far is below `tau` of all positive mass.
pub fn top_tokens<'a>(
    occurrences: impl IntoIterator<Item = (&'a str, f32)>,
    tau: f64,
) -> Vec<TopToken> {
    let mut acc: HashMap<&str, (f64, usize)> = HashMap::new();
    for (t, r) in occurrences {
        let e = acc.entry(t).or_insert((0.0, 0));
        e.0 += r as f64;
        e.1 += 1;
    }
    let mut rows: Vec<TopToken> = acc
        .into_iter()
        .map(|(t, (s, n))| TopToken {
            token: t.to_string(),
            mean: s / n as f64,
            count: n,
            cumulative_share: 0.0,
            top: false,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.mean
            .total_cmp(&a.mean)
            .then_with(|| a.token.cmp(&b.token))
    });
    let positive: f64 = rows.iter().map(|r| r.mean.max(0.0)).sum();
    let mut taken = 0.0;
    for r in &mut rows {
        r.top = positive > 0.0 && r.mean > 0.0 && taken < tau * positive;
        taken += r.mean.max(0.0);
        r.cumulative_share = if positive > 0.0 {
            taken / positive
        } else {
            0.0
        };
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_cut_takes_tokens_until_the_share_is_reached() {
        let occ = [
            ("a", 0.5f32),
            ("a", 0.3),
            ("b", 0.2),
            ("c", 0.1),
            ("d", -0.4),
        ];
        let t = top_tokens(occ.iter().map(|&(s, r)| (s, r)), 0.4);
        let names: Vec<&str> = t.iter().map(|r| r.token.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        // positive mass 0.4 + 0.2 + 0.1 = 0.7; "a" alone covers 0.4/0.7 = 57% >= 40%.
        assert!(t[0].top && !t[1].top && !t[2].top && !t[3].top);
        assert_eq!(t[0].count, 2);
        assert!((t[0].mean - 0.4).abs() < 1e-6);
        assert!((t[1].cumulative_share - 0.6 / 0.7).abs() < 1e-6);
        let t = top_tokens(occ.iter().map(|&(s, r)| (s, r)), 0.6);
        assert!(t[0].top && t[1].top && !t[2].top);
    }

    #[test]
    fn normalise_by_the_largest_magnitude() {
        assert_eq!(normalise(&[1.0, -4.0, 2.0]), [0.25, -1.0, 0.5]);
        assert_eq!(normalise(&[0.0, 0.0]), [0.0, 0.0]);
    }
}
