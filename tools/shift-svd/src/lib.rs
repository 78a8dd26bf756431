//! `shift-svd`: the safety residual space of Pan et al., layer by layer.
//!
//! For each layer `i`, stack the per-prompt shift of the residual stream into `D` (`n x d`),
//! take its SVD, and write:
//!
//! - `components.{i}` `[k, d]`: the top `k` right singular vectors as unit rows;
//!   `singular_values.{i}` `[min(n, d)]`: all of them; `mean_shift.{i}` `[d]`: the mean row of
//!   `D` (before any centring). One safetensors (or `.npz`) file.
//! - `spectrum.csv`: `layer,component,singular_value,explained_ratio,cumulative`, one row per
//!   singular value, `component` 1-based (`L14-C6` is layer 14, component 6).
//! - `rank.csv`: `layer,tau,effective_rank`, the paper's effective rank
//!   (see [`hd_linalg::spectrum`]).
//! - `alignment.csv`: `layer_a,component_a,layer_b,component_b,abs_cos`: C1 of every pair of
//!   layers, and C1..C5 of each layer against C1..C5 of the next layer in the list, so the
//!   drift of the directions across depth shows.
//!
//! # The shift
//!
//! - `identity` (default; the paper's rank script): `D = tuned - base`.
//! - `lstsq` (the reference scripts' `method="matrix"`): `D = X W - X`, `W` numpy's
//!   minimum-norm `lstsq(X, Y)`. With `n <= d` and base activations of full row rank this is
//!   exactly `Y - X`; it differs where the base rows are linearly dependent (e.g. layer 0,
//!   where every prompt ends in the same template token), where it keeps only the part of the
//!   tuned activations that a linear map of the base ones can reach.
//! - contrast (one model): `D = harmful rows - mean of harmless rows`.
//!
//! **Centring.** Without `center` (the paper), the SVD is of the raw shifts, so when the
//! shift has a common offset (it always does at the template token) C1 is essentially the
//! mean-shift direction and the spectrum's first value carries `n·|mean|²`; early layers then
//! have effective rank 1. With `center`, the mean shift is removed first: C1 becomes the
//! direction along which prompts' shifts *differ* most (a PCA of the shifts), and the mean
//! shift is still written, as `mean_shift.{i}`.
//!
//! **Signs.** Each component is oriented so that the mean projection of the shift on it is
//! `>= 0`, i.e. `mean_shift · c >= 0` (the raw mean, also under `center`, where the centred
//! shift's mean is zero); ties broken as in [`hd_linalg::svd::orient`].
//!
//! # Guarantees
//!
//! Every output is computed before any is written, and each is written atomically. The
//! bytes depend only on the inputs and the options (and the CPU type), not on the thread
//! count: layers run in parallel, one sequential decomposition per thread.

#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use hd_formats::atomic::Outputs;
use hd_formats::layers::LayerSpec;
use hd_formats::meta::{base_metadata, check_prompts_match, check_same_prompts, copy_prompt_keys};
use hd_formats::prompts::PromptTable;
use hd_formats::tensors::{
    components_name, mean_shift_name, resid_name, singular_values_name, Format, Tensor, TensorData,
    TensorFile,
};
use hd_linalg::align::alignment;
use hd_linalg::matrix::Element;
use hd_linalg::shift::{contrast_shift, identity_shift, lstsq_shift_par, Operand, ShiftError};
use hd_linalg::spectrum::{check_tau, effective_rank, spectrum};
use hd_linalg::svd::{orient, top_k_svd_par};
use hd_linalg::{Matrix, Par};

/// How many leading components of neighbouring layers `alignment.csv` compares.
pub const ALIGN_TOP: usize = 5;

/// The paper's thresholds (it calls its function with 40, 60, 70, 80, 90 percent).
pub const DEFAULT_TAUS: [f64; 5] = [0.4, 0.6, 0.7, 0.8, 0.9];

/// How the shift between base and tuned activations is formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShiftMode {
    /// `D = tuned - base`.
    #[default]
    Identity,
    /// `D = X W - X`, `W` the minimum-norm least-squares solution of `X W = Y`.
    Lstsq,
}

/// Where the shift comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Two activation files over the same prompts.
    Pair {
        /// Base model activations (`X`).
        base: PathBuf,
        /// Safety-tuned model activations (`Y`).
        tuned: PathBuf,
        /// How to form `D`.
        shift: ShiftMode,
    },
    /// One activation file and its prompt rows: `D = harmful - mean(harmless)`.
    Contrast {
        /// Activations.
        acts: PathBuf,
        /// The prompt CSV whose rows match the activations' rows.
        rows: PathBuf,
        /// Column holding `harmful` / `harmless` (empty: row left out).
        by: String,
    },
}

