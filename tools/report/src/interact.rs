//! dir-interact's and token-prune's outputs in the report: relevance between layers, the
//! network of strongest edges, intervention pass rates and token-prune success.

use hd_formats::components::ComponentId;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::figures::{rate_ci, Run};
use crate::html::escape;
use crate::layout;
use crate::model::{BarSeries, Bars, Edge, Figure, Heatmap, Item, Network, Plot};
use crate::table::Table;
use crate::Error;

/// relevance.csv (category `all`) between `target − 1` and `target` as a source × target
/// matrix; when that pair is absent, the first target layer in the file.
pub fn relevance_heatmap(t: &Table, target: usize) -> Result<Option<Heatmap>, Error> {
    let (sl, sc, tl, tc, cat, mean) = (
        t.col("source_layer")?,
        t.col("source_component")?,
        t.col("target_layer")?,
        t.col("target_component")?,
        t.col("category")?,
        t.col("mean")?,
    );
    let mut cells: BTreeMap<(usize, usize, usize, usize), f64> = BTreeMap::new();
    for r in 0..t.rows.len() {
        if t.cell(r, cat) != "all" {
            continue;
        }
        let (l, s) = (t.int(r, tl)?, t.int(r, sl)?);
        let key = (l, s, t.component(r, sc, s)?, t.component(r, tc, l)?);
        cells.insert(key, t.num(r, mean)?);
    }
    let pair = cells
        .keys()
        .map(|k| (k.0, k.1))
        .find(|&(l, s)| l == target && s + 1 == target)
        .or_else(|| cells.keys().next().map(|k| (k.0, k.1)));
    let Some((tl, sl)) = pair else {
        return Ok(None);
    };
    let in_pair: Vec<(usize, usize, f64)> = cells
        .iter()
        .filter(|(k, _)| k.0 == tl && k.1 == sl)
        .map(|(k, &v)| (k.2, k.3, v))
        .collect();
    let ks = in_pair.iter().map(|x| x.0).max().unwrap_or(0);
    let kt = in_pair.iter().map(|x| x.1).max().unwrap_or(0);
    let mut values = vec![vec![None; kt]; ks];
    for &(s, tcomp, v) in &in_pair {
        values[s - 1][tcomp - 1] = Some(v);
    }
    let span = in_pair.iter().map(|x| x.2.abs()).fold(0.0, f64::max);
    Ok(Some(Heatmap {
        row_label: format!("source: layer {sl}"),
        col_label: format!("target: layer {tl}"),
        rows: (1..=ks)
            .map(|k| ComponentId::new(sl, k).to_string())
            .collect(),
        cols: (1..=kt)
            .map(|k| ComponentId::new(tl, k).to_string())
            .collect(),
        values,
        center: 0.0,
        span: if span > 0.0 { span } else { 1.0 },
    }))
}

/// The deepest target layer of relevance.csv.
pub fn last_target_layer(t: &Table) -> Result<Option<usize>, Error> {
    let tl = t.col("target_layer")?;
    let mut last = None;
    for r in 0..t.rows.len() {
        last = last.max(Some(t.int(r, tl)?));
    }
    Ok(last)
}

