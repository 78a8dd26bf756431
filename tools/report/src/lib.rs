//! `report`: a study's results as one self-contained HTML page (inline SVG and CSS, no
//! network) and every figure as its own SVG and PNG, drawn with plotters, the paper's
//! numbers beside ours.
//!
//! Every section renders from its stage's CSVs when they are there and shows a "stage not
//! run" box naming the make target when they are not, so the report of a half-run study is
//! still a page. Files a stage wrote but that do not parse are an error naming the file, the
//! line and the column.
//!
//! Outputs (all computed first, then written atomically together, deterministic bytes):
//! `index.html`, `FIGURE.svg`, `FIGURE.png`, `figures.json` (the data of every figure),
//! `numbers.csv` and `numbers.md` (the numbers the README quotes). Figure files an earlier
//! report in the same folder drew and this one does not are removed (only those its
//! `figures.json` names).

pub mod draw;
pub mod figures;
pub mod html;
pub mod interact;
pub mod label;
pub mod layout;
pub mod model;
pub mod numbers;
pub mod overrefusal;
pub mod pairs;
pub mod paper;
pub mod table;

use std::path::{Path, PathBuf};

pub use figures::Run;
use model::{Item, Section};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CSV that exists but cannot be read.
    #[error("{path}: {msg}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// A column a figure needs is missing.
    #[error("{path}: no column '{column}' (header: {found})")]
    Column {
        /// The file.
        path: PathBuf,
        /// The column looked for.
        column: String,
        /// The header found.
        found: String,
    },
    /// A cell that does not hold what its column should.
    #[error("{path}: line {line}, column '{column}': expected {expected}, found '{found}'")]
    Value {
        /// The file.
        path: PathBuf,
        /// Line in the file (the header is line 1).
        line: usize,
        /// Column name.
        column: String,
        /// What the column holds.
        expected: String,
        /// The cell.
        found: String,
    },
    /// Drawing a figure failed.
    #[error("drawing figure '{figure}': {msg}")]
    Draw {
        /// Figure id.
        figure: String,
        /// The backend's message.
        msg: String,
    },
    /// Writing an output failed.
    #[error(transparent)]
    Write(#[from] hd_formats::Error),
}

/// What to report on and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// The run folder (runs/default).
    pub run: PathBuf,
    /// The output folder (created if missing).
    pub out: PathBuf,
    /// The layer of the per-layer figures.
    pub layer: usize,
    /// Also write a PNG of every figure.
    pub png: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The page.
    pub index: PathBuf,
    /// Figures drawn.
    pub figures: usize,
    /// `make` targets of stages whose output was missing, deduplicated.
    pub not_run: Vec<String>,
    /// The numbers table as markdown.
    pub numbers_md: String,
}

/// Every section of the report, in page order.
pub fn sections(run: &Run) -> Result<Vec<Section>, Error> {
    let s = |id: &str, title: &str, items: Vec<Item>| Section {
        id: id.into(),
        title: title.into(),
        items,
    };
    Ok(vec![
        s("refusal", "What safety tuning did", {
            let mut items = figures::refusal_section(run)?;
            items.extend(overrefusal::overrefusal_items(run)?);
            items
        }),
        s(
            "rank",
            "The safety residual space",
            figures::rank_section(run)?,
        ),
        s(
            "label",
            "What the directions mean",
            label::label_section(run)?,
        ),
        s(
            "pairs",
            "Fine-tuning methods, exposure and the guard objective",
            pairs::pairs_section(run)?,
        ),
        s(
            "interact",
            "How the directions drive each other",
            interact::interact_section(run)?,
        ),
        s("prune", "Trigger tokens", interact::prune_section(run)?),
    ])
}

