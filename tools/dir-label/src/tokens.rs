//! `dir-label tokens`: which input tokens drive each component (the paper's token PLRP).
//!
//! For each prompt and each chosen component `c` of layer ℓ, the target is `c·h_ℓ` at the
//! last prompt token, seeded `c/(c·h_ℓ)`; a token's relevance is its embedding times the
//! gradient, summed over the width, with the AttnLRP rules (default) or the exact gradient
//! (`--rules grad-x-input`). See [`hd_grad::ops`] for the rules and [`hd_analysis::tokens`]
//! for the maps and the top-token cut.
//!
//! Writes into `--out-dir`:
//! - `tokens.csv`: `id,component,position,token_id,token,relevance,raw_relevance,projection`
//!   for the reported positions (`--positions user`: the user text; `all`: every token);
//!   `relevance` is `raw_relevance` over the prompt's largest |raw_relevance| among them;
//! - `top_tokens.csv`: `component,rank,token,mean_relevance,count,cumulative_share,top` per
//!   component, token strings ranked by mean relevance, `top` = inside the reference's greedy
//!   cut at `--tau` (0.4) of the positive mass;
//! - `labels.csv`: `component,name,acc,auc,best_category,best_category_auc,top_tokens,
//!   suggested_label`, one row per component, for a person to edit. Accuracy and the
//!   category come from a `dir-label classify` folder (`--classify`), when given.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hd_analysis::tokens::{encode_rows, normalise, token_maps, top_tokens, Encoded, TokenMap};
use hd_formats::atomic::Outputs;
use hd_formats::components::{self, ComponentId};
use hd_formats::prompts::{line_at, PromptTable};
use hd_formats::tensors::TensorFile;
use hd_grad::diff::DiffModel;
use hd_grad::Rules;
use hd_lm::{Model, PromptFormat};

/// `tokens.csv`, `top_tokens.csv`, `labels.csv` and their headers.
pub const TOKENS_CSV: (&str, &str) = (
    "tokens.csv",
    "id,component,position,token_id,token,relevance,raw_relevance,projection",
);
/// See [`TOKENS_CSV`].
pub const TOP_TOKENS_CSV: (&str, &str) = (
    "top_tokens.csv",
    "component,rank,token,mean_relevance,count,cumulative_share,top",
);
/// See [`TOKENS_CSV`].
pub const LABELS_CSV: (&str, &str) = (
    "labels.csv",
    "component,name,acc,auc,best_category,best_category_auc,top_tokens,suggested_label",
);

/// Which positions are reported (and normalised over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// The user text only (the reference drops the template).
    User,
    /// Every token of the templated prompt.
    All,
}

impl Positions {
    /// The reported positions of an encoded prompt.
    fn span(self, e: &Encoded) -> std::ops::Range<usize> {
        match self {
            Positions::User => e.user.clone(),
            Positions::All => 0..e.ids.len(),
        }
    }
}

/// Everything `dir-label tokens` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// GGUF file or HF directory.
    pub model: PathBuf,
    /// Components file (`components.{ℓ}`).
    pub components: PathBuf,
    /// Prompt CSV.
    pub prompts: PathBuf,
    /// Hidden-state index ℓ of the components.
    pub layer: usize,
    /// 1-based component numbers.
    pub comps: Vec<usize>,
    /// Output folder.
    pub out_dir: PathBuf,
    /// AttnLRP or exact gradient.
    pub rules: Rules,
    /// Reported positions.
    pub positions: Positions,
    /// Prompts per traced forward (`None`: 16, or fewer when memory would not hold them).
    pub batch_size: Option<usize>,
    /// Greedy cut of the top tokens.
    pub tau: f64,
    /// A `dir-label classify` folder of the same components, for labels.csv.
    pub classify: Option<PathBuf>,
    /// Only the first N rows of each `category` value (all rows when `None`).
    pub per_category: Option<usize>,
    /// Chat formatting.
    pub format: PromptFormat,
}