/// Heatmaps at the chosen layer and at the last layer pair (the paper: late layers are
/// diagonal-dominant, each component feeding its own successor).
fn relevance_figures(t: &Table, layer: usize) -> Result<Vec<Item>, Error> {
    let paper = [
        ("L13-C3 → L14-C4", "1.178"),
        ("L13-C2 → L14-C2", "0.669"),
        ("late layers", "diagonal 0.5–0.8"),
    ];
    let Some(h) = relevance_heatmap(t, layer)? else {
        return Ok(vec![Item::Html(
            "<p class=\"note\">relevance.csv has no rows of category all.</p>".into(),
        )]);
    };
    let mut items = vec![fig(
        "relevance",
        "How components of one layer feed the next (relevance, all prompts)",
        "Mean relevance R(k→j) = z_k (v_k·g) of each source component for each target \
         component at the last prompt token. Off-diagonal red cells are earlier secondary \
         directions promoting a later one; blue cells suppress it.",
        &paper,
        Plot::Heatmap(h.clone()),
    )];
    if let Some(last) = last_target_layer(t)? {
        match relevance_heatmap(t, last)? {
            Some(late) if late != h => items.push(fig(
                "relevance-late",
                "The same between the last two layers",
                "Late in the network each component mostly feeds its own successor (a strong \
                 diagonal): the directions are already formed and only carried forward.",
                &paper[2..],
                Plot::Heatmap(late),
            )),
            _ => {}
        }
    }
    Ok(items)
}

/// edges.csv as network edges, in file order.
pub fn network(t: &Table) -> Result<Network, Error> {
    let (s, d, v) = (t.col("source")?, t.col("target")?, t.col("relevance")?);
    let mut edges = Vec::new();
    for r in 0..t.rows.len() {
        let (src, dst) = (t.component_id(r, s)?, t.component_id(r, d)?);
        edges.push(Edge {
            source_layer: src.layer,
            source_comp: src.k,
            target_layer: dst.layer,
            target_comp: dst.k,
            value: t.num(r, v)?,
        });
    }
    Ok(Network { edges })
}

fn fig(id: &str, title: &str, caption: &str, paper: &[(&str, &str)], plot: Plot) -> Item {
    Item::Figure(Figure {
        id: id.into(),
        title: title.into(),
        caption: caption.into(),
        paper: paper
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        plot,
    })
}

/// Relevance heatmap, network, intervention sweep.
pub fn interact_section(run: &Run) -> Result<Vec<Item>, Error> {
    let mut items = Vec::new();
    match run.table(layout::RELEVANCE)? {
        Some(t) => items.extend(relevance_figures(&t, run.layer)?),
        None => items.push(run.missing("component relevance between layers", layout::RELEVANCE)),
    }
    match run.table(layout::EDGES)? {
        Some(t) => items.push(fig(
            "network",
            "The strongest edges between components across layers",
            "Each column is a layer, each dot a component (C1 at the top); a line is one of the \
             strongest relevance edges, its width |R| (red: promotes, blue: suppresses). Chains \
             that end in a late C1 are the paths by which trigger features reach the refusal \
             direction.",
            &[],
            Plot::Network(network(&t)?),
        )),
        None => items.push(run.missing("network of strongest edges", layout::EDGES)),
    }
    match run.table(layout::SWEEP)? {
        Some(t) => items.extend(sweep_figure(&t)?),
        None => items.push(run.missing("intervention pass rates", layout::SWEEP)),
    }
    Ok(items)
}

/// One row of sweep.csv.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRow {
    /// Run name (`none`, `random`, `dim`, `L14-C6:sub:1.15`...).
    pub spec: String,
    /// Category, or `all`.
    pub category: String,
    /// Prompts.
    pub n: f64,
    /// First-token pass rate.
    pub first_token: f64,
    /// Generated pass rate, when answers were generated.
    pub generated: Option<f64>,
    /// Benign perplexity more than doubled.
    pub degenerate: bool,
    /// Shares of the generated answers judged complied and neither (files with the judge's
    /// `complied`, `neither` columns).
    pub outcomes: Option<(f64, f64)>,
}

/// sweep.csv's rows; the file must hold the `none` run on `all` (every figure and number is
/// read against it), so a header-only or truncated file is an error, not "not run".
pub fn sweep_rows(t: &Table) -> Result<Vec<SweepRow>, Error> {
    let rows = sweep_rows_unchecked(t)?;
    if !rows.iter().any(|r| r.spec == "none" && r.category == "all") {
        return Err(Error::Read {
            path: t.path.clone(),
            msg: format!(
                "no row with spec 'none' and category 'all' ({} data rows): every sweep writes \
                 its unedited baseline; the file is incomplete",
                rows.len()
            ),
        });
    }
    Ok(rows)
}

