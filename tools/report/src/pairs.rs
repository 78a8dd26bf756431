//! The study's other pairs and its exposure sweep in the report: the SFT and DPO pairs' rank
//! profiles and C1 accuracies side by side, pass rate and over-refusal as the number of
//! jailbreak rows in training grows (`make tuned-dpo`, `make exposure`), and the guard pair
//! (the paper's own SSFT objective, `make tuned-guard`) beside the paper's SSFT.

use crate::figures::{figure, layer_column, rank_series, rows, Points, Run};
use crate::layout;
use crate::model::{Item, LineSeries, Lines, Plot, Stroke};
use crate::paper;
use crate::table::Table;
use crate::Error;

/// The τ of the side-by-side rank profiles (the paper's figure).
pub const PAIR_TAU: f64 = 0.9;

/// One rank.csv's profile at τ (empty when that τ is absent).
pub fn rank_at(t: &Table, tau: f64) -> Result<Points, Error> {
    Ok(rank_series(t)?
        .into_iter()
        .find(|(v, _)| (v - tau).abs() < 1e-9)
        .map(|(_, p)| p)
        .unwrap_or_default())
}

fn line(name: &str, points: Points, stroke: Stroke) -> LineSeries {
    LineSeries {
        name: name.to_string(),
        points,
        stroke,
    }
}

fn rank_pairs(sft: &Table, dpo: &Table, dpo_over_sft: Option<&Table>) -> Result<Item, Error> {
    let s = rank_at(sft, PAIR_TAU)?;
    let last = s.iter().map(|p| p.0 as usize).max().unwrap_or(0);
    let mut series = vec![
        line("SFT", s, Stroke::Solid),
        line("DPO", rank_at(dpo, PAIR_TAU)?, Stroke::Solid),
    ];
    if let Some(d) = dpo_over_sft {
        series.push(line("DPO − SFT", rank_at(d, PAIR_TAU)?, Stroke::Solid));
    }
    series.push(line(
        "paper SSFT",
        paper::rescaled_profile(&paper::RANK_SSFT_90, last),
        Stroke::Dashed,
    ));
    series.push(line(
        "paper DPO",
        paper::rescaled_profile(&paper::RANK_DPO_90, last),
        Stroke::Dashed,
    ));
    Ok(figure(
        "rank-pairs",
        "Effective rank of the shift, SFT beside DPO (τ = 0.9)",
        "The same measure for both fine-tuning methods on the same rows, each against the \
         base model; DPO starts from the SFT model (make tuned-dpo), so DPO − SFT is what DPO \
         itself changed. The paper's shapes: SSFT rises to a peak in the middle layers and \
         falls; DPO keeps rising into the last layers. The paper's series dashed, rescaled to \
         our depth.",
        rows(&[
            ("SSFT τ = 0.9 peak", "72 at L20 of 32"),
            ("DPO τ = 0.9", "rises to 143 at L31"),
        ]),
        Plot::Lines(Lines {
            x_label: "layer (hidden-state index)".into(),
            y_label: "effective rank".into(),
            log_y: false,
            series,
        }),
    ))
}

fn c1_pairs(sft: &Table, dpo: &Table) -> Result<Item, Error> {
    let series = vec![
        line("C1, SFT pair", layer_column(sft, "c1_acc")?, Stroke::Solid),
        line("C1, DPO pair", layer_column(dpo, "c1_acc")?, Stroke::Solid),
        line("probe", layer_column(sft, "probe_acc")?, Stroke::Dashed),
    ];
    Ok(figure(
        "c1-pairs",
        "C1 as a refusal classifier, SFT and DPO pairs",
        "Accuracy of each pair's dominant direction on the base model's activations, beside \
         the probe trained on the same activations (the same for both pairs). The paper has \
         C1 within a few points of the probe from the middle layers on.",
        rows(&[("C1 at L14 / L20 (SSFT)", "0.946 / 0.989")]),
        Plot::Lines(Lines {
            x_label: "layer (hidden-state index)".into(),
            y_label: "accuracy".into(),
            log_y: false,
            series,
        }),
    ))
}

