//! From a run's CSVs to the report's sections: which numbers each figure shows. Pure data
//! (no drawing), so tests can check every figure against its input files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::html::escape;
use crate::layout::{self, Input};
use crate::model::{BarSeries, Bars, Figure, Item, LineSeries, Lines, Plot, Stroke};
use crate::paper;
use crate::table::Table;
use crate::Error;
use hd_analysis::stats::wilson;

/// A run folder and the choices that pick what to show from it.
#[derive(Debug, Clone)]
pub struct Run {
    /// The run folder (e.g. runs/default).
    pub dir: PathBuf,
    /// The layer of the per-layer figures (the paper's L14).
    pub layer: usize,
}

impl Run {
    /// Reads one of the run's CSVs; None when the stage has not run.
    pub fn table(&self, input: Input) -> Result<Option<Table>, Error> {
        Table::read(&self.path(input))
    }

    /// The file's path.
    pub fn path(&self, input: Input) -> PathBuf {
        self.dir.join(input.path)
    }

    /// The box that stands where a stage's output would be.
    pub fn missing(&self, what: &str, input: Input) -> Item {
        Item::Missing {
            what: what.to_string(),
            make: input.make.to_string(),
            path: display(&self.path(input)),
        }
    }
}

/// Refusal rate per category: (category, rate, n).
pub type Rates = Vec<(String, f64, usize)>;
/// (x, y) points.
pub type Points = Vec<(f64, f64)>;

fn display(p: &Path) -> String {
    p.display().to_string()
}

pub(crate) fn figure(
    id: &str,
    title: &str,
    caption: &str,
    paper: Vec<(String, String)>,
    plot: Plot,
) -> Item {
    Item::Figure(Figure {
        id: id.to_string(),
        title: title.to_string(),
        caption: caption.to_string(),
        paper,
        plot,
    })
}

