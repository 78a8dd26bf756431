//! `dir-label classify`: each component as a refusal classifier (the paper's "dir-label A").
//!
//! Reads activations (`resid.{i}` `[n, d]`), components (`components.{i}` `[k, d]`) and the
//! prompt rows of the activations; writes into the output folder:
//!
//! - `components.csv`: `layer,component,name,acc_paper,acc,auc,sep`, one row per layer and
//!   component (`component` 1-based, `name` `L{layer}-C{component}`);
//! - `layers.csv`: `layer,c1_acc_paper,c1_acc,c1_auc,best_k,best_acc,probe_acc,probe_auc,
//!   pooled_probe_acc,dim_acc,cos_probe_c1` (`best_k`: the 1-based component with the
//!   highest `acc`, the paper's Best-of-N);
//! - `categories.csv`: `layer,component,category,n,mean_proj,std_proj,auc_vs_harmless,
//!   cohen_d` for every category of the rows' `category` column.
//!
//! The figures are defined in [`hd_analysis::classify`]. Component figures use every
//! labelled row (for components from a contrast SVD of the same rows, that is in-sample);
//! the probes and the difference in means are scored on the held-out half.
//!
//! # Labels
//!
//! [`Labels::Column`]: a column of the rows with exactly two non-empty values, one of them
//! the positive (rows with an empty cell are left out). [`Labels::Refused`]: a model's
//! behaviour, `refusal_score > 0` in an act-dump rows CSV over the same prompts.
//!
//! # Guarantees
//!
//! Activations, components and rows must come from the same prompts (their
//! `prompt_ids_hash` metadata, where recorded, and the row count) and agree on `d`; every
//! requested layer must be in both files; values must be finite. Everything is computed
//! before anything is written; each CSV is written atomically; the bytes depend only on
//! the inputs and options, not on the thread count.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use hd_analysis::classify::{self as cls, Category, ClassifyOptions, LayerInput, LayerReport};
use hd_formats::atomic::Outputs;
use hd_formats::components::{self, ComponentId};
use hd_formats::csvout::num;
use hd_formats::layers::LayerSpec;
use hd_formats::meta::{check_prompts_match, check_same_prompts};
use hd_formats::prompts::PromptTable;
use hd_formats::tensors::{components_name, resid_name, Kind, Tensor, TensorFile};

/// `components.csv`'s file name and header.
pub const COMPONENTS_CSV: (&str, &str) = (
    "components.csv",
    "layer,component,name,acc_paper,acc,auc,sep",
);
/// `layers.csv`'s file name and header.
pub const LAYERS_CSV: (&str, &str) = (
    "layers.csv",
    "layer,c1_acc_paper,c1_acc,c1_auc,best_k,best_acc,probe_acc,probe_auc,pooled_probe_acc,dim_acc,cos_probe_c1",
);
/// The directions the three tables were made from (see [`Outcome::directions`]).
pub const SOURCE_JSON: &str = "source.json";
/// `categories.csv`'s file name and header.
pub const CATEGORIES_CSV: (&str, &str) = (
    "categories.csv",
    "layer,component,category,n,mean_proj,std_proj,auc_vs_harmless,cohen_d",
);

/// The column of the rows whose values are the categories.
pub const CATEGORY_COLUMN: &str = "category";
/// The act-dump rows column `--by refused` reads.
pub const REFUSAL_SCORE: &str = "refusal_score";
/// Components scored per layer when `k` is not given (or all the file holds, if fewer).
pub const DEFAULT_K: usize = 100;

/// Where the labels come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Labels {
    /// A two-valued column of the rows.
    Column {
        /// Column name.
        by: String,
        /// Its positive value.
        positive: String,
    },
    /// `refusal_score > 0` in an act-dump rows CSV over the same prompts.
    Refused {
        /// That CSV.
        rows_from: PathBuf,
    },
}

/// Everything `dir-label classify` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Activations file.
    pub acts: PathBuf,
    /// Components file.
    pub components: PathBuf,
    /// Prompt rows of the activations.
    pub rows: PathBuf,
    /// Output folder (created if missing).
    pub out_dir: PathBuf,
    /// Label source.
    pub labels: Labels,
    /// Components per layer; `None`: [`DEFAULT_K`] or all the file holds.
    pub k: Option<usize>,
    /// Seed of the held-out split.
    pub seed: u64,
    /// Layers.
    pub layers: LayerSpec,
}

