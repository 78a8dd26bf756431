//! Over-refusal that generalises (`make overrefusal`, `overrefusal.csv`): each safety-tuning
//! recipe's refusal of safe prompts against its refusal of harmful ones, on the held-out sets
//! of `data/prompts` and on the independent ones of `data/eval` (another wording), and the
//! held-out safe set per type (the leave-types-out recipe's left-out types among them).

use crate::figures::{figure, rows, Run};
use crate::layout;
use crate::model::{BarSeries, Bars, Item, LineSeries, Lines, Plot, Stroke};
use crate::table::Table;
use crate::Error;

/// The (safe, harmful) set pairs of a curve point, with their legend suffix.
const SET_PAIRS: [(&str, &str, &str); 2] = [
    ("heldout_safe", "heldout_harmful", "held-out sets"),
    ("alarming_safe", "alarming_harmful", "independent sets"),
];

/// One row of overrefusal.csv.
struct Row {
    recipe: String,
    set: String,
    kind: String,
    rate: f64,
}

fn read_rows(t: &Table) -> Result<Vec<Row>, Error> {
    let (r, s, k, rate) = (
        t.col("recipe")?,
        t.col("set")?,
        t.col("type")?,
        t.col("rate")?,
    );
    (0..t.rows.len())
        .map(|i| {
            Ok(Row {
                recipe: t.cell(i, r).to_string(),
                set: t.cell(i, s).to_string(),
                kind: t.cell(i, k).to_string(),
                rate: t.rate(i, rate)?,
            })
        })
        .collect()
}

fn recipes(rows: &[Row]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.contains(&r.recipe) {
            out.push(r.recipe.clone());
        }
    }
    out
}

fn rate_of(rows: &[Row], recipe: &str, set: &str, kind: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.recipe == recipe && r.set == set && r.kind == kind)
        .map(|r| r.rate)
}

/// One point per recipe and set pair: x = refusal of the safe set, y = refusal of the
/// harmful set (whole sets, type `all`); a pair with either set missing is skipped.
pub fn curve_series(t: &Table) -> Result<Vec<LineSeries>, Error> {
    let rows = read_rows(t)?;
    let mut out = Vec::new();
    for recipe in recipes(&rows) {
        for (safe, harmful, suffix) in SET_PAIRS {
            let x = rate_of(&rows, &recipe, safe, "all");
            let y = rate_of(&rows, &recipe, harmful, "all");
            if let (Some(x), Some(y)) = (x, y) {
                out.push(LineSeries {
                    name: format!("{recipe}, {suffix}"),
                    points: vec![(x, y)],
                    stroke: Stroke::Points,
                });
            }
        }
    }
    Ok(out)
}

/// Refusal of one safe set per type, one bar series per recipe (types in file order).
pub fn by_type(t: &Table, set: &str) -> Result<Bars, Error> {
    let rows = read_rows(t)?;
    let mut groups: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.set == set && r.kind != "all") {
        if !groups.contains(&r.kind) {
            groups.push(r.kind.clone());
        }
    }
    let series = recipes(&rows)
        .into_iter()
        .map(|recipe| BarSeries {
            values: groups
                .iter()
                .map(|g| rate_of(&rows, &recipe, set, g))
                .collect(),
            ci: Vec::new(),
            name: recipe,
        })
        .collect();
    Ok(Bars {
        y_label: "refusal rate".into(),
        y_max: 1.0,
        groups,
        series,
    })
}

/// The curve and the per-type bars, or one "stage not run" box.
pub fn overrefusal_items(run: &Run) -> Result<Vec<Item>, Error> {
    let Some(t) = run.table(layout::OVERREFUSAL)? else {
        return Ok(vec![run.missing(
            "the over-refusal curve of the SFT recipes",
            layout::OVERREFUSAL,
        )]);
    };
    let paper = rows(&[("OR-Bench accuracy, k = 0 → 160 (SSFT)", "0.98 → 0.897")]);
    Ok(vec![
        figure(
            "overrefusal-curve",
            "Over-refusal against refusal of harmful prompts, per SFT recipe",
            "Each recipe of make overrefusal (rows left out of training, other flags) as a \
             point: the share of safe-but-alarming prompts it refuses (x) and of harmful ones \
             (y), on our held-out sets and on the independent sets written in another wording \
             (data/eval). The goal is the top-left corner: x ≤ 0.15 with y ≥ 0.95.",
            paper.clone(),
            Plot::Lines(Lines {
                x_label: "safe prompts refused".into(),
                y_label: "harmful prompts refused".into(),
                log_y: false,
                series: curve_series(&t)?,
            }),
        ),
        figure(
            "overrefusal-types",
            "Held-out safe prompts refused, per type and recipe",
            "The held-out safe set by type: the leave-types-out recipe (lto) never trained on \
             rows of its left-out types, so its bars there show how the boundary carries over \
             to types it has not seen.",
            paper,
            Plot::Bars(by_type(&t, "heldout_safe")?),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "recipe,set,type,n,refused,rate\n\
        tuned,heldout_safe,homonym,2,1,0.5\ntuned,heldout_safe,all,4,1,0.25\n\
        tuned,heldout_harmful,all,4,4,1.0\ntuned,alarming_safe,all,10,3,0.3\n\
        lto,heldout_safe,homonym,2,2,1.0\nlto,heldout_safe,all,4,2,0.5\n\
        lto,heldout_harmful,all,4,3,0.75\n";

    #[test]
    fn curve_points_pair_a_safe_set_with_its_harmful_set() {
        let t = Table::from_str("overrefusal.csv", CSV).unwrap();
        let s = curve_series(&t).unwrap();
        // tuned's independent pair lacks alarming_harmful: no point for it.
        let names: Vec<&str> = s.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["tuned, held-out sets", "lto, held-out sets"]);
        assert_eq!(s[0].points, vec![(0.25, 1.0)]);
        assert_eq!(s[1].points, vec![(0.5, 0.75)]);
        assert_eq!(s[1].stroke, Stroke::Points);
    }

    #[test]
    fn type_bars_leave_out_the_whole_set_row() {
        let t = Table::from_str("overrefusal.csv", CSV).unwrap();
        let b = by_type(&t, "heldout_safe").unwrap();
        assert_eq!(b.groups, ["homonym"]);
        assert_eq!(b.series[1].name, "lto");
        assert_eq!(b.series[1].values, vec![Some(1.0)]);
    }

    #[test]
    fn a_rate_that_is_not_a_number_names_its_line() {
        let t = Table::from_str(
            "overrefusal.csv",
            "recipe,set,type,n,refused,rate\ntuned,heldout_safe,all,4,1,x\n",
        )
        .unwrap();
        let e = curve_series(&t).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("rate"), "{e}");
    }
}
