//! dir-label's outputs in the report: components as classifiers by layer, categories against
//! components, and prompts shaded by token relevance.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::figures::{layer_column, Run};
use crate::html::escape;
use crate::layout;
use crate::model::{Figure, Heatmap, Item, LineSeries, Lines, Plot, Stroke};
use crate::paper;
use crate::table::Table;
use crate::Error;

/// layers.csv columns shown as lines, with their legend names.
pub const ACCURACY_COLUMNS: [(&str, &str); 4] = [
    ("c1_acc", "C1 (dominant component)"),
    ("best_acc", "best of N components"),
    ("probe_acc", "probe (held-out half)"),
    ("pooled_probe_acc", "paper's pooled probe"),
];

/// The lines of the accuracy figure: one per [`ACCURACY_COLUMNS`] entry, (layer, value)
/// with empty cells skipped.
pub fn accuracy_series(t: &Table) -> Result<Vec<LineSeries>, Error> {
    ACCURACY_COLUMNS
        .iter()
        .map(|(col, name)| {
            Ok(LineSeries {
                name: name.to_string(),
                points: layer_column(t, col)?,
                stroke: Stroke::Solid,
            })
        })
        .collect()
}

fn accuracy_figure(t: &Table) -> Result<Item, Error> {
    let mut series = accuracy_series(t)?;
    let last = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0 as usize))
        .max()
        .unwrap_or(0);
    series.push(LineSeries {
        name: "paper C1 (SSFT)".into(),
        points: paper::C1_ACC
            .iter()
            .map(|&(l, v)| (paper::rescale(l, last), v))
            .collect(),
        stroke: Stroke::Points,
    });
    Ok(Item::Figure(Figure {
        id: "accuracy".into(),
        title: "Components as refusal classifiers, by layer".into(),
        caption: "Accuracy of the dominant direction alone (C1), of the best of the first \
                  components, and of trained probes. The paper's claim: from the middle layers \
                  on, one direction of the safety shift predicts refusal almost as well as a \
                  probe trained for it. Paper points are rescaled to our depth."
            .into(),
        paper: vec![
            ("C1 at L14 / L20".into(), "0.946 / 0.989".into()),
            ("C1, L17–29".into(), "0.974–0.989".into()),
            ("probe".into(), "≥ 0.96 from L13, 0.98–0.99 from L16".into()),
            ("best-of-N, L1–12".into(), "0.77–0.88".into()),
        ],
        plot: Plot::Lines(Lines {
            x_label: "layer (hidden-state index)".into(),
            y_label: "accuracy".into(),
            log_y: false,
            series,
        }),
    }))
}

/// categories.csv at one layer as a category × component matrix of AUC against harmless
/// rows (components 1..=10).
pub fn category_heatmap(t: &Table, layer: usize) -> Result<Option<Heatmap>, Error> {
    let (l, c, cat, auc) = (
        t.col("layer")?,
        t.col("component")?,
        t.col("category")?,
        t.col("auc_vs_harmless")?,
    );
    let mut rows: Vec<String> = Vec::new();
    let mut cells: BTreeMap<(String, usize), Option<f64>> = BTreeMap::new();
    let mut max_c = 0;
    for r in 0..t.rows.len() {
        if t.int(r, l)? != layer {
            continue;
        }
        let comp = t.count(r, c)?;
        if comp > 10 {
            continue;
        }
        let name = t.cell(r, cat).to_string();
        if !rows.contains(&name) {
            rows.push(name.clone());
        }
        max_c = max_c.max(comp);
        cells.insert((name, comp), t.opt_rate(r, auc)?);
    }
    if rows.is_empty() {
        return Ok(None);
    }
    let values = rows
        .iter()
        .map(|r| {
            (1..=max_c)
                .map(|k| cells.get(&(r.clone(), k)).copied().flatten())
                .collect()
        })
        .collect();
    Ok(Some(Heatmap {
        row_label: "category".into(),
        col_label: format!("component of layer {layer}"),
        rows,
        cols: (1..=max_c).map(|k| format!("C{k}")).collect(),
        values,
        center: 0.5,
        span: 0.5,
    }))
}

/// Classifier accuracy, the category heatmap and token highlights.
pub fn label_section(run: &Run) -> Result<Vec<Item>, Error> {
    let mut items = Vec::new();
    match run.table(layout::LAYERS)? {
        Some(t) => items.push(accuracy_figure(&t)?),
        None => items.push(run.missing("C1 accuracy and the probes by layer", layout::LAYERS)),
    }
    match run.table(layout::CATEGORIES)? {
        Some(t) => match category_heatmap(&t, run.layer)? {
            Some(h) => items.push(Item::Figure(Figure {
                id: "categories".into(),
                title: format!(
                    "Which component picks out which category (layer {})",
                    run.layer
                ),
                caption: "AUC of each component's projection for one category's prompts \
                          against the harmless ones (0.5 white: no separation; red: the \
                          category projects higher, blue: lower). Secondary components that \
                          light up for a single jailbreak style are the paper's labelled \
                          features."
                    .into(),
                paper: vec![
                    ("L14-C2".into(), "hypothetical narrative".into()),
                    ("L14-C5".into(), "role-play (ChatGPT / DAN)".into()),
                    ("L14-C6".into(), "\"Sure, I'm happy to help\" (PAIR)".into()),
                ],
                plot: Plot::Heatmap(h),
            })),
            None => items.push(Item::Html(format!(
                "<p class=\"note\">categories.csv has no rows for layer {}.</p>",
                run.layer
            ))),
        },
        None => items.push(run.missing("category × component association", layout::CATEGORIES)),
    }
    items.push(tokens_html(run)?);
    Ok(items)
}