/// What a run computed.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Per layer, in increasing order.
    pub layers: Vec<LayerReport>,
    /// Category names, in the order of each report's `categories`.
    pub categories: Vec<String>,
    /// Components scored per layer.
    pub k: usize,
    /// Labelled rows used.
    pub rows: usize,
    /// Per layer, [`components::directions_hash`] of `components.{layer}` (source.json).
    pub directions: Vec<(usize, String)>,
}

/// Reads the inputs, computes every layer, then writes the three CSVs.
pub fn run(opts: &Options) -> Result<Outcome> {
    let t0 = std::time::Instant::now();
    let names = [
        COMPONENTS_CSV.0,
        LAYERS_CSV.0,
        CATEGORIES_CSV.0,
        SOURCE_JSON,
    ];
    let rows_from = match &opts.labels {
        Labels::Refused { rows_from } => Some(rows_from.as_path()),
        _ => None,
    };
    let mut outs = Outputs::new()
        .input("--acts", &opts.acts)
        .input("--components", &opts.components)
        .input("--rows", &opts.rows)
        .input_opt("--rows-from", rows_from)
        .output_in_dir("--out-dir", &opts.out_dir, &names)
        .check()?;
    let outcome = compute(opts)?;
    let files = [
        components_csv(&outcome)?,
        layers_csv(&outcome)?,
        categories_csv(&outcome)?,
        source_json(opts, &outcome),
    ];
    for (name, bytes) in names.iter().zip(files) {
        outs.stage(&opts.out_dir.join(name), |w| w.write_all(&bytes))?;
    }
    outs.commit()?;
    tracing::info!(
        "{} layer(s) x {} component(s), {} rows, in {:.2} s; wrote {}",
        outcome.layers.len(),
        outcome.k,
        outcome.rows,
        t0.elapsed().as_secs_f64(),
        opts.out_dir.display()
    );
    Ok(outcome)
}

/// Everything except writing.
pub fn compute(opts: &Options) -> Result<Outcome> {
    let table = PromptTable::read(&opts.rows)?;
    let (keep, y) = labels(opts, &table)?;
    let categories = category_column(&table, &keep);
    let acts = TensorFile::read(&opts.acts)?;
    let comps = TensorFile::read(&opts.components)?;
    warn_other_prompts(&acts, &comps, &table)?;
    let layers = pick_layers(opts, &acts, &comps)?;
    let (d, k) = check_shapes(opts, &acts, &comps, &layers, table.len())?;
    let directions: Vec<(usize, String)> = layers
        .iter()
        .map(|&l| {
            Ok((
                l,
                components::directions_hash(comps.get(&components_name(l))?),
            ))
        })
        .collect::<Result<_>>()?;
    let (xs, cs) = take_layers(acts, comps, &layers, (d, k), &keep)?;
    let inputs: Vec<LayerInput<'_>> = layers
        .iter()
        .zip(xs.iter().zip(&cs))
        .map(|(&layer, (x, c))| LayerInput {
            layer,
            x,
            components: c,
        })
        .collect();
    let cats: Vec<Category> = match &categories {
        Some(c) => cls::categories(c, &y),
        None => Vec::new(),
    };
    let copts = ClassifyOptions {
        k,
        seed: opts.seed,
        ..Default::default()
    };
    let out = cls::classify(&inputs, d, &y, &cats, &copts).map_err(|e| {
        anyhow!(
            "{}: labels from {}: {e}",
            opts.rows.display(),
            label_source(opts)
        )
    })?;
    log_probe_fits(&out);
    Ok(Outcome {
        layers: out.layers,
        categories: cats.into_iter().map(|c| c.name).collect(),
        k,
        rows: y.len(),
        directions,
    })
}

/// Warns where the activations, the components and the rows record different prompts.
fn warn_other_prompts(acts: &TensorFile, comps: &TensorFile, table: &PromptTable) -> Result<()> {
    for w in [
        check_prompts_match(acts, table)?,
        check_same_prompts(acts, comps)?,
        check_prompts_match(comps, table)?,
    ]
    .into_iter()
    .flatten()
    {
        tracing::warn!("{w}");
    }
    Ok(())
}

/// A layer's rows, `[n, d]` row-major.
type Rows = Vec<f64>;