/// exposure.csv as lines over k: the pass rate of each attack category (in file order), then
/// the over-refusal on the held-out safe set.
pub fn exposure_series(t: &Table) -> Result<Vec<LineSeries>, Error> {
    let (k, cat, pass, over) = (
        t.col("k")?,
        t.col("category")?,
        t.col("pass_rate")?,
        t.col("over_refusal")?,
    );
    let mut out: Vec<LineSeries> = Vec::new();
    let mut over_pts: Points = Vec::new();
    for r in 0..t.rows.len() {
        let x = t.int(r, k)? as f64;
        let name = t.cell(r, cat);
        let y = t.rate(r, pass)?;
        match out.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push((x, y)),
            None => out.push(line(name, vec![(x, y)], Stroke::Solid)),
        }
        if over_pts.last().is_none_or(|p| p.0 != x) {
            over_pts.push((x, t.rate(r, over)?));
        }
    }
    out.push(line(
        "over-refusal (held-out safe)",
        over_pts,
        Stroke::Dashed,
    ));
    Ok(out)
}

fn exposure_figure(t: &Table) -> Result<Item, Error> {
    Ok(figure(
        "exposure",
        "Attack pass rate as jailbreak rows join the training set",
        "One model per k (jailbreak rows of each wrapper in safety tuning): the share of test \
         prompts of each attack that are not refused, and (dashed) the share of held-out safe \
         prompts that are. The paper's SSFT: exposure drives most attacks towards 0 while \
         refusal of safe prompts creeps up.",
        rows(&[
            ("flip, k = 0 → 160", ".783 → .033"),
            ("PAIR, k = 0 → 160", ".817 → .05"),
            ("OR-Bench accuracy, k = 0 → 160", ".98 → .897"),
        ]),
        Plot::Lines(Lines {
            x_label: "k (jailbreak rows per wrapper in training)".into(),
            y_label: "rate".into(),
            log_y: false,
            series: exposure_series(t)?,
        }),
    ))
}

/// The guard pair's rank profile beside the paper's SSFT series (and the chat SFT pair's,
/// when it exists).
fn rank_guard(guard: &Table, sft: Option<&Table>) -> Result<Item, Error> {
    let g = rank_at(guard, PAIR_TAU)?;
    let last = g.iter().map(|p| p.0 as usize).max().unwrap_or(0);
    let mut series = vec![line("guard SSFT", g, Stroke::Solid)];
    if let Some(s) = sft {
        series.push(line("chat SFT", rank_at(s, PAIR_TAU)?, Stroke::Solid));
    }
    series.push(line(
        "paper SSFT",
        paper::rescaled_profile(&paper::RANK_SSFT_90, last),
        Stroke::Dashed,
    ));
    Ok(figure(
        "rank-guard",
        "Effective rank of the guard pair's shift (τ = 0.9)",
        "The paper's own fine-tuning: a guard-style classifier (make tuned-guard), its shift \
         taken at the guard template's last token, beside the chat SFT pair and the paper's \
         SSFT series (dashed, rescaled to our depth).",
        rows(&[("SSFT τ = 0.9 peak", "72 at L20 of 32")]),
        Plot::Lines(Lines {
            x_label: "layer (hidden-state index)".into(),
            y_label: "effective rank".into(),
            log_y: false,
            series,
        }),
    ))
}

/// The guard pair's C1 under both labellings beside the probe (and the chat SFT pair's C1).
fn c1_guard(truth: &Table, other: [Option<&Table>; 3]) -> Result<Item, Error> {
    let [base, centered, sft] = other;
    let mut series = vec![line(
        "C1, guard pair (ground truth)",
        layer_column(truth, "c1_acc")?,
        Stroke::Solid,
    )];
    if let Some(c) = centered {
        series.push(line(
            "C1, guard pair, shift centred (ground truth)",
            layer_column(c, "c1_acc")?,
            Stroke::Solid,
        ));
    }
    // Empty when the base model never prefers one verdict (the labelling is undefined).
    if let Some(b) = base.map(|b| layer_column(b, "c1_acc")).transpose()? {
        if !b.is_empty() {
            series.push(line(
                "C1, guard pair (base model's verdicts)",
                b,
                Stroke::Solid,
            ));
        }
    }
    if let Some(s) = sft {
        series.push(line(
            "C1, chat SFT pair",
            layer_column(s, "c1_acc")?,
            Stroke::Solid,
        ));
    }
    series.push(line(
        "probe (guard template, ground truth)",
        layer_column(truth, "probe_acc")?,
        Stroke::Dashed,
    ));
    Ok(figure(
        "c1-guard",
        "C1 as a classifier, guard pair",
        "Accuracy of the guard pair's dominant direction on the base model's activations in \
         the guard template: against the prompts' labels, and against the base model's own \
         next-token preference of unsafe over safe (the paper labels by its base guard's \
         verdicts). The probe is trained on the same activations.",
        rows(&[("C1 at L14 / L20 (SSFT)", "0.946 / 0.989")]),
        Plot::Lines(Lines {
            x_label: "layer (hidden-state index)".into(),
            y_label: "accuracy".into(),
            log_y: false,
            series,
        }),
    ))
}