fn sweep_rows_unchecked(t: &Table) -> Result<Vec<SweepRow>, Error> {
    let (s, c, n, f, g, d) = (
        t.col("spec")?,
        t.col("category")?,
        t.col("n")?,
        t.col("pass_first_token")?,
        t.col("pass_generated")?,
        t.col("degenerate")?,
    );
    let split = t.col("complied").ok().zip(t.col("neither").ok());
    (0..t.rows.len())
        .map(|r| {
            let outcomes = match split {
                Some((cc, nc)) => t.opt_num(r, cc)?.zip(t.opt_num(r, nc)?),
                None => None,
            };
            Ok(SweepRow {
                spec: t.cell(r, s).to_string(),
                category: t.cell(r, c).to_string(),
                n: t.count(r, n)? as f64,
                first_token: t.rate(r, f)?,
                generated: t.opt_rate(r, g)?,
                degenerate: t.boolean(r, d)?,
                outcomes,
            })
        })
        .collect()
}

/// Whether a spec is a baseline rather than one component.
pub fn is_baseline(spec: &str) -> bool {
    spec == "none" || spec == "random" || spec.starts_with("dim")
}

/// The specs the sweep figure shows: baselines, then the 5 single-component runs with the
/// highest pass rate on `all` (first-token), degenerate ones included but marked.
pub fn chosen_specs(rows: &[SweepRow]) -> Vec<String> {
    let mut specs: Vec<String> = Vec::new();
    for r in rows {
        if is_baseline(&r.spec) && !specs.contains(&r.spec) {
            specs.push(r.spec.clone());
        }
    }
    let mut others: Vec<&SweepRow> = rows
        .iter()
        .filter(|r| r.category == "all" && !is_baseline(&r.spec))
        .collect();
    others.sort_by(|a, b| b.first_token.total_cmp(&a.first_token));
    specs.extend(others.iter().take(5).map(|r| r.spec.clone()));
    specs
}

/// The sweep as bars: groups = categories (`all` first), series = chosen specs; generated
/// pass rates when every chosen row has them, else first-token. Returns the measure's name.
pub fn sweep_bars(rows: &[SweepRow]) -> (Bars, &'static str) {
    let specs = chosen_specs(rows);
    let chosen: Vec<&SweepRow> = rows.iter().filter(|r| specs.contains(&r.spec)).collect();
    let generated = !chosen.is_empty() && chosen.iter().all(|r| r.generated.is_some());
    let mut groups: Vec<String> = vec!["all".into()];
    for r in &chosen {
        if !groups.contains(&r.category) {
            groups.push(r.category.clone());
        }
    }
    let value = |r: &SweepRow| {
        if generated {
            r.generated.unwrap_or(0.0)
        } else {
            r.first_token
        }
    };
    let series = specs
        .iter()
        .map(|s| {
            let degenerate = chosen.iter().any(|r| &r.spec == s && r.degenerate);
            let at = |g: &String| chosen.iter().find(|r| &r.spec == s && &r.category == g);
            BarSeries {
                name: if degenerate {
                    format!("{s} (degenerate)")
                } else {
                    s.clone()
                },
                values: groups.iter().map(|g| at(g).map(|r| value(r))).collect(),
                ci: groups
                    .iter()
                    .map(|g| at(g).map(|r| rate_ci(value(r), r.n as usize)))
                    .collect(),
            }
        })
        .collect();
    let measure = if generated {
        "generated pass rate"
    } else {
        "first-token pass rate"
    };
    (
        Bars {
            y_label: measure.into(),
            y_max: 1.0,
            groups,
            series,
        },
        measure,
    )
}

