//! The numbers the README quotes, computed from the run's files in one place so the README
//! can be checked against them (`numbers.csv`, `numbers.md`).

use std::fmt::Write as _;

use crate::figures::Run;
use crate::figures::{rate_ci, rate_text};
use crate::html::escape;
use crate::interact::{is_baseline, prune_rows, sweep_rows, PruneRow, SweepRow};
use crate::layout::{self, Input};
use crate::table::Table;
use crate::Error;
use hd_analysis::stats::disjoint;

/// One quoted number.
#[derive(Debug, Clone, PartialEq)]
pub struct Number {
    /// Stable key (the README quotes by key).
    pub key: &'static str,
    /// What it is.
    pub what: &'static str,
    /// Our value, formatted; None when its stage has not run.
    pub ours: Option<String>,
    /// The paper's value for the same thing.
    pub paper: &'static str,
    /// The file it comes from.
    pub source: Input,
}

/// A rate of `n` with its 95% Wilson interval: `12.3% [8.1, 17.0]`.
fn pct_ci(x: f64, n: f64) -> String {
    let (lo, hi) = rate_ci(x, n as usize);
    format!("{:.1}% [{:.1}, {:.1}]", 100.0 * x, 100.0 * lo, 100.0 * hi)
}

/// Whether the intervals of two rates of `n` leave a gap: only then is the difference called
/// a finding.
fn finding(a: f64, b: f64, na: f64, nb: f64) -> &'static str {
    if disjoint(rate_ci(a, na as usize), rate_ci(b, nb as usize)) {
        "intervals disjoint: a finding"
    } else {
        "intervals overlap: not a finding"
    }
}

/// Refused and all rows whose `label` is `harmful`.
pub fn harmful_refusal_counts(t: &Table) -> Result<(usize, usize), Error> {
    let (label, refused) = (t.col("label")?, t.col("refused")?);
    let (mut k, mut n) = (0usize, 0usize);
    for r in 0..t.rows.len() {
        if t.cell(r, label) == "harmful" {
            n += 1;
            k += usize::from(t.flag(r, refused)?);
        }
    }
    Ok((k, n))
}

/// Refusal rate over the rows whose `label` is `harmful`.
pub fn harmful_refusal(t: &Table) -> Result<f64, Error> {
    let (k, n) = harmful_refusal_counts(t)?;
    Ok(k as f64 / n.max(1) as f64)
}

/// The layer where C1 is most accurate: (layer, c1_acc, probe_acc there).
pub fn best_c1(t: &Table) -> Result<Option<(usize, f64, Option<f64>)>, Error> {
    let (l, c1, probe) = (t.col("layer")?, t.col("c1_acc")?, t.col("probe_acc")?);
    let mut best: Option<(usize, f64, Option<f64>)> = None;
    for r in 0..t.rows.len() {
        let Some(v) = t.opt_rate(r, c1)? else {
            continue;
        };
        if best.is_none_or(|b| v > b.1) {
            best = Some((t.int(r, l)?, v, t.opt_rate(r, probe)?));
        }
    }
    Ok(best)
}

/// The single-component intervention that raises the `all` pass rate most over `none`,
/// degenerate runs excluded: (spec, before, after, n). Generated pass rates when both runs
/// have them, else first-token.
pub fn strongest_effect(t: &Table) -> Result<Option<(String, f64, f64, f64)>, Error> {
    Ok(strongest(t)?.map(|(none, r)| {
        let (b, a) = pass_pair(&none, &r);
        (r.spec, b, a, r.n)
    }))
}

/// The pass rates of `none` and a run: generated when both have them, else first-token.
fn pass_pair(none: &SweepRow, r: &SweepRow) -> (f64, f64) {
    match (none.generated, r.generated) {
        (Some(b), Some(a)) => (b, a),
        _ => (none.first_token, r.first_token),
    }
}

/// The strongest single-component run, as [`strongest_effect`] picks it: (none's row, its
/// row) on `all`.
fn strongest(t: &Table) -> Result<Option<(SweepRow, SweepRow)>, Error> {
    let rows = sweep_rows(t)?;
    let Some(none) = rows
        .iter()
        .find(|r| r.spec == "none" && r.category == "all")
    else {
        return Ok(None);
    };
    let mut best: Option<SweepRow> = None;
    for r in rows
        .iter()
        .filter(|r| r.category == "all" && !is_baseline(&r.spec))
    {
        if r.degenerate {
            continue;
        }
        let (b, a) = pass_pair(none, r);
        if best
            .as_ref()
            .is_none_or(|x: &SweepRow| a - b > pass_pair(none, x).1 - pass_pair(none, x).0)
        {
            best = Some(r.clone());
        }
    }
    Ok(best.map(|r| (none.clone(), r)))
}

/// The strongest component's line: pass rates before and after with intervals, the
/// finding rule, and the complied share when the sweep judged outcomes.
fn strongest_text(none: &SweepRow, r: &SweepRow) -> String {
    let (b, a) = pass_pair(none, r);
    let mut s = format!(
        "{}: {} → {} (n = {}; {})",
        r.spec,
        pct_ci(b, none.n),
        pct_ci(a, r.n),
        r.n,
        finding(b, a, none.n, r.n)
    );
    if let (Some((cb, _)), Some((ca, na))) = (none.outcomes, r.outcomes) {
        s += &format!(
            "; complied {} → {}, neither {}",
            pct_ci(cb, none.n),
            pct_ci(ca, r.n),
            pct_ci(na, r.n)
        );
    }
    s
}