pub(crate) fn rows(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// One accuracy column of a per-layer CSV as (layer, value), empty cells skipped.
pub fn layer_column(t: &Table, column: &str) -> Result<Points, Error> {
    let (l, c) = (t.col("layer")?, t.col(column)?);
    let mut out = Vec::new();
    for r in 0..t.rows.len() {
        if let Some(v) = t.opt_rate(r, c)? {
            out.push((t.int(r, l)? as f64, v));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Refusal rates.

/// Refusal rate per value of `category` (order of first appearance): (category, rate, n).
pub fn refusal_by_category(t: &Table) -> Result<Rates, Error> {
    let cat = t.col("category")?;
    let refused = t.col("refused")?;
    let mut order: Vec<String> = Vec::new();
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in 0..t.rows.len() {
        let c = t.cell(r, cat).to_string();
        let yes = t.flag(r, refused)?;
        let e = counts.entry(c.clone()).or_insert_with(|| {
            order.push(c.clone());
            (0, 0)
        });
        e.0 += usize::from(yes);
        e.1 += 1;
    }
    Ok(order
        .into_iter()
        .map(|c| {
            let (k, n) = counts[&c];
            (c, k as f64 / n as f64, n)
        })
        .collect())
}

/// The 95% Wilson interval of a rate of `n` (its count recovered by rounding).
pub fn rate_ci(rate: f64, n: usize) -> (f64, f64) {
    wilson((rate * n as f64).round() as usize, n)
}

/// A rate as `12.3% [8.1, 17.0] (n = 310)`: the 95% Wilson interval and n.
pub fn rate_text(k: usize, n: usize) -> String {
    let (lo, hi) = wilson(k, n);
    format!(
        "{:.1}% [{:.1}, {:.1}] (n = {n})",
        100.0 * k as f64 / n.max(1) as f64,
        100.0 * lo,
        100.0 * hi
    )
}

/// (category, [refused, complied, neither]) counts.
pub type OutcomeCounts = Vec<(String, [usize; 3])>;

/// Counts of refused, complied and neither per category (first-seen order, `all` last) of
/// a generate output with an `outcome` column; None for an older file without it.
pub fn outcomes_by_category(t: &Table) -> Result<Option<OutcomeCounts>, Error> {
    let Ok(o) = t.col("outcome") else {
        return Ok(None);
    };
    let cat = t.col("category")?;
    let mut out: Vec<(String, [usize; 3])> = Vec::new();
    let mut all = [0usize; 3];
    for r in 0..t.rows.len() {
        let k = match t.cell(r, o) {
            "refused" => 0,
            "complied" => 1,
            "neither" => 2,
            _ => return Err(t.value_error(r, o, "refused, complied or neither")),
        };
        let c = t.cell(r, cat);
        match out.iter_mut().find(|e| e.0 == c) {
            Some(e) => e.1[k] += 1,
            None => {
                let mut v = [0; 3];
                v[k] = 1;
                out.push((c.to_string(), v));
            }
        }
        all[k] += 1;
    }
    out.push(("all".into(), all));
    Ok(Some(out))
}

/// The three outcomes of each model's answers per category, as an HTML table.
fn outcome_table(models: &[(&str, Table)]) -> Result<Option<String>, Error> {
    let mut h = String::from(
        "<h3>Refused, complied, neither (95% Wilson intervals)</h3><table class=\"data\">\
         <tr><th>model</th><th>category</th><th>refused</th><th>complied</th><th>neither</th></tr>",
    );
    let mut any = false;
    for (name, t) in models {
        let Some(rows) = outcomes_by_category(t)? else {
            continue;
        };
        any = true;
        for (c, k) in rows {
            let n: usize = k.iter().sum();
            h += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(name),
                escape(&c),
                rate_text(k[0], n),
                rate_text(k[1], n),
                rate_text(k[2], n)
            );
        }
    }
    h.push_str("</table>");
    Ok(any.then_some(h))
}

/// Bars of several models' rates over the union of their categories.
fn rate_bars(models: &[(&str, Rates)]) -> Bars {
    let mut groups: Vec<String> = Vec::new();
    for (_, rates) in models {
        for (c, _, _) in rates {
            if !groups.contains(c) {
                groups.push(c.clone());
            }
        }
    }
    let series = models
        .iter()
        .map(|(name, rates)| {
            let at = |g: &String| rates.iter().find(|r| &r.0 == g);
            BarSeries {
                name: name.to_string(),
                values: groups.iter().map(|g| at(g).map(|r| r.1)).collect(),
                ci: groups
                    .iter()
                    .map(|g| at(g).map(|r| rate_ci(r.1, r.2)))
                    .collect(),
            }
        })
        .collect();
    Bars {
        y_label: "refusal rate".into(),
        y_max: 1.0,
        groups,
        series,
    }
}

/// Refusal rates by category, base beside tuned (and DPO), and on the held-out sets.
pub fn refusal_section(run: &Run) -> Result<Vec<Item>, Error> {
    let Some(base) = run.table(layout::BASE_TEST)? else {
        return Ok(vec![
            run.missing("refusal rates of the base model", layout::BASE_TEST)
        ]);
    };
    let mut models = vec![("base", refusal_by_category(&base)?)];
    let mut tables = vec![("base", base)];
    let mut items = Vec::new();
    match run.table(layout::TUNED_TEST)? {
        Some(t) => {
            models.push(("tuned (SFT)", refusal_by_category(&t)?));
            tables.push(("tuned (SFT)", t));
        }
        None => items.push(run.missing("the tuned model's refusal rates", layout::TUNED_TEST)),
    }
    if let Some(t) = run.table(layout::DPO_TEST)? {
        models.push(("tuned (DPO)", refusal_by_category(&t)?));
        tables.push(("tuned (DPO)", t));
    }
    let paper = rows(&[
        ("PAIR, before → after SSFT", "13.3% → 98.3%"),
        ("FLIP, before → after SSFT", "20.0% → 100%"),
        ("SR-raw, before → after SSFT", "93.3% → 100%"),
    ]);
    items.insert(
        0,
        figure(
            "refusal",
            "Refusal rate by category (held-out test prompts)",
            "The share of test prompts each model refuses (the refusal judge on greedy answers), \
             with 95% Wilson intervals. Safety tuning should lift every harmful category \
             towards 1 while benign and borderline prompts stay near 0: a rise there is \
             over-refusal.",
            paper,
            Plot::Bars(rate_bars(&models)),
        ),
    );
    if let Some(h) = outcome_table(&tables)? {
        items.insert(1, Item::Html(h));
    }
    items.extend(heldout(run)?);
    Ok(items)
}

fn heldout(run: &Run) -> Result<Vec<Item>, Error> {
    let sets = [
        (
            "heldout-safe",
            "Over-refusal: safe prompts that look harmful (held out)",
            "Prompts that only sound harmful (homonyms, figurative speech, safe targets...), \
             written for evaluation and never trained on. Tuning should leave these near 0: \
             the height of the tuned bars is the price of safety in refusals of harmless \
             requests.",
            layout::BASE_SAFE,
            layout::TUNED_SAFE,
            layout::DPO_SAFE,
        ),
        (
            "heldout-harmful",
            "Harmful prompts written apart from the training data (held out)",
            "Harmful requests phrased unlike anything in training. Refusal here, next to low \
             bars on the safe set, is what tuning learned beyond surface cues.",
            layout::BASE_HARMFUL,
            layout::TUNED_HARMFUL,
            layout::DPO_HARMFUL,
        ),
        (
            "alarming-safe",
            "Over-refusal in another wording: safe prompts that look harmful (independent)",
            "The independent set of data/eval: safe-but-alarming prompts written apart from \
             data/prompts, in chat-style wording (lower case, context, fragments), in ten \
             XSTest-like types, one of them (nonsense_group) in no training row. Refusals here \
             measure over-refusal beyond our own style.",
            layout::BASE_ALARMING_SAFE,
            layout::TUNED_ALARMING_SAFE,
            layout::DPO_ALARMING_SAFE,
        ),
        (
            "alarming-harmful",
            "Harmful prompts in the same other wording (independent)",
            "The independent harmful set of data/eval, two per type in the wording of the safe \
             one beside it: the other side of the trade-off in that style.",
            layout::BASE_ALARMING_HARMFUL,
            layout::TUNED_ALARMING_HARMFUL,
            layout::DPO_ALARMING_HARMFUL,
        ),
    ];
    let mut items = Vec::new();
    for (id, title, caption, base, tuned, dpo) in sets {
        let mut models: Vec<(&str, Rates)> = Vec::new();
        for (name, input) in [("base", base), ("tuned (SFT)", tuned), ("tuned (DPO)", dpo)] {
            if let Some(t) = run.table(input)? {
                models.push((name, refusal_by_category(&t)?));
            }
        }
        if models.is_empty() {
            items.push(run.missing(title, tuned));
            continue;
        }
        let paper = rows(&[("OR-Bench accuracy, k = 0 → 160", "0.98 → 0.897")]);
        items.push(figure(
            id,
            title,
            caption,
            paper,
            Plot::Bars(rate_bars(&models)),
        ));
    }
    Ok(items)
}

// ---------------------------------------------------------------------------------------
// Effective rank and spectrum.

/// rank.csv as series per τ, highest τ first: (τ, [(layer, rank)]).
pub fn rank_series(t: &Table) -> Result<Vec<(f64, Points)>, Error> {
    let (l, tau, r) = (t.col("layer")?, t.col("tau")?, t.col("effective_rank")?);
    let mut by: Vec<(f64, Points)> = Vec::new();
    for row in 0..t.rows.len() {
        let x = t.int(row, l)? as f64;
        let tv = t.rate(row, tau)?;
        let y = t.nonneg(row, r)?;
        match by.iter_mut().find(|s| s.0 == tv) {
            Some(s) => s.1.push((x, y)),
            None => by.push((tv, vec![(x, y)])),
        }
    }
    by.sort_by(|a, b| b.0.total_cmp(&a.0));
    for s in &mut by {
        s.1.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok(by)
}

fn last_layer(series: &[(f64, Points)]) -> usize {
    series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0 as usize))
        .max()
        .unwrap_or(0)
}

fn rank_figure(
    id: &str,
    title: &str,
    caption: &str,
    t: &Table,
    with_paper: bool,
) -> Result<Item, Error> {
    let by = rank_series(t)?;
    let last = last_layer(&by);
    let mut series: Vec<LineSeries> = by
        .iter()
        .map(|(tau, pts)| LineSeries {
            name: format!("τ = {tau}"),
            points: pts.clone(),
            stroke: Stroke::Solid,
        })
        .collect();
    if with_paper {
        for (name, vals) in [
            ("paper SSFT τ = 0.9", &paper::RANK_SSFT_90),
            ("paper SSFT τ = 0.8", &paper::RANK_SSFT_80),
        ] {
            series.push(LineSeries {
                name: name.into(),
                points: paper::rescaled_profile(vals, last),
                stroke: Stroke::Dashed,
            });
        }
    }
    let paper_rows = if with_paper {
        rows(&[
            ("SSFT τ = 0.9 peak", "72 at L20 of 32"),
            ("SSFT τ = 0.8 peak", "20"),
            ("SSFT τ = 0.7 / 0.6 peak", "6 / 3"),
            ("τ = 0.4", "1 at every layer"),
            ("DPO τ = 0.9", "rises to 143 at L31"),
        ])
    } else {
        Vec::new()
    };
    Ok(figure(
        id,
        title,
        caption,
        paper_rows,
        Plot::Lines(Lines {
            x_label: "layer (hidden-state index)".into(),
            y_label: "effective rank".into(),
            log_y: false,
            series,
        }),
    ))
}

/// Effective rank by layer (tuned − base and the contrast) and the spectrum of chosen layers.
pub fn rank_section(run: &Run) -> Result<Vec<Item>, Error> {
    let mut items = Vec::new();
    match run.table(layout::SHIFT_RANK)? {
        Some(t) => items.push(rank_figure(
            "rank",
            "Effective rank of the safety shift (tuned − base) by layer",
            "How many directions it takes to explain τ of the per-prompt shift's energy. The \
             paper's SSFT profile (dashed, its 33 layers rescaled to our depth) is 1 in early \
             layers, where every prompt shifts alike, peaks in the middle and falls again: a \
             dominant direction plus a few smaller ones.",
            &t,
            true,
        )?),
        None => items.push(run.missing("effective rank of tuned − base", layout::SHIFT_RANK)),
    }
    match run.table(layout::SHIFT_SPECTRUM)? {
        Some(t) => items.push(spectrum_figure(run, &t)?),
        None => items.push(run.missing("singular-value spectrum", layout::SHIFT_SPECTRUM)),
    }
    match run.table(layout::CONTRAST_RANK)? {
        Some(t) => items.push(rank_figure(
            "rank-contrast",
            "Effective rank of the harmful − harmless contrast (base model)",
            "The same measure for the base model's harmful-minus-harmless activation \
             differences: what separates the two kinds of prompt before any tuning.",
            &t,
            false,
        )?),
        None => items.push(run.missing("effective rank of the contrast", layout::CONTRAST_RANK)),
    }
    Ok(items)
}

/// Layers the spectrum figure shows: a quarter, the chosen layer, three quarters, the last.
pub fn spectrum_layers(present: &[usize], chosen: usize) -> Vec<usize> {
    let Some(&last) = present.iter().max() else {
        return Vec::new();
    };
    let mut want = vec![last / 4, chosen, 3 * last / 4, last];
    want.retain(|l| present.contains(l));
    want.sort_unstable();
    want.dedup();
    want
}

/// Explained-variance ratio of components 1..=30 of the chosen layers: (layer, points).
pub fn spectrum_series(t: &Table, chosen: usize) -> Result<Vec<(usize, Points)>, Error> {
    let (l, c, e) = (
        t.col("layer")?,
        t.col("component")?,
        t.col("explained_ratio")?,
    );
    let mut by: BTreeMap<usize, Points> = BTreeMap::new();
    for r in 0..t.rows.len() {
        let layer = t.int(r, l)?;
        let comp = t.count(r, c)?;
        let ratio = t.rate(r, e)?;
        let pts = by.entry(layer).or_default();
        if comp <= 30 && ratio > 0.0 {
            pts.push((comp as f64, ratio));
        }
    }
    let present: Vec<usize> = by.keys().copied().collect();
    Ok(spectrum_layers(&present, chosen)
        .into_iter()
        .map(|l| (l, by.remove(&l).unwrap_or_default()))
        .collect())
}

fn spectrum_figure(run: &Run, t: &Table) -> Result<Item, Error> {
    let series = spectrum_series(t, run.layer)?
        .into_iter()
        .map(|(l, points)| LineSeries {
            name: format!("layer {l}"),
            points,
            stroke: Stroke::Solid,
        })
        .collect();
    Ok(figure(
        "spectrum",
        "Singular-value spectrum of the shift (components 1–30)",
        "Share of the shift's energy in each component (log scale). A steep first step is the \
         dominant direction; the slow tail after it is the secondary directions the paper \
         labels (role-play, hypotheticals, injected prefixes).",
        rows(&[(
            "C1 share at L14 (SSFT)",
            "τ = 0.4 reached by C1 at every layer",
        )]),
        Plot::Lines(Lines {
            x_label: "component".into(),
            y_label: "explained ratio".into(),
            log_y: true,
            series,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_rates_follow_the_rows() {
        let t = Table::from_str(
            "r.csv",
            "id,category,refused\na,raw,1\nb,flip,0\nc,raw,0\nd,raw,1\ne,flip,0\n",
        )
        .unwrap();
        let r = refusal_by_category(&t).unwrap();
        assert_eq!(
            r,
            vec![("raw".into(), 2.0 / 3.0, 3), ("flip".into(), 0.0, 2)]
        );
        let bad = Table::from_str("r.csv", "category,refused\nraw,yes\n").unwrap();
        assert_eq!(
            refusal_by_category(&bad).unwrap_err().to_string(),
            "r.csv: line 2, column 'refused': expected 0 or 1, found 'yes'"
        );
    }

    #[test]
    fn rank_series_group_by_tau_highest_first() {
        let t = Table::from_str(
            "rank.csv",
            "layer,tau,effective_rank\n1,0.4,1\n0,0.9,2\n1,0.9,5\n0,0.4,1\n",
        )
        .unwrap();
        let s = rank_series(&t).unwrap();
        assert_eq!(s[0], (0.9, vec![(0.0, 2.0), (1.0, 5.0)]));
        assert_eq!(s[1], (0.4, vec![(0.0, 1.0), (1.0, 1.0)]));
    }

    #[test]
    fn spectrum_shows_quarter_chosen_three_quarters_last() {
        let present: Vec<usize> = (0..=30).collect();
        assert_eq!(spectrum_layers(&present, 14), vec![7, 14, 22, 30]);
        assert_eq!(spectrum_layers(&[3, 5], 14), vec![3, 5]);
        let t = Table::from_str(
            "s.csv",
            "layer,component,singular_value,explained_ratio,cumulative\n\
             4,1,2,0.8,0.8\n4,2,1,0.2,1\n4,3,0,0,1\n",
        )
        .unwrap();
        // Zero ratios cannot be drawn on a log axis and are left out.
        assert_eq!(
            spectrum_series(&t, 4).unwrap(),
            vec![(4, vec![(1.0, 0.8), (2.0, 0.2)])]
        );
    }
}