/// The generated answers' three outcomes on `all` per chosen spec (groups), with 95%
/// intervals; None when the sweep did not judge outcomes.
pub fn sweep_outcome_bars(rows: &[SweepRow]) -> Option<Bars> {
    let specs = chosen_specs(rows);
    let all: Vec<&SweepRow> = specs
        .iter()
        .filter_map(|s| rows.iter().find(|r| &r.spec == s && r.category == "all"))
        .filter(|r| r.outcomes.is_some() && r.generated.is_some())
        .collect();
    if all.is_empty() {
        return None;
    }
    let shares = |r: &SweepRow| {
        let (c, n) = r.outcomes.expect("filtered");
        [1.0 - r.generated.expect("filtered"), c, n]
    };
    let series = ["refused", "complied", "neither"]
        .iter()
        .enumerate()
        .map(|(k, name)| BarSeries {
            name: name.to_string(),
            values: all.iter().map(|r| Some(shares(r)[k])).collect(),
            ci: all
                .iter()
                .map(|r| Some(rate_ci(shares(r)[k], r.n as usize)))
                .collect(),
        })
        .collect();
    Some(Bars {
        y_label: "share of answers".into(),
        y_max: 1.0,
        groups: all.iter().map(|r| r.spec.clone()).collect(),
        series,
    })
}

fn sweep_figure(t: &Table) -> Result<Vec<Item>, Error> {
    let rows = sweep_rows(t)?;
    let n = rows
        .iter()
        .find(|r| r.spec == "none" && r.category == "all")
        .map_or(0.0, |r| r.n);
    let (bars, measure) = sweep_bars(&rows);
    let mut items = vec![fig(
        "intervention",
        "Jailbreak pass rate of the tuned model under interventions",
        &format!(
            "Share of prompts the tuned model does not refuse ({measure}) when one direction \
             is removed at every layer, beside no intervention, a random direction of the same \
             norm and the difference-in-means direction. Components are removed at every \
             block's output (the paper's hooks, `--at blocks`), `dim` at the embeddings and \
             every block's output (Arditi et al.'s directional ablation). Error bars: 95% \
             Wilson intervals; a difference is a finding only where they do not overlap. A \
             run whose benign perplexity more than doubles is marked degenerate: broken, not \
             jailbroken. {n} prompts."
        ),
        &[
            ("after SSFT: PAIR / FLIP / raw", "1.7% / 0% / 0%"),
            ("−L14-C6: PAIR / FLIP / raw", "51.7% / 11.7% / 8.3%"),
            ("−L25-C1: PAIR / FLIP / raw", "100% / 100% / 100%"),
        ],
        Plot::Bars(bars),
    )];
    if let Some(b) = sweep_outcome_bars(&rows) {
        items.push(fig(
            "intervention-outcomes",
            "What the answers under each intervention do",
            &format!(
                "Every generated answer judged refused, complied (addresses the request) or \
                 neither (off-topic, evasive, too short or repetitive), all categories \
                 together, with 95% Wilson intervals: a pass that is mostly `neither` broke \
                 the model's answer, not its refusal. {n} prompts per run."
            ),
            &[],
            Plot::Bars(b),
        ));
    }
    Ok(items)
}

// ---------------------------------------------------------------------------------------
// token-prune.

/// One row of summary.csv.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneRow {
    /// Method (attribution, random, gradnorm, occlusion).
    pub method: String,
    /// Category or `all`.
    pub category: String,
    /// Budget as written.
    pub budget: String,
    /// Candidate prompts.
    pub n: f64,
    /// First-token success.
    pub first_token: f64,
    /// Generated success (confirmed by the judge).
    pub generated: Option<f64>,
    /// Trials behind the rates (n × repeats for the random control; n in older files).
    pub trials: f64,
    /// Shares judged complied and neither (files with those columns).
    pub outcomes: Option<(f64, f64)>,
    /// Most deleted tokens: (token, count).
    pub top_deleted: Vec<(String, u64)>,
}