/// Per layer, the labelled rows of the activations (`keep`) and the first `k` components,
/// as f64, each checked finite; the files are consumed so each tensor is held once.
fn take_layers(
    mut acts: TensorFile,
    mut comps: TensorFile,
    layers: &[usize],
    (d, k): (usize, usize),
    keep: &[usize],
) -> Result<(Vec<Rows>, Vec<Rows>)> {
    let mut xs = Vec::with_capacity(layers.len());
    let mut cs = Vec::with_capacity(layers.len());
    for &l in layers {
        let x = take(&mut acts, &resid_name(l));
        let c = take(&mut comps, &components_name(l));
        xs.push(finite_rows(&acts.path, &resid_name(l), &x, d, Some(keep))?);
        let c = c.to_f64_vec()[..k * d].to_vec();
        components::check_rows(&comps.path, l, &c, d)?;
        cs.push(c);
    }
    Ok((xs, cs))
}

/// Logs each probe's Newton steps, and warns of a probe that did not converge.
fn log_probe_fits(out: &cls::Classification) {
    for r in &out.layers {
        let f = &r.probe.fit;
        tracing::debug!("layer {}: probe {} Newton steps", r.layer, f.iterations);
        if !f.converged {
            tracing::warn!(
                "layer {}: the probe did not converge in {} Newton steps",
                r.layer,
                f.iterations
            );
        }
    }
    if let Some(f) = &out.pooled {
        tracing::debug!("pooled probe: {} Newton steps", f.iterations);
        if !f.converged {
            tracing::warn!(
                "the pooled probe did not converge in {} Newton steps",
                f.iterations
            );
        }
    }
}

fn label_source(opts: &Options) -> String {
    match &opts.labels {
        Labels::Column { by, positive } => format!("column '{by}' (positive '{positive}')"),
        Labels::Refused { rows_from } => {
            format!("{REFUSAL_SCORE} > 0 in {}", rows_from.display())
        }
    }
}

/// The labelled rows (indices into the table) and their labels.
fn labels(opts: &Options, table: &PromptTable) -> Result<(Vec<usize>, Vec<bool>)> {
    let (keep, y): (Vec<usize>, Vec<bool>) = match &opts.labels {
        Labels::Column { by, positive } => column_labels(table, by, positive)?,
        Labels::Refused { rows_from } => refused_labels(table, rows_from)?,
    };
    let npos = y.iter().filter(|&&v| v).count();
    let what = label_source(opts);
    if npos == 0 {
        bail!("{}: no positive rows ({what})", table.path);
    }
    if npos == y.len() {
        bail!(
            "{}: every labelled row is positive ({what}); need negatives too",
            table.path
        );
    }
    Ok((keep, y))
}