/// Parses `1-10`, `1,3,6`, `2-4,8` into sorted, distinct 1-based numbers.
pub fn parse_comps(s: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("invalid component list '{s}': expected e.g. 1-10 or 1,3,6 (1-based)");
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a == 0 || b < a {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The settings that need no input read but the model's config: usage errors (exit 2).
fn check_settings(o: &Options) -> Result<hd_lm::Config> {
    if o.batch_size == Some(0) {
        return Err(hd_cli::usage("--batch-size must be at least 1"));
    }
    if !(o.tau > 0.0 && o.tau <= 1.0) {
        return Err(hd_cli::usage(format!(
            "--tau {}: expected 0 < tau <= 1",
            o.tau
        )));
    }
    let config = Model::read_config(&o.model)?;
    if o.layer > config.num_layers {
        return Err(hd_cli::usage(format!(
            "--layer {}: {} has hidden states 0..={}",
            o.layer,
            o.model.display(),
            config.num_layers
        )));
    }
    Ok(config)
}

/// The outputs `names` in `--out-dir`, checked against every input (the classify folder's
/// files included).
fn plan_outputs(o: &Options, names: &[&str]) -> Result<Outputs> {
    let classify_files: Vec<PathBuf> = o
        .classify
        .iter()
        .flat_map(|d| {
            [
                crate::classify::COMPONENTS_CSV.0,
                crate::classify::CATEGORIES_CSV.0,
                crate::classify::SOURCE_JSON,
            ]
            .map(|n| d.join(n))
        })
        .collect();
    let mut outs = Outputs::new()
        .input("--model", &o.model)
        .input("--components", &o.components)
        .input("--prompts", &o.prompts);
    for f in &classify_files {
        outs = outs.input("--classify", f);
    }
    Ok(outs.output_in_dir("--out-dir", &o.out_dir, names).check()?)
}

/// Reads the inputs, attributes every prompt, then writes the three CSVs.
pub fn run(o: &Options) -> Result<()> {
    let config = check_settings(o)?;
    let names = [TOKENS_CSV.0, TOP_TOKENS_CSV.0, LABELS_CSV.0];
    let mut outs = plan_outputs(o, &names)?;
    let dirs = read_directions(o, config.hidden_size)?;
    let table = PromptTable::read(&o.prompts)?;
    if table.is_empty() {
        bail!("{}: no prompt rows", o.prompts.display());
    }
    let table = table.select(&table.rows_by_category(None, o.per_category)?);
    let classify = o.classify.as_deref().map(read_classify).transpose()?;
    let model = Model::load(&o.model)?;
    let encoded = encode_rows(
        &model,
        (0..table.len()).map(|i| (table.id(i), table.prompt(i))),
        &o.format,
        &o.prompts.display().to_string(),
    )?;
    let seqs: Vec<Vec<u32>> = encoded.iter().map(|e| e.ids.clone()).collect();
    let batch = hd_cli::traced_batch(o.batch_size, &model, &seqs, o.layer, 16);
    let Model {
        config: cfg,
        weights,
        tokenizer,
        ..
    } = model;
    let diff = DiffModel::new(cfg, weights)?;
    let pb = hd_cli::progress(seqs.len() as u64, "prompts");
    let t0 = std::time::Instant::now();
    // Below the reported positions nothing is needed per prompt: the template prefix there
    // is run once per batch.
    let need_from: Vec<usize> = encoded.iter().map(|e| o.positions.span(e).start).collect();
    let maps = token_maps(
        &diff,
        &seqs,
        &need_from,
        o.layer,
        &dirs,
        o.rules,
        batch,
        |n| pb.set_position(n as u64),
    )?;
    pb.finish_and_clear();
    tracing::info!(
        "{} prompts x {} components attributed in {:.2} s",
        seqs.len(),
        dirs.len(),
        t0.elapsed().as_secs_f64()
    );
    let texts: Vec<Vec<String>> = seqs
        .iter()
        .map(|s| s.iter().map(|&t| token_string(&tokenizer, t)).collect())
        .collect();
    let report = Report {
        o,
        table: &table,
        encoded: &encoded,
        maps: &maps,
        texts: &texts,
    };
    let (tokens, tops) = report.tokens_and_top()?;
    let labels = report.labels(&tops, classify.as_ref())?;
    for (name, bytes) in names.iter().zip([tokens, top_csv(o, &tops)?, labels]) {
        outs.stage(&o.out_dir.join(name), |w| w.write_all(&bytes))?;
    }
    Ok(outs.commit()?)
}

/// A label-friendly form of a token: trimmed, with a whitespace-only token shown by escapes
/// (`\n`, `\t`, `␣` for spaces) rather than as an empty string.
fn visible(token: &str) -> String {
    let t = token.trim();
    if !t.is_empty() {
        return t.to_string();
    }
    token
        .chars()
        .map(|c| match c {
            '\n' => "\\n".to_string(),
            '\t' => "\\t".to_string(),
            ' ' => "␣".to_string(),
            c => c.escape_unicode().to_string(),
        })
        .collect()
}

/// A token as a reader sees it (decoded, not the byte-level `Ġ` form).
fn token_string(tok: &hd_lm::Tokenizer, id: u32) -> String {
    tok.decode(&[id], false)
        .unwrap_or_else(|_| tok.token_text(id))
}

/// The asked components of `--layer`, checked against the model
/// ([`components::read_directions`]: shape, range, finite, unit rows).
fn read_directions(o: &Options, d: usize) -> Result<Vec<Vec<f32>>> {
    let f = TensorFile::read(&o.components)?;
    let dirs = components::read_directions(&f, o.layer, &o.comps, d)
        .with_context(|| format!("--layer {} --comps", o.layer))?;
    if let Some(dir) = &o.classify {
        check_classify_source(dir, &f, o.layer)?;
    }
    Ok(dirs)
}

/// The `--classify` folder scored the directions of `--components`: its source.json records
/// the hash of `components.{layer}` (a folder without one, from before it was written, is
/// taken on trust with a warning).
fn check_classify_source(dir: &Path, comps: &TensorFile, layer: usize) -> Result<()> {
    let path = dir.join(crate::classify::SOURCE_JSON);
    let Ok(bytes) = std::fs::read(&path) else {
        tracing::warn!(
            "{}: no {}; cannot check that --classify {} scored the components of {}",
            dir.display(),
            crate::classify::SOURCE_JSON,
            dir.display(),
            comps.path
        );
        return Ok(());
    };
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", path.display()))?;
    let name = hd_formats::tensors::components_name(layer);
    let Some(recorded) = v["directions"][&name].as_str() else {
        bail!(
            "{}: no '{name}': --classify {} did not score layer {layer}",
            path.display(),
            dir.display()
        );
    };
    let ours = components::directions_hash(comps.get(&name)?);
    if recorded != ours {
        bail!(
            "{} and {} hold different components: tensor '{name}' is {ours} in {}, but the \
             --classify tables were made from {recorded} ({}); rerun dir-label classify on \
             these components",
            comps.path,
            dir.display(),
            comps.path,
            v["components"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// Per component of the layer: acc, auc, best category and its AUC (as text, for the CSV).
type ClassifyInfo = HashMap<String, [String; 4]>;

/// Reads `components.csv` and `categories.csv` of a `dir-label classify` folder; every cell
/// copied into labels.csv is checked (a component name, a figure in [0, 1] or empty).
fn read_classify(dir: &Path) -> Result<ClassifyInfo> {
    let comps = PromptTableLike::read(&dir.join(crate::classify::COMPONENTS_CSV.0))?;
    let cats = PromptTableLike::read(&dir.join(crate::classify::CATEGORIES_CSV.0))?;
    let mut out: ClassifyInfo = HashMap::new();
    for r in 0..comps.rows.len() {
        let name = comps.get(r, "name")?;
        name.parse::<ComponentId>()
            .map_err(|e| comps.bad(r, "name", &e.to_string()))?;
        out.insert(
            name.to_string(),
            [
                comps.unit(r, "acc")?.to_string(),
                comps.unit(r, "auc")?.to_string(),
                String::new(),
                String::new(),
            ],
        );
    }
    // The category whose AUC against the harmless rows is farthest from 0.5.
    let mut best: HashMap<String, (f64, String, String)> = HashMap::new();
    for r in 0..cats.rows.len() {
        let index = |col: &str| -> Result<usize> {
            let v = cats.get(r, col)?;
            v.parse()
                .map_err(|_| cats.bad(r, col, &format!("'{v}' is not a whole number")))
        };
        let k = index("component")?;
        if k == 0 {
            return Err(cats.bad(r, "component", "0 (components are numbered from 1)"));
        }
        let name = ComponentId::new(index("layer")?, k).to_string();
        let auc_s = cats.unit(r, "auc_vs_harmless")?;
        let Ok(auc) = auc_s.parse::<f64>() else {
            continue;
        };
        let e = best
            .entry(name)
            .or_insert((-1.0, String::new(), String::new()));
        if (auc - 0.5).abs() > e.0 {
            *e = (
                (auc - 0.5).abs(),
                cats.get(r, "category")?.to_string(),
                auc_s.to_string(),
            );
        }
    }
    for (name, (_, cat, auc)) in best {
        if let Some(v) = out.get_mut(&name) {
            v[2] = cat;
            v[3] = auc;
        }
    }
    Ok(out)
}

/// A plain CSV with a header, read whole (the classify outputs are small).
struct PromptTableLike {
    path: PathBuf,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// The editor line each row starts on (header = line 1).
    lines: Vec<u64>,
}

impl PromptTableLike {
    fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "{}: cannot read (a dir-label classify output)",
                path.display()
            )
        })?;
        let mut r = csv::Reader::from_reader(bytes.as_slice());
        let header = r
            .headers()
            .with_context(|| format!("{}: no header", path.display()))?
            .iter()
            .map(str::to_string)
            .collect();
        let (mut rows, mut lines) = (Vec::new(), Vec::new());
        for rec in r.records() {
            let rec = rec.with_context(|| format!("{}: not a CSV", path.display()))?;
            lines.push(rec.position().map_or(0, |p| line_at(&bytes, p.byte())));
            rows.push(rec.iter().map(str::to_string).collect());
        }
        Ok(PromptTableLike {
            path: path.into(),
            header,
            rows,
            lines,
        })
    }

    fn get(&self, row: usize, col: &str) -> Result<&str> {
        let i = self
            .header
            .iter()
            .position(|h| h == col)
            .with_context(|| format!("{}: no column '{col}'", self.path.display()))?;
        Ok(self.rows[row].get(i).map(String::as_str).unwrap_or(""))
    }

    /// A figure in [0, 1], or empty (undefined).
    fn unit(&self, row: usize, col: &str) -> Result<&str> {
        let v = self.get(row, col)?;
        match v.parse::<f64>() {
            _ if v.is_empty() => Ok(v),
            Ok(x) if (0.0..=1.0).contains(&x) => Ok(v),
            _ => Err(self.bad(
                row,
                col,
                &format!("'{v}', expected a number in [0, 1] or empty"),
            )),
        }
    }

    fn bad(&self, row: usize, col: &str, what: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: line {}, column '{col}': {what}",
            self.path.display(),
            self.lines[row]
        )
    }
}

struct Report<'a> {
    o: &'a Options,
    table: &'a PromptTable,
    encoded: &'a [hd_analysis::tokens::Encoded],
    maps: &'a [Vec<TokenMap>],
    texts: &'a [Vec<String>],
}