/// Everything `shift-svd` needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Input.
    pub source: Source,
    /// Components file (`.safetensors` or `.npz`; `-` for stdout).
    pub out: PathBuf,
    /// Format of `out`, instead of the one its extension (or a pipe) implies.
    pub out_format: Option<Format>,
    /// `spectrum.csv`, if wanted.
    pub spectrum: Option<PathBuf>,
    /// `rank.csv`, if wanted.
    pub rank: Option<PathBuf>,
    /// `alignment.csv`, if wanted.
    pub alignment: Option<PathBuf>,
    /// Which layers.
    pub layers: LayerSpec,
    /// Components kept per layer (clamped to `min(n, d)`).
    pub k: usize,
    /// Subtract the mean shift before the SVD.
    pub center: bool,
    /// Effective-rank thresholds, each in `(0, 1]`.
    pub taus: Vec<f64>,
}

/// One layer's result.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerResult {
    /// Hidden-state index.
    pub layer: usize,
    /// Rows of `D` (prompts).
    pub rows: usize,
    /// Columns of `D` (hidden size).
    pub cols: usize,
    /// All `min(rows, cols)` singular values, non-increasing.
    pub singular_values: Vec<f64>,
    /// `k x d` unit rows, oriented.
    pub components: Matrix,
    /// Mean row of `D` before centring.
    pub mean_shift: Vec<f64>,
}

/// What a run computed (and, through [`run`], wrote).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Per layer, in increasing layer order.
    pub layers: Vec<LayerResult>,
    /// Metadata written into the components file.
    pub metadata: BTreeMap<String, String>,
}

/// Reads the inputs, computes every layer, then writes every requested output.
pub fn run(opts: &Options) -> Result<Outcome> {
    check_options(opts)?;
    let outcome = compute(opts)?;
    write_outputs(opts, &outcome)?;
    tracing::info!(
        "{} layer(s), wrote {}",
        outcome.layers.len(),
        [
            Some(&opts.out),
            opts.spectrum.as_ref(),
            opts.rank.as_ref(),
            opts.alignment.as_ref()
        ]
        .into_iter()
        .flatten()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
    );
    Ok(outcome)
}

/// The run's files: inputs, then outputs, as the flags name them.
pub fn output_set(opts: &Options) -> Outputs {
    let set = match &opts.source {
        Source::Pair { base, tuned, .. } => {
            Outputs::new().input("--base", base).input("--tuned", tuned)
        }
        Source::Contrast { acts, rows, .. } => Outputs::new()
            .input("--contrast", acts)
            .input("--rows", rows),
    };
    set.output("--out", &opts.out)
        .output_opt("--spectrum", opts.spectrum.as_deref())
        .output_opt("--rank", opts.rank.as_deref())
        .output_opt("--alignment", opts.alignment.as_deref())
}

/// `--format` when given, else what the path implies.
fn out_format(opts: &Options) -> Result<Format> {
    Ok(match opts.out_format {
        Some(f) => f,
        None => Format::from_path(&opts.out)?,
    })
}

/// Fails fast on options that would only fail after the work: an output that is an input or
/// another output (usage error), output format, `τ` range.
pub fn check_options(opts: &Options) -> Result<()> {
    output_set(opts).check()?;
    match out_format(opts)? {
        Format::Safetensors | Format::Npz => {}
        Format::Npy => bail!(
            "--out {}: a components file holds several tensors; use .safetensors or .npz",
            opts.out.display()
        ),
    }
    for &tau in &opts.taus {
        check_tau(tau).map_err(|e| anyhow!("--tau: {e}"))?;
    }
    if opts.k == 0 {
        bail!("--k must be at least 1");
    }
    Ok(())
}