/// Token string as a reader sees it (byte-level BPE marks spaces and newlines).
fn token_text(t: &str) -> String {
    t.replace('Ġ', " ").replace('Ċ', "↵").replace('▁', " ")
}

/// One prompt's tokens: (token, relevance in -1..1).
pub type Shaded = Vec<(String, f64)>;
/// Per component: its prompts, each (id, shaded tokens).
pub type ByComponent = Vec<(String, Vec<(String, Shaded)>)>;

/// tokens.csv grouped by component then prompt, in file order: at most `max_comps`
/// components and `max_prompts` prompts each.
pub fn token_rows(t: &Table, max_comps: usize, max_prompts: usize) -> Result<ByComponent, Error> {
    let (id, comp, tok, rel) = (
        t.col("id")?,
        t.col("component")?,
        t.col("token")?,
        t.col("relevance")?,
    );
    let mut out: ByComponent = Vec::new();
    for r in 0..t.rows.len() {
        let c = t.cell(r, comp).to_string();
        if !out.iter().any(|x| x.0 == c) {
            if out.len() == max_comps {
                continue;
            }
            out.push((c.clone(), Vec::new()));
        }
        let prompts = &mut out.iter_mut().find(|x| x.0 == c).expect("pushed").1;
        let pid = t.cell(r, id).to_string();
        if !prompts.iter().any(|p| p.0 == pid) {
            if prompts.len() == max_prompts {
                continue;
            }
            prompts.push((pid.clone(), Vec::new()));
        }
        let v = t.num(r, rel)?.clamp(-1.0, 1.0);
        let p = prompts.iter_mut().find(|p| p.0 == pid).expect("pushed");
        p.1.push((t.cell(r, tok).to_string(), v));
    }
    Ok(out)
}

fn tokens_html(run: &Run) -> Result<Item, Error> {
    let Some(t) = run.table(layout::TOKENS)? else {
        return Ok(run.missing("token highlights", layout::TOKENS));
    };
    let names = match run.table(layout::LABELS)? {
        Some(l) => labels_by_component(&l)?,
        None => BTreeMap::new(),
    };
    let mut h = String::from(
        "<h3>Token highlights</h3><p class=\"caption\">Prompts with each token shaded by its \
         AttnLRP relevance to a component's projection at the last prompt token (red: drives \
         it up, blue: down; normalised per prompt). Look for the framing words of a jailbreak \
         style lighting up on the component that separates that style.</p>",
    );
    for (comp, prompts) in token_rows(&t, 4, 5)? {
        let label = names.get(&comp).cloned().unwrap_or_default();
        let _ = write!(
            h,
            "<div class=\"tokens\"><h4>component {}{}</h4>",
            escape(&comp),
            if label.is_empty() {
                String::new()
            } else {
                format!(" — {}", escape(&label))
            }
        );
        for (pid, toks) in prompts {
            let _ = write!(h, "<p><span class=\"pid\">{}</span> ", escape(&pid));
            for (tok, v) in toks {
                let (r, g, b) = if v >= 0.0 {
                    (220, 60, 40)
                } else {
                    (40, 90, 220)
                };
                let _ = write!(
                    h,
                    "<span class=\"tok\" style=\"background: rgba({r},{g},{b},{:.2})\" \
                     title=\"{v:.3}\">{}</span>",
                    v.abs(),
                    escape(&token_text(&tok))
                );
            }
            h.push_str("</p>");
        }
        h.push_str("</div>");
    }
    Ok(Item::Html(h))
}

/// labels.csv: component number → "name: suggested label (top tokens)".
fn labels_by_component(t: &Table) -> Result<BTreeMap<String, String>, Error> {
    let (c, name, label, top) = (
        t.col("component")?,
        t.col("name")?,
        t.col("suggested_label")?,
        t.col("top_tokens")?,
    );
    let mut m = BTreeMap::new();
    for r in 0..t.rows.len() {
        let text = format!(
            "{}: {} (top tokens: {})",
            t.cell(r, name),
            t.cell(r, label),
            t.cell(r, top)
        );
        // tokens.csv may name a component by number or by `L{l}-C{k}`: key by both.
        m.insert(t.cell(r, name).to_string(), text.clone());
        m.insert(t.cell(r, c).to_string(), text);
    }
    Ok(m)
}