fn guard_items(run: &Run, items: &mut Vec<Item>) -> Result<(), Error> {
    match run.table(layout::GUARD_RANK)? {
        Some(g) => items.push(rank_guard(&g, run.table(layout::SHIFT_RANK)?.as_ref())?),
        None => items.push(run.missing("the guard pair's rank profile", layout::GUARD_RANK)),
    }
    match run.table(layout::GUARD_LAYERS)? {
        Some(t) => items.push(c1_guard(
            &t,
            [
                run.table(layout::GUARD_BASE_LAYERS)?.as_ref(),
                run.table(layout::GUARD_CENTERED_LAYERS)?.as_ref(),
                run.table(layout::LAYERS)?.as_ref(),
            ],
        )?),
        None => items.push(run.missing("C1 accuracy of the guard pair", layout::GUARD_LAYERS)),
    }
    Ok(())
}

/// Both pairs side by side, the exposure sweep and the guard pair.
pub fn pairs_section(run: &Run) -> Result<Vec<Item>, Error> {
    let mut items = Vec::new();
    match (run.table(layout::SHIFT_RANK)?, run.table(layout::DPO_RANK)?) {
        (Some(s), Some(d)) => items.push(rank_pairs(
            &s,
            &d,
            run.table(layout::DPO_OVER_SFT_RANK)?.as_ref(),
        )?),
        _ => items.push(run.missing("the SFT and DPO rank profiles", layout::DPO_RANK)),
    }
    match (run.table(layout::LAYERS)?, run.table(layout::DPO_LAYERS)?) {
        (Some(s), Some(d)) => items.push(c1_pairs(&s, &d)?),
        _ => items.push(run.missing("C1 accuracy of both pairs", layout::DPO_LAYERS)),
    }
    match run.table(layout::EXPOSURE)? {
        Some(t) => items.push(exposure_figure(&t)?),
        None => items.push(run.missing("the exposure sweep", layout::EXPOSURE)),
    }
    guard_items(run, &mut items)?;
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_lines_follow_the_rows() {
        let t = Table::from_str(
            "exposure.csv",
            "k,category,pass_rate,over_refusal,rank_l1\n\
             0,raw,0.1,0.2,3\n0,flip,0.5,0.2,3\n10,raw,0.0,0.25,4\n10,flip,0.1,0.25,4\n",
        )
        .unwrap();
        let s = exposure_series(&t).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].name.as_str(), &s[0].points),
            ("raw", &vec![(0.0, 0.1), (10.0, 0.0)])
        );
        assert_eq!(s[1].points, vec![(0.0, 0.5), (10.0, 0.1)]);
        assert_eq!(s[2].points, vec![(0.0, 0.2), (10.0, 0.25)]);
        assert_eq!(s[2].stroke, Stroke::Dashed);
        let bad = Table::from_str(
            "exposure.csv",
            "k,category,pass_rate,over_refusal\nx,raw,0,0\n",
        )
        .unwrap();
        assert!(exposure_series(&bad)
            .unwrap_err()
            .to_string()
            .contains("line 2, column 'k'"));
    }

    #[test]
    fn pairs_read_one_tau_and_one_column() {
        let r = Table::from_str(
            "rank.csv",
            "layer,tau,effective_rank\n0,0.4,1\n0,0.9,2\n1,0.9,7\n1,0.4,1\n",
        )
        .unwrap();
        assert_eq!(rank_at(&r, 0.9).unwrap(), vec![(0.0, 2.0), (1.0, 7.0)]);
        assert!(rank_at(&r, 0.5).unwrap().is_empty());
        let l =
            Table::from_str("layers.csv", "layer,c1_acc,probe_acc\n0,0.5,\n1,0.7,0.9\n").unwrap();
        assert_eq!(layer_column(&l, "probe_acc").unwrap(), vec![(1.0, 0.9)]);
        assert_eq!(
            layer_column(&l, "c1_acc").unwrap(),
            vec![(0.0, 0.5), (1.0, 0.7)]
        );
    }
}