/// Builds the report of `o.run` into `o.out`.
pub fn run(o: &Options) -> Result<Summary, Error> {
    // A missing run folder is a typo, not a run whose stages have not run.
    if !o.run.is_dir() {
        return Err(Error::Read {
            path: o.run.clone(),
            msg: "no such run folder (expected the RUN folder of the pipeline, e.g. runs/default)"
                .into(),
        });
    }
    let run = Run {
        dir: o.run.clone(),
        layer: o.layer,
    };
    let sections = sections(&run)?;
    let numbers = numbers::numbers(&run)?;
    let figs: Vec<&model::Figure> = sections
        .iter()
        .flat_map(|s| s.items.iter().filter_map(Item::figure))
        .collect();
    let mut svgs = Vec::with_capacity(figs.len());
    let mut pngs = Vec::new();
    for f in &figs {
        let draw_err = |msg: String| Error::Draw {
            figure: f.id.clone(),
            msg,
        };
        svgs.push(draw::svg(f).map_err(draw_err)?);
        if o.png {
            pngs.push(draw::png(f).map_err(draw_err)?);
        }
    }
    let page = html::page(
        &o.run.display().to_string(),
        &numbers::to_html(&numbers),
        &sections,
        &svgs,
    );
    let numbers_md = numbers::to_markdown(&numbers);
    let json = serde_json::to_string_pretty(&sections).unwrap_or_default() + "\n";

    let earlier = earlier_figures(&o.out);
    // The folder is created when the first file is staged (and removed again if a later
    // one fails), so a failed report leaves no folder behind.
    let mut out = hd_formats::atomic::Outputs::new()
        .output_in_dir("--out", &o.out, &[])
        .check()?;
    let mut put = |name: &str, bytes: &[u8]| -> Result<(), Error> {
        out.stage(&o.out.join(name), |w| w.write_all(bytes))?;
        Ok(())
    };
    for (f, s) in figs.iter().zip(&svgs) {
        put(&format!("{}.svg", f.id), s.as_bytes())?;
    }
    for (f, p) in figs.iter().zip(&pngs) {
        put(&format!("{}.png", f.id), p)?;
    }
    put("figures.json", json.as_bytes())?;
    put("numbers.csv", &numbers::to_csv(&numbers))?;
    put("numbers.md", numbers_md.as_bytes())?;
    put("index.html", page.as_bytes())?;
    out.commit()?;
    remove_stale(&o.out, &earlier, &figs, o.png);

    let mut not_run: Vec<String> = sections
        .iter()
        .flat_map(|s| s.items.iter())
        .filter_map(|i| match i {
            Item::Missing { make, .. } => Some(make.clone()),
            _ => None,
        })
        .collect();
    not_run.sort();
    not_run.dedup();
    Ok(Summary {
        index: o.out.join("index.html"),
        figures: figs.len(),
        not_run,
        numbers_md,
    })
}

/// The default output folder of a run: `<run>/report`.
pub fn default_out(run: &Path) -> PathBuf {
    run.join("report")
}

/// Figure ids an earlier report wrote into `out` (from its `figures.json`; none without one).
fn earlier_figures(out: &Path) -> Vec<String> {
    fn walk(v: &serde_json::Value, ids: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                let id = m.get("Figure").and_then(|f| f.get("id"));
                if let Some(id) = id.and_then(serde_json::Value::as_str) {
                    ids.push(id.to_string());
                }
                m.values().for_each(|x| walk(x, ids));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, ids)),
            _ => {}
        }
    }
    let Ok(text) = std::fs::read_to_string(out.join("figures.json")) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    walk(&v, &mut ids);
    ids
}

/// Removes the SVG and PNG files of figures an earlier report drew that this one did not
/// (a stage's CSVs gone, a layer changed), and the earlier PNGs when this report draws none,
/// so the folder holds only this report's figures. Only files named by the earlier
/// `figures.json` are touched.
fn remove_stale(out: &Path, earlier: &[String], now: &[&model::Figure], png: bool) {
    for id in earlier {
        if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
            continue;
        }
        let current = now.iter().any(|f| &f.id == id);
        let mut stale = Vec::new();
        if !current {
            stale.push(format!("{id}.svg"));
        }
        if !current || !png {
            stale.push(format!("{id}.png"));
        }
        for name in stale {
            match std::fs::remove_file(out.join(&name)) {
                Ok(()) => tracing::info!("removed {} (no longer drawn)", out.join(&name).display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(
                    "{}: cannot remove a stale figure: {e}",
                    out.join(&name).display()
                ),
            }
        }
    }
}