/// summary.csv's rows.
pub fn prune_rows(t: &Table) -> Result<Vec<PruneRow>, Error> {
    let (m, c, b, n, f, g, top) = (
        t.col("method")?,
        t.col("category")?,
        t.col("budget")?,
        t.col("n")?,
        t.col("success_first_token")?,
        t.col("success_generated")?,
        t.col("top_deleted")?,
    );
    let trials = t.col("n_trials").ok();
    let split = t.col("complied").ok().zip(t.col("neither").ok());
    (0..t.rows.len())
        .map(|r| {
            let outcomes = match split {
                Some((cc, nc)) => t.opt_num(r, cc)?.zip(t.opt_num(r, nc)?),
                None => None,
            };
            let raw = t.cell(r, top);
            let top_deleted = if raw.trim().is_empty() {
                Vec::new()
            } else {
                let v: serde_json::Value = serde_json::from_str(raw)
                    .map_err(|_| t.value_error(r, top, "a JSON object of token counts"))?;
                let obj = v
                    .as_object()
                    .ok_or_else(|| t.value_error(r, top, "a JSON object of token counts"))?;
                obj.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            };
            Ok(PruneRow {
                method: t.cell(r, m).to_string(),
                category: t.cell(r, c).to_string(),
                budget: t.cell(r, b).to_string(),
                n: t.count(r, n)? as f64,
                first_token: t.rate(r, f)?,
                generated: t.opt_rate(r, g)?,
                trials: match trials {
                    Some(c) => t.num(r, c)?,
                    None => t.count(r, n)? as f64,
                },
                outcomes,
                top_deleted,
            })
        })
        .collect()
}

/// Success by method (category `all`): groups = method (with budget when there are
/// several), series = first-token and generated success.
pub fn prune_bars(rows: &[PruneRow]) -> Bars {
    let all: Vec<&PruneRow> = rows.iter().filter(|r| r.category == "all").collect();
    let many_budgets = all.iter().any(|r| r.budget != all[0].budget);
    let groups = all
        .iter()
        .map(|r| {
            if many_budgets {
                format!("{} @ {}", r.method, r.budget)
            } else {
                r.method.clone()
            }
        })
        .collect();
    let series = |name: &str, v: &dyn Fn(&PruneRow) -> Option<f64>| BarSeries {
        name: name.into(),
        values: all.iter().map(|r| v(r)).collect(),
        ci: all
            .iter()
            .map(|r| v(r).map(|x| rate_ci(x, r.trials as usize)))
            .collect(),
    };
    let mut s = vec![
        series("first token not a refusal", &|r| Some(r.first_token)),
        series("confirmed by generation", &|r| r.generated),
    ];
    if all.iter().all(|r| r.outcomes.is_some()) && !all.is_empty() {
        s.push(series("complied", &|r| r.outcomes.map(|o| o.0)));
        s.push(series("neither", &|r| r.outcomes.map(|o| o.1)));
    }
    Bars {
        y_label: "success rate".into(),
        y_max: 1.0,
        groups,
        series: s,
    }
}

