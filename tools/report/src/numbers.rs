//! The numbers the README quotes, computed from the run's files in one place so the README
//! can be checked against them (`numbers.csv`, `numbers.md`).

use std::fmt::Write as _;

use crate::figures::Run;
use crate::html::escape;
use crate::interact::{is_baseline, prune_rows, sweep_rows};
use crate::layout::{self, Input};
use crate::table::Table;
use crate::Error;

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

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// Refusal rate over the rows whose `label` is `harmful`.
pub fn harmful_refusal(t: &Table) -> Result<f64, Error> {
    let (label, refused) = (t.col("label")?, t.col("refused")?);
    let (mut k, mut n) = (0usize, 0usize);
    for r in 0..t.rows.len() {
        if t.cell(r, label) == "harmful" {
            n += 1;
            k += usize::from(t.flag(r, refused)?);
        }
    }
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
/// degenerate runs excluded: (spec, before, after). Generated pass rates when both runs have
/// them, else first-token.
pub fn strongest_effect(t: &Table) -> Result<Option<(String, f64, f64, f64)>, Error> {
    let rows = sweep_rows(t)?;
    let Some(none) = rows
        .iter()
        .find(|r| r.spec == "none" && r.category == "all")
    else {
        return Ok(None);
    };
    let mut best: Option<(String, f64, f64, f64)> = None;
    for r in rows
        .iter()
        .filter(|r| r.category == "all" && !is_baseline(&r.spec))
    {
        if r.degenerate {
            continue;
        }
        let (b, a) = match (none.generated, r.generated) {
            (Some(b), Some(a)) => (b, a),
            _ => (none.first_token, r.first_token),
        };
        if best.as_ref().is_none_or(|x| a - b > x.2 - x.1) {
            best = Some((r.spec.clone(), b, a, r.n));
        }
    }
    Ok(best)
}

/// Attribution vs random token-prune success on `all` (first-token), and the number of
/// candidates.
pub fn prune_vs_random(t: &Table) -> Result<Option<(f64, f64, f64)>, Error> {
    let rows = prune_rows(t)?;
    let get = |m: &str| rows.iter().find(|r| r.method == m && r.category == "all");
    Ok(get("attribution")
        .zip(get("random"))
        .map(|(a, r)| (a.first_token, r.first_token, a.n)))
}

/// Every quoted number, in README order.
pub fn numbers(run: &Run) -> Result<Vec<Number>, Error> {
    let refusal = |input: Input| -> Result<Option<String>, Error> {
        Ok(match run.table(input)? {
            Some(t) => Some(pct(harmful_refusal(&t)?)),
            None => None,
        })
    };
    let c1 = match run.table(layout::LAYERS)? {
        Some(t) => best_c1(&t)?,
        None => None,
    };
    let effect = match run.table(layout::SWEEP)? {
        Some(t) => strongest_effect(&t)?,
        None => None,
    };
    let prune = match run.table(layout::PRUNE)? {
        Some(t) => prune_vs_random(&t)?,
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
            ours: effect.map(|(s, b, a, n)| format!("{s}: {} → {} (n = {n})", pct(b), pct(a))),
            paper: "−L14-C6: PAIR 1.7% → 51.7%",
            source: layout::SWEEP,
        },
        Number {
            key: "prune_vs_random",
            what: "token-prune success, attribution vs random deletion",
            ours: prune.map(|(a, r, n)| format!("{} vs {} (n = {n})", pct(a), pct(r))),
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