/// Everything except writing: reads the inputs and computes every layer.
pub fn compute(opts: &Options) -> Result<Outcome> {
    let mut metadata = base_metadata("shift-svd", env!("CARGO_PKG_VERSION"));
    metadata.insert("k".into(), opts.k.to_string());
    metadata.insert("center".into(), opts.center.to_string());
    metadata.insert(
        "components".into(),
        "unit right singular vectors of the shift, sign: mean projection >= 0".into(),
    );
    let layers = match &opts.source {
        Source::Pair { base, tuned, shift } => {
            pair_results(opts, (base, tuned, *shift), &mut metadata)?
        }
        Source::Contrast { acts, rows, by } => {
            contrast_results(opts, (acts, rows, by), &mut metadata)?
        }
    };
    metadata.insert(
        "layers".into(),
        layers
            .iter()
            .map(|l| l.layer.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    notes(&layers, opts.k);
    Ok(Outcome { layers, metadata })
}

/// The layers of a base/tuned pair (`D = tuned - base`, or lstsq).
fn pair_results(
    opts: &Options,
    (base, tuned, shift): (&Path, &Path, ShiftMode),
    metadata: &mut BTreeMap<String, String>,
) -> Result<Vec<LayerResult>> {
    // One after the other: the reader maps each file while copying it out, so
    // reading both at once would double the peak memory for a few milliseconds saved.
    let mut base_f = read(base, &opts.layers)?;
    let mut tuned_f = read(tuned, &opts.layers)?;
    if let Some(w) = check_same_prompts(&base_f, &tuned_f)? {
        tracing::warn!("{w}");
    }
    copy_prompt_keys(&base_f.metadata, metadata);
    metadata.insert("base".into(), base.display().to_string());
    metadata.insert("tuned".into(), tuned.display().to_string());
    metadata.insert(
        "shift".into(),
        match shift {
            ShiftMode::Identity => "identity (tuned - base)",
            ShiftMode::Lstsq => "lstsq (X W - X, W = min-norm lstsq(X, Y))",
        }
        .into(),
    );
    let layers = pair_layers(opts, &base_f, &tuned_f)?;
    for &layer in &layers {
        let (n, d) = layer_shape(&base_f, layer)?;
        let (nt, dt) = layer_shape(&tuned_f, layer)?;
        if (n, d) != (nt, dt) {
            bail!(
                "layer {layer}: {} tensor '{name}' is [{n}, {d}] but {} tensor '{name}' \
                 is [{nt}, {dt}]; the shift needs the same prompts and hidden size in both",
                base_f.path,
                tuned_f.path,
                name = resid_name(layer)
            );
        }
    }
    let items: Vec<(usize, Tensor, Tensor)> = layers
        .iter()
        .map(|&l| (l, take(&mut base_f, l), take(&mut tuned_f, l)))
        .collect();
    let paths = (base_f.path, tuned_f.path);
    for_each_layer(items, |(layer, xb, yt)| {
        let d = pair_shift(layer, (&paths.0, xb), (&paths.1, yt), shift)?;
        decompose(layer, d, opts)
    })
}

/// The layers of one model's harmful rows against the mean of its harmless rows.
fn contrast_results(
    opts: &Options,
    (acts, rows, by): (&Path, &Path, &str),
    metadata: &mut BTreeMap<String, String>,
) -> Result<Vec<LayerResult>> {
    let mut acts_f = read(acts, &opts.layers)?;
    let table = PromptTable::read(rows)?;
    if table.is_empty() {
        bail!(
            "{}: no rows (a header only), expected one prompt row per activation row \
             of {}",
            table.path,
            acts_f.path
        );
    }
    if let Some(w) = check_prompts_match(&acts_f, &table)? {
        tracing::warn!("{w}");
    }
    copy_prompt_keys(&acts_f.metadata, metadata);
    metadata.insert("acts".into(), acts.display().to_string());
    metadata.insert("rows".into(), rows.display().to_string());
    metadata.insert(
        "shift".into(),
        format!("contrast (harmful - mean harmless, by column '{by}')"),
    );
    let labels = contrast_labels(&table, by)?;
    let available = nonempty_layers(&acts_f)?;
    let layers = opts
        .layers
        .resolve_available(&available)
        .with_context(|| format!("--layers {} in {}", opts.layers, acts_f.path))?;
    for &layer in &layers {
        let (n, _) = layer_shape(&acts_f, layer)?;
        if n != labels.len() {
            bail!(
                "{}: tensor '{}' has {n} rows but {} has {} prompt rows",
                acts_f.path,
                resid_name(layer),
                table.path,
                labels.len()
            );
        }
    }
    let items: Vec<(usize, Tensor)> = layers.iter().map(|&l| (l, take(&mut acts_f, l))).collect();
    let path = acts_f.path;
    for_each_layer(items, |(layer, t)| {
        let (n, d) = (t.shape[0], t.shape[1]);
        let d = match values(&t) {
            Values::F32(v) => contrast_shift(n, d, v, &labels),
            Values::F64(v) => contrast_shift(n, d, v, &labels),
        }
        .map_err(|e| anyhow!("layer {layer}: {path}: tensor '{}': {e}", resid_name(layer)))?;
        drop(t);
        decompose(layer, d, opts)
    })
}

/// Runs `work` on every item (one layer each), one layer per rayon thread. Each
/// decomposition is itself sequential, so the bits do not depend on the thread count, and
/// at most one layer's working set per thread is alive; the items are moved in, so a
/// layer's input tensors are freed as soon as its shift is formed. Results come back in
/// layer order; when several layers fail, the first of them is reported, whatever finished
/// first.
fn for_each_layer<T: Send>(
    items: Vec<T>,
    work: impl Fn(T) -> Result<LayerResult> + Sync,
) -> Result<Vec<LayerResult>> {
    use rayon::prelude::*;
    let bar = hd_cli::progress(items.len() as u64, "shift-svd");
    let results: Vec<Result<LayerResult>> = items
        .into_par_iter()
        .map(|item| {
            let r = work(item);
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    results.into_iter().collect()
}

/// Reads an activation file. A lone `.npy` matrix records no layer (the reader calls it
/// `resid.0`), so which layer it is must come from `--layers N`; taking it for layer 0
/// silently would pair or label the wrong layer.
fn read(path: &Path, layers: &LayerSpec) -> Result<TensorFile> {
    let mut file = TensorFile::read(path)?;
    if Format::from_path(path)? == Format::Npy && file.tensors.len() == 1 {
        let Some(l) = layers.single_index() else {
            return Err(hd_cli::usage(format!(
                "{}: a .npy file holds one matrix and does not record its layer; say which layer \
                 it is with --layers N (got --layers {layers}), or write .safetensors/.npz",
                file.path
            )));
        };
        if let Some(t) = file.tensors.remove(&resid_name(0)) {
            file.tensors.insert(resid_name(l), t);
        }
    }
    Ok(file)
}

/// Moves `resid.{layer}` out of the file (checked present by [`layer_shape`]).
fn take(file: &mut TensorFile, layer: usize) -> Tensor {
    file.tensors
        .remove(&resid_name(layer))
        .expect("layer checked present")
}

/// The `resid.{i}` layers of a file; an error when there are none.
fn nonempty_layers(file: &TensorFile) -> Result<Vec<usize>> {
    let layers = file.resid_layers();
    if layers.is_empty() {
        let names: Vec<&str> = file.tensors.keys().map(String::as_str).take(8).collect();
        bail!(
            "{}: no resid.{{i}} tensors (found {}), expected activations as written by act-dump",
            file.path,
            if names.is_empty() {
                "no tensors at all".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    Ok(layers)
}

/// The requested layers, which both files must hold.
fn pair_layers(opts: &Options, base: &TensorFile, tuned: &TensorFile) -> Result<Vec<usize>> {
    let (lb, lt) = (nonempty_layers(base)?, nonempty_layers(tuned)?);
    let rb = opts
        .layers
        .resolve_available(&lb)
        .with_context(|| format!("--layers {} in {}", opts.layers, base.path))?;
    let rt = opts
        .layers
        .resolve_available(&lt)
        .with_context(|| format!("--layers {} in {}", opts.layers, tuned.path))?;
    if rb != rt {
        let only = |a: &[usize], b: &[usize]| {
            let v: Vec<String> = a
                .iter()
                .filter(|l| !b.contains(l))
                .map(|l| l.to_string())
                .collect();
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(",")
            }
        };
        bail!(
            "{} and {} hold different layers for --layers {}: only in the first: {}; only in the \
             second: {} (pick common ones with --layers)",
            base.path,
            tuned.path,
            opts.layers,
            only(&rb, &rt),
            only(&rt, &rb)
        );
    }
    Ok(rb)
}

/// A 2-D float tensor's values, either width.
#[derive(Clone, Copy)]
enum Values<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// Checks that `resid.{layer}` is a non-empty 2-D float tensor; returns its shape.
fn layer_shape(file: &TensorFile, layer: usize) -> Result<(usize, usize)> {
    let name = resid_name(layer);
    let t = file.expect_shape(&name, &[None, None])?;
    let (rows, cols) = (t.shape[0], t.shape[1]);
    if rows == 0 || cols == 0 {
        bail!(
            "{}: tensor '{name}' is empty ([{rows}, {cols}]), expected at least one prompt and \
             one dimension",
            file.path
        );
    }
    if let TensorData::I64(_) = t.data {
        bail!(
            "{}: tensor '{name}' holds integers, expected F32 or F64 activations",
            file.path
        );
    }
    Ok((rows, cols))
}

/// The values of a tensor checked by [`layer_shape`].
fn values(t: &Tensor) -> Values<'_> {
    match &t.data {
        TensorData::F32(v) => Values::F32(v),
        TensorData::F64(v) => Values::F64(v),
        TensorData::I64(_) => unreachable!("checked by layer_shape"),
    }
}

fn lstsq_seq<X: Element, Y: Element>(
    n: usize,
    d: usize,
    x: &[X],
    y: &[Y],
) -> Result<(Matrix, usize), ShiftError> {
    lstsq_shift_par(n, d, x, y, Par::Seq)
}

/// `D` for one layer from the (path, tensor) of each side; consumes the tensors.
fn pair_shift(
    layer: usize,
    (base_path, xb): (&str, Tensor),
    (tuned_path, yt): (&str, Tensor),
    mode: ShiftMode,
) -> Result<Matrix> {
    let (n, d) = (xb.shape[0], xb.shape[1]);
    macro_rules! both {
        ($f:expr) => {
            match (values(&xb), values(&yt)) {
                (Values::F32(x), Values::F32(y)) => $f(n, d, x, y),
                (Values::F32(x), Values::F64(y)) => $f(n, d, x, y),
                (Values::F64(x), Values::F32(y)) => $f(n, d, x, y),
                (Values::F64(x), Values::F64(y)) => $f(n, d, x, y),
            }
        };
    }
    let res: Result<Matrix, ShiftError> = match mode {
        ShiftMode::Identity => both!(identity_shift),
        ShiftMode::Lstsq => both!(lstsq_seq).map(|(m, rank)| {
            tracing::debug!("layer {layer}: base activations have numerical rank {rank}");
            m
        }),
    };
    drop((xb, yt));
    res.map_err(|e| {
        let file = match e.operand {
            Some(Operand::Base) => base_path,
            Some(Operand::Tuned) => tuned_path,
            None => return anyhow!("layer {layer}: {}", e.error),
        };
        anyhow!(
            "layer {layer}: {file}: tensor '{}': {}",
            resid_name(layer),
            e.error
        )
    })
}

/// `Some(true)` harmful, `Some(false)` harmless, `None` (empty cell) left out.
fn contrast_labels(table: &PromptTable, by: &str) -> Result<Vec<Option<bool>>> {
    if table.column(by).is_none() {
        bail!(
            "{}: no column '{by}' (columns: {}), expected harmful/harmless labels",
            table.path,
            table.headers.join(", ")
        );
    }
    let mut out = Vec::with_capacity(table.len());
    let mut left_out = 0;
    for i in 0..table.len() {
        let v = table.get(i, by).unwrap_or("").trim();
        out.push(match v {
            "harmful" => Some(true),
            "harmless" => Some(false),
            "" => {
                left_out += 1;
                None
            }
            other => bail!(
                "{}: row {} (id '{}'): column '{by}' is '{other}', expected harmful, harmless, or empty to leave the row out",
                table.path,
                i + 1,
                table.id(i)
            ),
        });
    }
    let harmful = out.iter().filter(|l| **l == Some(true)).count();
    let harmless = out.iter().filter(|l| **l == Some(false)).count();
    if harmful == 0 || harmless == 0 {
        bail!(
            "{}: column '{by}' has {harmful} harmful and {harmless} harmless rows ({left_out} \
             empty); the contrast needs at least one of each",
            table.path
        );
    }
    if left_out > 0 {
        tracing::info!(
            "{}: {left_out} row(s) with an empty '{by}' left out",
            table.path
        );
    }
    Ok(out)
}

/// Centres (if asked), decomposes and orients one layer's shift.
fn decompose(layer: usize, mut d: Matrix, opts: &Options) -> Result<LayerResult> {
    let mean_shift = d.mean_row();
    if opts.center {
        d.sub_row(&mean_shift);
    }
    let (rows, cols) = (d.rows(), d.cols());
    let mut svd = top_k_svd_par(&d, opts.k, Par::Seq).map_err(|e| anyhow!("layer {layer}: {e}"))?;
    drop(d);
    orient(&mut svd.components, &mean_shift);
    tracing::debug!(
        "layer {layer}: D is {rows} x {cols}, s1 = {}",
        svd.singular_values[0]
    );
    Ok(LayerResult {
        layer,
        rows,
        cols,
        singular_values: svd.singular_values,
        components: svd.components,
        mean_shift,
    })
}

fn notes(layers: &[LayerResult], k: usize) {
    let zero: Vec<String> = layers
        .iter()
        .filter(|l| l.singular_values.first().is_none_or(|&s| s == 0.0))
        .map(|l| l.layer.to_string())
        .collect();
    if !zero.is_empty() {
        tracing::warn!(
            "the shift is exactly zero at layer(s) {}: effective rank 0, components arbitrary",
            zero.join(",")
        );
    }
    let clamped: Vec<&LayerResult> = layers.iter().filter(|l| l.components.rows() < k).collect();
    if let Some(first) = clamped.first() {
        tracing::warn!(
            "--k {k} is more than min(n, d) = {} for {} layer(s) (first: layer {}); keeping min(n, d) components there",
            first.components.rows(),
            clamped.len(),
            first.layer
        );
    }
}

/// The components file for an outcome.
pub fn components_file(outcome: &Outcome) -> Result<TensorFile> {
    let mut file = TensorFile::new(outcome.metadata.clone());
    for l in &outcome.layers {
        let c = &l.components;
        file.insert(
            components_name(l.layer),
            Tensor::f32(vec![c.rows(), c.cols()], c.to_f32())?,
        );
        file.insert(
            singular_values_name(l.layer),
            Tensor::f32(
                vec![l.singular_values.len()],
                l.singular_values.iter().map(|&x| x as f32).collect(),
            )?,
        );
        file.insert(
            mean_shift_name(l.layer),
            Tensor::f32(
                vec![l.mean_shift.len()],
                l.mean_shift.iter().map(|&x| x as f32).collect(),
            )?,
        );
    }
    Ok(file)
}

/// `spectrum.csv` contents.
pub fn spectrum_csv(outcome: &Outcome) -> String {
    let mut s = String::from("layer,component,singular_value,explained_ratio,cumulative\n");
    for l in &outcome.layers {
        for (i, e) in spectrum(&l.singular_values).iter().enumerate() {
            let _ = writeln!(
                s,
                "{},{},{},{},{}",
                l.layer,
                i + 1,
                num(e.singular_value),
                num(e.explained_ratio),
                num(e.cumulative)
            );
        }
    }
    s
}

/// `rank.csv` contents.
pub fn rank_csv(outcome: &Outcome, taus: &[f64]) -> Result<String> {
    let mut s = String::from("layer,tau,effective_rank\n");
    for l in &outcome.layers {
        for &tau in taus {
            let r = effective_rank(&l.singular_values, tau)?;
            let _ = writeln!(s, "{},{},{r}", l.layer, num(tau));
        }
    }
    Ok(s)
}

/// `alignment.csv` contents (components 1-based).
pub fn alignment_csv(outcome: &Outcome) -> String {
    let layers: Vec<(usize, &Matrix)> = outcome
        .layers
        .iter()
        .map(|l| (l.layer, &l.components))
        .collect();
    let mut s = String::from("layer_a,component_a,layer_b,component_b,abs_cos\n");
    for a in alignment(&layers, ALIGN_TOP) {
        let _ = writeln!(
            s,
            "{},{},{},{},{}",
            a.layer_a,
            a.component_a + 1,
            a.layer_b,
            a.component_b + 1,
            num(a.abs_cos)
        );
    }
    s
}

/// Shortest round-trip decimal; exponent form only outside `[1e-5, 1e16)` so tiny singular
/// values do not print as long runs of zeros.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || (1e-5..1e16).contains(&a) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// Writes every requested output after everything is computed: all are staged to temporary
/// files and renamed together, so a failure leaves none of them.
pub fn write_outputs(opts: &Options, outcome: &Outcome) -> Result<()> {
    let file = components_file(outcome)?;
    let mut csvs: Vec<(&PathBuf, String)> = Vec::new();
    if let Some(p) = &opts.spectrum {
        csvs.push((p, spectrum_csv(outcome)));
    }
    if let Some(p) = &opts.rank {
        csvs.push((p, rank_csv(outcome, &opts.taus)?));
    }
    if let Some(p) = &opts.alignment {
        csvs.push((p, alignment_csv(outcome)));
    }
    let mut outs = Outputs::new();
    file.stage_as(&mut outs, &opts.out, out_format(opts)?)?;
    for (path, text) in csvs {
        outs.stage(path, |w| w.write_all(text.as_bytes()))?;
    }
    outs.commit()?;
    Ok(())
}