/// token-prune success and the most deleted tokens.
pub fn prune_section(run: &Run) -> Result<Vec<Item>, Error> {
    let Some(t) = run.table(layout::PRUNE)? else {
        return Ok(vec![run.missing("token-prune success", layout::PRUNE)]);
    };
    let rows = prune_rows(&t)?;
    let n = rows
        .iter()
        .find(|r| r.category == "all")
        .map_or(0.0, |r| r.n);
    let mut items = vec![fig(
        "prune",
        "Deleting trigger tokens: success by method",
        &format!(
            "Share of refused prompts the tuned model stops refusing after deleting at most the \
             budget of user tokens, chosen by attribution (ours), at random, by gradient norm \
             or by occlusion. Attribution well above random means the refusal rests on a few \
             tokens. Confirmed answers split into complied (addresses the request) and neither \
             (off-topic, evasive or repetitive); error bars are 95% Wilson intervals over the \
             trials (the random control's repeats pooled). A local, deletion-based attack, not \
             the paper's LLM rewriting. {n} refused prompts."
        ),
        &[(
            "trigger removal (LLM rewriting), k = 160",
            "pass rate 0.30 (others ≤ 0.05)",
        )],
        Plot::Bars(prune_bars(&rows)),
    )];
    let mut h = String::from(
        "<h3>Tokens deleted most often</h3><table class=\"data\"><tr><th>method</th>\
         <th>category</th><th>tokens (times deleted)</th></tr>",
    );
    for r in &rows {
        let toks: Vec<String> = r
            .top_deleted
            .iter()
            .map(|(t, c)| format!("<code>{}</code> ({c})", escape(t)))
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.method),
            escape(&r.category),
            toks.join(", ")
        );
    }
    h.push_str("</table>");
    items.push(Item::Html(h));
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sweep without its unedited baseline (header only, or cut short) is an error: every
    /// figure and number is read against `none`.
    #[test]
    fn a_sweep_without_its_none_row_is_an_error() {
        let head = "spec,layer,component,op,alpha,category,n,pass_first_token,pass_generated,c1_projection,benign_ppl,degenerate\n";
        let e = sweep_rows(&Table::from_str("sweep.csv", head).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("sweep.csv: no row with spec 'none' and category 'all' (0 data rows)"),
            "{e}"
        );
        let t = Table::from_str(
            "sweep.csv",
            &format!("{head}L1-C1,1,1,sub,1,all,4,0.5,,0.1,12,false\n"),
        )
        .unwrap();
        assert!(sweep_rows(&t).is_err());
    }

    #[test]
    fn sweep_shows_baselines_then_the_strongest_components() {
        let t = Table::from_str(
            "sweep.csv",
            "spec,layer,component,op,alpha,category,n,pass_first_token,pass_generated,c1_projection,benign_ppl,degenerate\n\
             none,,,,,all,4,0.1,,0,5,\n\
             L1-C2:sub:1,1,2,sub,1,all,4,0.5,,0,5,false\n\
             random,1,,sub,1,all,4,0.1,,0,5,false\n\
             L2-C1:sub:1,2,1,sub,1,all,4,0.9,,0,50,true\n\
             L2-C1:sub:1,2,1,sub,1,raw,2,0.8,,0,50,true\n",
        )
        .unwrap();
        let rows = sweep_rows(&t).unwrap();
        assert_eq!(
            chosen_specs(&rows),
            vec!["none", "random", "L2-C1:sub:1", "L1-C2:sub:1"]
        );
        let (b, measure) = sweep_bars(&rows);
        assert_eq!(measure, "first-token pass rate");
        assert_eq!(b.groups, vec!["all", "raw"]);
        assert_eq!(b.series[2].name, "L2-C1:sub:1 (degenerate)");
        assert_eq!(b.series[2].values, vec![Some(0.9), Some(0.8)]);
        assert_eq!(b.series[0].values, vec![Some(0.1), None]);
        // The strongest effect skips the degenerate run.
        let s = crate::numbers::strongest_effect(&t).unwrap().unwrap();
        assert_eq!(s, ("L1-C2:sub:1".to_string(), 0.1, 0.5, 4.0));
    }

    #[test]
    fn prune_top_deleted_must_be_json() {
        let t = Table::from_str(
            "summary.csv",
            "method,category,budget,n,success_first_token,success_generated,mean_deleted,top_deleted\n\
             attribution,all,0.25,3,0.5,,1,\"{\"\"DAN\"\":2}\"\n\
             random,all,0.25,3,0.1,0.1,1,not json\n",
        )
        .unwrap();
        let e = prune_rows(&t).unwrap_err().to_string();
        assert!(e.contains("line 3, column 'top_deleted'"), "{e}");
    }
}
