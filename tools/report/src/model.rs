//! What a report is made of, independent of how it is drawn: sections of figures (the data
//! each plot shows), HTML blocks, and boxes for stages that have not run.

use serde::Serialize;

/// One section of the page.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    /// Anchor and short name.
    pub id: String,
    /// Heading.
    pub title: String,
    /// Its figures, tables and missing-stage boxes, in order.
    pub items: Vec<Item>,
}

/// One block of a section.
#[derive(Debug, Clone, Serialize)]
pub enum Item {
    /// A figure: drawn as SVG (inline and its own file) and PNG.
    Figure(Figure),
    /// Ready HTML (token highlights, tables), already escaped.
    Html(String),
    /// A stage whose output is not there.
    Missing {
        /// What the stage would have shown.
        what: String,
        /// The command that makes it.
        make: String,
        /// The file that was looked for.
        path: String,
    },
}

/// A figure and the words around it.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// File stem (`refusal` → `refusal.svg`, `refusal.png`).
    pub id: String,
    /// Title drawn in the figure.
    pub title: String,
    /// What it shows and what to look for.
    pub caption: String,
    /// The paper's numbers for the same thing: (label, value) rows.
    pub paper: Vec<(String, String)>,
    /// The data.
    pub plot: Plot,
}

/// The data of one plot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Plot {
    /// Grouped bars.
    Bars(Bars),
    /// Lines over a numeric x.
    Lines(Lines),
    /// A matrix of coloured cells.
    Heatmap(Heatmap),
    /// Components as nodes by layer, relevance as edges.
    Network(Network),
}

/// Grouped bars: one group per x label, one bar per series in each group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bars {
    /// The y axis.
    pub y_label: String,
    /// Upper end of the y axis (1 for rates).
    pub y_max: f64,
    /// The x labels.
    pub groups: Vec<String>,
    /// The series; `values[g]` is group g's bar (None: no data there).
    pub series: Vec<BarSeries>,
}

/// One series of bars.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BarSeries {
    /// Legend entry.
    pub name: String,
    /// One value per group.
    pub values: Vec<Option<f64>>,
    /// Each value's 95% interval, drawn as an error bar (empty: none drawn).
    pub ci: Vec<Option<(f64, f64)>>,
}

/// Lines over a numeric x.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lines {
    /// The x axis.
    pub x_label: String,
    /// The y axis.
    pub y_label: String,
    /// A log-scaled y axis (only positive values are drawn).
    pub log_y: bool,
    /// The series.
    pub series: Vec<LineSeries>,
}

/// How a line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stroke {
    /// Ours.
    Solid,
    /// The paper's, or a baseline.
    Dashed,
    /// Markers only (values known at some x only).
    Points,
}

/// One line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineSeries {
    /// Legend entry.
    pub name: String,
    /// (x, y), in x order.
    pub points: Vec<(f64, f64)>,
    /// How it is drawn.
    pub stroke: Stroke,
}

/// A matrix of cells coloured on a diverging scale around `center`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Heatmap {
    /// What the rows are.
    pub row_label: String,
    /// What the columns are.
    pub col_label: String,
    /// Row names, top to bottom.
    pub rows: Vec<String>,
    /// Column names, left to right.
    pub cols: Vec<String>,
    /// `values[r][c]`; None: no data.
    pub values: Vec<Vec<Option<f64>>>,
    /// The value drawn white.
    pub center: f64,
    /// |value − center| drawn at full colour.
    pub span: f64,
}

/// A layered network of components.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Network {
    /// The edges.
    pub edges: Vec<Edge>,
}

/// One edge: relevance of a source component for a target component.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    /// Source layer (hidden-state index).
    pub source_layer: usize,
    /// Source component, 1-based.
    pub source_comp: usize,
    /// Target layer.
    pub target_layer: usize,
    /// Target component, 1-based.
    pub target_comp: usize,
    /// Mean relevance.
    pub value: f64,
}

impl Item {
    /// The figure, if this item is one.
    pub fn figure(&self) -> Option<&Figure> {
        match self {
            Item::Figure(f) => Some(f),
            _ => None,
        }
    }
}