impl Report<'_> {
    fn positions(&self, i: usize) -> std::ops::Range<usize> {
        self.o.positions.span(&self.encoded[i])
    }

    fn name(&self, j: usize) -> String {
        ComponentId::new(self.o.layer, self.o.comps[j]).to_string()
    }

    /// tokens.csv, and per component the ranked token strings.
    fn tokens_and_top(&self) -> Result<(Vec<u8>, Vec<Vec<hd_analysis::tokens::TopToken>>)> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(TOKENS_CSV.1.split(','))?;
        let mut occ: Vec<Vec<(usize, usize, f32)>> = vec![Vec::new(); self.o.comps.len()];
        for (i, per_comp) in self.maps.iter().enumerate() {
            let span = self.positions(i);
            for (j, m) in per_comp.iter().enumerate() {
                let rel = normalise(&m.raw[span.clone()]);
                for (k, p) in span.clone().enumerate() {
                    w.write_record([
                        self.table.id(i),
                        &self.name(j),
                        &p.to_string(),
                        &self.encoded[i].ids[p].to_string(),
                        &self.texts[i][p],
                        &format!("{:.6}", rel[k]),
                        &format!("{:.6e}", m.raw[p]),
                        &format!("{:.6}", m.projection[p]),
                    ])?;
                    occ[j].push((i, p, rel[k]));
                }
            }
        }
        let tops = occ
            .iter()
            .map(|o| {
                top_tokens(
                    o.iter().map(|&(i, p, r)| (self.texts[i][p].as_str(), r)),
                    self.o.tau,
                )
            })
            .collect();
        Ok((w.into_inner()?, tops))
    }

    fn labels(
        &self,
        tops: &[Vec<hd_analysis::tokens::TopToken>],
        classify: Option<&ClassifyInfo>,
    ) -> Result<Vec<u8>> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(LABELS_CSV.1.split(','))?;
        for (j, top) in tops.iter().enumerate() {
            let name = self.name(j);
            let info = classify
                .and_then(|c| c.get(&name).cloned())
                .unwrap_or_default();
            let words: Vec<String> = top
                .iter()
                .filter(|t| t.top)
                .take(5)
                .map(|t| format!("'{}'", visible(&t.token)))
                .collect();
            let mut suggested = words.join(" ");
            if !info[2].is_empty() {
                suggested = format!("{} | {suggested}", info[2]);
            }
            w.write_record([
                &self.o.comps[j].to_string(),
                &name,
                &info[0],
                &info[1],
                &info[2],
                &info[3],
                &words.join(" "),
                &suggested,
            ])?;
        }
        Ok(w.into_inner()?)
    }
}

fn top_csv(o: &Options, tops: &[Vec<hd_analysis::tokens::TopToken>]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(TOP_TOKENS_CSV.1.split(','))?;
    for (j, top) in tops.iter().enumerate() {
        let name = ComponentId::new(o.layer, o.comps[j]).to_string();
        for (rank, t) in top.iter().enumerate() {
            w.write_record([
                &name,
                &(rank + 1).to_string(),
                &t.token,
                &format!("{:.6}", t.mean),
                &t.count.to_string(),
                &format!("{:.6}", t.cumulative_share),
                &u8::from(t.top).to_string(),
            ])?;
        }
    }
    Ok(w.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_tokens_stay_visible() {
        assert_eq!(visible(" the"), "the");
        assert_eq!(visible("\n\n"), "\\n\\n");
        assert_eq!(visible(" "), "␣");
    }

    #[test]
    fn component_lists() {
        assert_eq!(parse_comps("1-3").unwrap(), [1, 2, 3]);
        assert_eq!(parse_comps("6,1,2-3,3").unwrap(), [1, 2, 3, 6]);
        assert!(parse_comps("0-2").is_err());
        assert!(parse_comps("3-1").is_err());
        assert!(parse_comps("a").is_err());
    }
}