fn column_labels(table: &PromptTable, by: &str, positive: &str) -> Result<(Vec<usize>, Vec<bool>)> {
    let col = table.column(by).ok_or_else(|| {
        hd_cli::usage(format!(
            "{}: no column '{by}' for --by (columns: {})",
            table.path,
            table.headers.join(", ")
        ))
    })?;
    let values: BTreeSet<&str> = table
        .rows
        .iter()
        .map(|r| r[col].as_str())
        .filter(|v| !v.is_empty())
        .collect();
    let listed = || {
        values
            .iter()
            .map(|v| format!("'{v}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match values.len() {
        0 => bail!(
            "{}: column '{by}' is empty in every row; expected two values",
            table.path
        ),
        1 => bail!(
            "{}: column '{by}' has one value ({}) in every non-empty row; expected two \
             (positive '{positive}' and one other)",
            table.path,
            listed()
        ),
        2 => {}
        n => bail!(
            "{}: column '{by}' has {n} values ({}); expected two (positive '{positive}' and \
             one other)",
            table.path,
            listed()
        ),
    }
    if !values.contains(positive) {
        bail!(
            "{}: no row has '{positive}' in column '{by}' (values: {}), so no positives; pick \
             one with --positive",
            table.path,
            listed()
        );
    }
    Ok(table
        .rows
        .iter()
        .enumerate()
        .filter(|(_, r)| !r[col].is_empty())
        .map(|(i, r)| (i, r[col] == positive))
        .unzip())
}

fn refused_labels(table: &PromptTable, rows_from: &Path) -> Result<(Vec<usize>, Vec<bool>)> {
    let other = PromptTable::read(rows_from)?;
    if other.len() != table.len() || other.ids().ne(table.ids()) {
        let first = other
            .ids()
            .zip(table.ids())
            .position(|(a, b)| a != b)
            .map(|i| {
                format!(
                    "data row {}: id '{}' vs '{}'",
                    i + 1,
                    other.id(i),
                    table.id(i)
                )
            })
            .unwrap_or_else(|| format!("{} rows vs {}", other.len(), table.len()));
        bail!(
            "{}: not the prompts of {} ({first}); --rows-from must be the act-dump rows CSV of \
             the same prompts",
            other.path,
            table.path
        );
    }
    let col = other.column(REFUSAL_SCORE).ok_or_else(|| {
        anyhow!(
            "{}: no column '{REFUSAL_SCORE}' (columns: {}); expected an act-dump rows CSV",
            other.path,
            other.headers.join(", ")
        )
    })?;
    let mut y = Vec::with_capacity(other.len());
    for (i, r) in other.rows.iter().enumerate() {
        let cell = r[col].trim();
        let v: f64 = cell
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| {
                anyhow!(
                "{}: data row {} (id '{}'), column '{REFUSAL_SCORE}': '{cell}' is not a finite \
                 number",
                other.path,
                i + 1,
                other.id(i)
            )
            })?;
        y.push(v > 0.0);
    }
    Ok(((0..y.len()).collect(), y))
}

/// The `category` of each kept row, if the rows have that column.
fn category_column(table: &PromptTable, keep: &[usize]) -> Option<Vec<String>> {
    let Some(col) = table.column(CATEGORY_COLUMN) else {
        tracing::warn!(
            "{}: no '{CATEGORY_COLUMN}' column; categories.csv will hold only its header",
            table.path
        );
        return None;
    };
    Some(keep.iter().map(|&i| table.rows[i][col].clone()).collect())
}

/// The requested layers, each of which both files must hold.
fn pick_layers(opts: &Options, acts: &TensorFile, comps: &TensorFile) -> Result<Vec<usize>> {
    let la = acts.resid_layers();
    let lc = comps.layers_of(Kind::Components);
    if la.is_empty() {
        bail!(
            "{}: no resid.{{i}} tensors; expected activations as written by act-dump",
            acts.path
        );
    }
    if lc.is_empty() {
        bail!(
            "{}: no components.{{i}} tensors; expected components as written by shift-svd",
            comps.path
        );
    }
    let layers = opts
        .layers
        .resolve_available(&la)
        .with_context(|| format!("--layers {} in {}", opts.layers, acts.path))?;
    if let Some(l) = layers.iter().find(|l| !lc.contains(l)) {
        bail!(
            "layer {l}: {} has no tensor '{}' (its layers: {}), but {} has '{}'; pick common \
             layers with --layers",
            comps.path,
            components_name(*l),
            list(&lc),
            acts.path,
            resid_name(*l)
        );
    }
    Ok(layers)
}

fn list(v: &[usize]) -> String {
    v.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// Checks shapes across layers and files; returns `(d, k)`.
fn check_shapes(
    opts: &Options,
    acts: &TensorFile,
    comps: &TensorFile,
    layers: &[usize],
    nrows: usize,
) -> Result<(usize, usize)> {
    let mut d = None;
    let mut k_file = usize::MAX;
    for &l in layers {
        let (rn, cn) = (resid_name(l), components_name(l));
        let x = acts.expect_shape(&rn, &[None, d])?;
        if x.shape[0] != nrows {
            bail!(
                "{}: tensor '{rn}' has {} rows but {} has {nrows} prompt rows; the activations \
                 must be of those prompts, in order",
                acts.path,
                x.shape[0],
                opts.rows.display()
            );
        }
        let dx = x.shape[1];
        float(acts, &rn, x)?;
        let c = comps.expect_shape(&cn, &[None, None])?;
        float(comps, &cn, c)?;
        if c.shape[1] != dx {
            bail!(
                "{}: tensor '{cn}' is [{}, {}] but {} tensor '{rn}' is [{nrows}, {dx}]; \
                 components and activations must share d (same model?)",
                comps.path,
                c.shape[0],
                c.shape[1],
                acts.path
            );
        }
        if c.shape[0] == 0 || dx == 0 {
            bail!(
                "{}: tensor '{cn}' is empty ([{}, {}])",
                comps.path,
                c.shape[0],
                dx
            );
        }
        if let Some(k) = opts.k {
            if k > c.shape[0] {
                return Err(hd_cli::usage(format!(
                    "--k {k}: {} tensor '{cn}' holds only {} components",
                    comps.path, c.shape[0]
                )));
            }
        }
        k_file = k_file.min(c.shape[0]);
        d = Some(dx);
    }
    let d = d.expect("at least one layer");
    let k = opts.k.unwrap_or(DEFAULT_K.min(k_file));
    if opts.k.is_none() && k < DEFAULT_K {
        tracing::debug!("scoring {k} components per layer (all the file holds)");
    }
    Ok((d, k))
}

fn float(file: &TensorFile, name: &str, t: &Tensor) -> Result<()> {
    if t.as_f32().is_none() && t.as_f64().is_none() {
        bail!(
            "{}: tensor '{name}' is {}, expected F32 or F64",
            file.path,
            t.dtype()
        );
    }
    Ok(())
}

fn take(file: &mut TensorFile, name: &str) -> Tensor {
    file.tensors.remove(name).expect("checked present")
}

/// The tensor's rows (all, or `keep`) as `f64`, or an error naming the first non-finite
/// value.
fn finite_rows(
    path: &str,
    name: &str,
    t: &Tensor,
    d: usize,
    keep: Option<&[usize]>,
) -> Result<Vec<f64>> {
    let all = t.to_f64_vec();
    if let Some(i) = all.iter().position(|v| !v.is_finite()) {
        bail!(
            "{path}: tensor '{name}' has a non-finite value ({}) at row {}, column {}",
            all[i],
            i / d,
            i % d
        );
    }
    Ok(match keep {
        Some(rows) if rows.len() != all.len() / d => rows
            .iter()
            .flat_map(|&i| all[i * d..(i + 1) * d].iter().copied())
            .collect(),
        _ => all,
    })
}

fn csv_bytes(header: &str, rows: impl IntoIterator<Item = Vec<String>>) -> Result<Vec<u8>> {
    Ok(hd_formats::csvout::csv_bytes(header, rows)?)
}

/// `source.json`: which directions the tables score (per layer, the hash of
/// `components.{layer}`), so that `dir-label tokens --classify` can check it is given the same.
fn source_json(opts: &Options, o: &Outcome) -> Vec<u8> {
    let layers: serde_json::Map<String, serde_json::Value> = o
        .directions
        .iter()
        .map(|(l, h)| (components_name(*l), h.clone().into()))
        .collect();
    let v = serde_json::json!({
        "components": opts.components.display().to_string(),
        "directions": layers,
    });
    let mut s = serde_json::to_string_pretty(&v).expect("JSON values serialize");
    s.push('\n');
    s.into_bytes()
}

fn components_csv(o: &Outcome) -> Result<Vec<u8>> {
    csv_bytes(
        COMPONENTS_CSV.1,
        o.layers.iter().flat_map(|r| {
            r.components.iter().enumerate().map(move |(j, s)| {
                vec![
                    r.layer.to_string(),
                    (j + 1).to_string(),
                    ComponentId::from_row(r.layer, j).to_string(),
                    num(s.acc_paper),
                    num(s.acc),
                    num(s.auc),
                    num(s.sep),
                ]
            })
        }),
    )
}

fn layers_csv(o: &Outcome) -> Result<Vec<u8>> {
    csv_bytes(
        LAYERS_CSV.1,
        o.layers.iter().map(|r| {
            let c1 = r.components[0];
            vec![
                r.layer.to_string(),
                num(c1.acc_paper),
                num(c1.acc),
                num(c1.auc),
                (r.best + 1).to_string(),
                num(r.components[r.best].acc),
                num(r.probe.acc),
                num(r.probe.auc),
                num(r.pooled_probe_acc),
                num(r.dim_acc),
                num(r.cos_probe_c1),
            ]
        }),
    )
}

fn categories_csv(o: &Outcome) -> Result<Vec<u8>> {
    csv_bytes(
        CATEGORIES_CSV.1,
        o.layers.iter().flat_map(|r| {
            r.categories.iter().enumerate().flat_map(move |(j, per)| {
                per.iter().zip(&o.categories).map(move |(s, name)| {
                    vec![
                        r.layer.to_string(),
                        (j + 1).to_string(),
                        name.clone(),
                        s.n.to_string(),
                        num(s.mean_proj),
                        num(s.std_proj),
                        num(s.auc_vs_harmless),
                        num(s.cohen_d),
                    ]
                })
            })
        }),
    )
}