/// Attribution vs random token-prune success on `all` (first-token), and the number of
/// candidates.
pub fn prune_vs_random(t: &Table) -> Result<Option<(f64, f64, f64)>, Error> {
    Ok(prune_pair(t)?.map(|(a, r)| (a.first_token, r.first_token, a.n)))
}

fn prune_pair(t: &Table) -> Result<Option<(PruneRow, PruneRow)>, Error> {
    let rows = prune_rows(t)?;
    let get = |m: &str| {
        rows.iter()
            .find(|r| r.method == m && r.category == "all")
            .cloned()
    };
    Ok(get("attribution").zip(get("random")))
}

/// Attribution vs random: first-token success with intervals over their trials, the finding
/// rule, and attribution's confirmed answers split when judged.
fn prune_text(a: &PruneRow, r: &PruneRow) -> String {
    let mut s = format!(
        "{} vs {} (n = {}, random {} trials; {})",
        pct_ci(a.first_token, a.trials),
        pct_ci(r.first_token, r.trials),
        a.n,
        r.trials,
        finding(a.first_token, r.first_token, a.trials, r.trials)
    );
    if let Some((c, n)) = a.outcomes {
        s += &format!(
            "; attribution's answers complied {}, neither {}",
            pct_ci(c, a.trials),
            pct_ci(n, a.trials)
        );
    }
    s
}

/// Every quoted number, in README order.
pub fn numbers(run: &Run) -> Result<Vec<Number>, Error> {
    let refusal = |input: Input| -> Result<Option<String>, Error> {
        Ok(match run.table(input)? {
            Some(t) => {
                let (k, n) = harmful_refusal_counts(&t)?;
                Some(rate_text(k, n))
            }
            None => None,
        })
    };
    let c1 = match run.table(layout::LAYERS)? {
        Some(t) => best_c1(&t)?,
        None => None,
    };
    let effect = match run.table(layout::SWEEP)? {
        Some(t) => strongest(&t)?,
        None => None,
    };
    let prune = match run.table(layout::PRUNE)? {
        Some(t) => prune_pair(&t)?,
        None => None,
    };
    Ok(vec![
        Number {
            key: "refusal_before",
            what: "refusal of harmful test prompts, base model",
            ours: refusal(layout::BASE_TEST)?,
            paper: "PAIR 13.3%, FLIP 20.0%, raw 93.3%",
            source: layout::BASE_TEST,
        },
        Number {
            key: "refusal_after",
            what: "refusal of harmful test prompts, tuned model",
            ours: refusal(layout::TUNED_TEST)?,
            paper: "PAIR 98.3%, FLIP 100%, raw 100%",
            source: layout::TUNED_TEST,
        },
        Number {
            key: "c1_vs_probe",
            what: "C1 accuracy at its best layer, and the probe's there",
            ours: c1.map(|(l, a, p)| {
                let probe = p.map(|p| format!("{p:.3}")).unwrap_or_else(|| "n/a".into());
                format!("C1 {a:.3} vs probe {probe} (layer {l})")
            }),
            paper: "C1 0.989 (L20) vs probe 0.98–0.99",
            source: layout::LAYERS,
        },
        Number {
            key: "strongest_component",
            what: "strongest single-component jailbreak (pass rate, all swept prompts)",
            ours: effect.map(|(none, r)| strongest_text(&none, &r)),
            paper: "−L14-C6: PAIR 1.7% → 51.7%",
            source: layout::SWEEP,
        },
        Number {
            key: "prune_vs_random",
            what: "token-prune success, attribution vs random deletion",
            ours: prune.map(|(a, r)| prune_text(&a, &r)),
            paper: "n/a (LLM rewriting: 30% pass at k = 160)",
            source: layout::PRUNE,
        },
    ])
}

/// numbers.csv.
pub fn to_csv(numbers: &[Number]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(["key", "what", "ours", "paper", "source"]);
    for n in numbers {
        let _ = w.write_record([
            n.key,
            n.what,
            n.ours.as_deref().unwrap_or(""),
            n.paper,
            n.source.path,
        ]);
    }
    w.into_inner().unwrap_or_default()
}

/// numbers.md: the table the README carries.
pub fn to_markdown(numbers: &[Number]) -> String {
    let mut s = String::from("| number | ours | paper |\n|---|---|---|\n");
    for n in numbers {
        let ours = match &n.ours {
            Some(v) => v.clone(),
            None => format!("not run (`{}`)", n.source.make),
        };
        let _ = writeln!(s, "| {} | {} | {} |", n.what, ours, n.paper);
    }
    s
}

/// The numbers as an HTML table.
pub fn to_html(numbers: &[Number]) -> String {
    let mut s = String::from(
        "<table class=\"data numbers\"><tr><th>number</th><th>ours</th><th>paper</th></tr>",
    );
    for n in numbers {
        let ours = match &n.ours {
            Some(v) => escape(v),
            None => format!(
                "<span class=\"notrun\">stage not run: <code>{}</code></span>",
                escape(n.source.make)
            ),
        };
        let _ = write!(
            s,
            "<tr id=\"num-{}\"><td>{}</td><td>{}</td><td>{}</td></tr>",
            n.key,
            escape(n.what),
            ours,
            escape(n.paper)
        );
    }
    s.push_str("</table>");
    s
}
