//! `dir-interact relevance`: how much each top component of a source layer S feeds each top
//! component of a target layer L at the last prompt token, `R(k→j) = z_k (v_k·g)` (see
//! [`hd_analysis::relevance`]), averaged over prompts and per category.
//!
//! Writes into `--out-dir`:
//! - `relevance.safetensors`: `relevance.{S}.{L}` `[k_S, k_L]`, means over all prompts;
//! - `relevance.csv`: `source_layer,source_component,target_layer,target_component,category,
//!   mean,std,n` (components named `L{l}-C{k}`, 1-based; category `all` plus each category);
//! - `edges.csv`: `source,target,source_layer,target_layer,relevance` — the strongest edges
//!   over all pairs (by |mean| of category `all`), the network of `--all-adjacent`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use hd_analysis::relevance::{mean_std, pairs_relevance, Pair, PairRelevance};
use hd_analysis::tokens::encode_with_user_span;
use hd_formats::atomic::Outputs;
use hd_formats::meta::{base_metadata, set_prompt_hashes};
use hd_formats::prompts::PromptTable;
use hd_formats::tensors::{Tensor, TensorFile};
use hd_grad::diff::DiffModel;
use hd_grad::Rules;
use hd_lm::{Model, PromptFormat};

use crate::common::{categories, category_order, comp_name, csv_bytes, num, read_dirs};

/// `relevance.csv` and its header.
pub const RELEVANCE_CSV: (&str, &str) = (
    "relevance.csv",
    "source_layer,source_component,target_layer,target_component,category,mean,std,n",
);
/// `edges.csv` and its header.
pub const EDGES_CSV: (&str, &str) = (
    "edges.csv",
    "source,target,source_layer,target_layer,relevance",
);
/// The tensor file.
pub const RELEVANCE_ST: &str = "relevance.safetensors";

/// Which layer pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pairs {
    /// One pair (S, L).
    One {
        /// Source S.
        source: usize,
        /// Target L.
        target: usize,
    },
    /// Every (S, S+1) whose layers the components file holds.
    AllAdjacent,
}

/// Which edges go into `edges.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EdgeCut {
    /// The `n` strongest by |relevance|.
    Top(usize),
    /// Every edge with |relevance| at least this.
    Threshold(f64),
}

/// Everything `dir-interact relevance` needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// GGUF file or HF directory (the tuned model, as the reference).
    pub model: PathBuf,
    /// Components file.
    pub components: PathBuf,
    /// Prompt CSV.
    pub prompts: PathBuf,
    /// Layer pairs.
    pub pairs: Pairs,
    /// Top source components.
    pub k_source: usize,
    /// Top target components.
    pub k_target: usize,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Only these categories (all when `None`).
    pub categories: Option<Vec<String>>,
    /// At most the first N rows of each category (file order).
    pub per_category: Option<usize>,
    /// AttnLRP (the reference) or the exact gradient.
    pub rules: Rules,
    /// Prompts per traced forward.
    pub batch_size: Option<usize>,
    /// Edges written.
    pub edges: EdgeCut,
    /// Chat formatting.
    pub format: PromptFormat,
}

/// Source layer, target layer, and their directions.
type LayerPair = (usize, usize, Vec<Vec<f32>>, Vec<Vec<f32>>);

struct Inputs {
    table: PromptTable,
    rows: Vec<usize>,
    cats: Vec<String>,
    pairs: Vec<LayerPair>,
}

fn check_args(o: &Options) -> Result<()> {
    if o.batch_size == Some(0) {
        return Err(hd_cli::usage("--batch-size must be at least 1"));
    }
    if o.k_source == 0 || o.k_target == 0 {
        return Err(hd_cli::usage(
            "--k-source and --k-target must be at least 1",
        ));
    }
    if let EdgeCut::Threshold(t) = o.edges {
        if !t.is_finite() || t < 0.0 {
            return Err(hd_cli::usage(format!(
                "--edge-threshold {t}: expected a finite value >= 0"
            )));
        }
    }
    Ok(())
}

fn read_inputs(o: &Options, nl: usize, d: usize) -> Result<Inputs> {
    let comps = TensorFile::read(&o.components)?;
    let layer_pairs: Vec<(usize, usize)> = match o.pairs {
        Pairs::One { source, target } => {
            if source >= target || target > nl {
                return Err(hd_cli::usage(format!(
                    "--source {source} --target {target}: expected source < target <= {nl} \
                     ({} has hidden states 0..={nl})",
                    o.model.display()
                )));
            }
            vec![(source, target)]
        }
        Pairs::AllAdjacent => {
            let have = |l: usize| comps.get(&hd_formats::tensors::components_name(l)).is_ok();
            let v: Vec<(usize, usize)> = (0..nl)
                .filter(|&s| have(s) && have(s + 1))
                .map(|s| (s, s + 1))
                .collect();
            if v.is_empty() {
                bail!(
                    "{}: no two adjacent layers of components.{{i}} (0..={nl})",
                    o.components.display()
                );
            }
            v
        }
    };
    let mut pairs = Vec::with_capacity(layer_pairs.len());
    for (s, l) in layer_pairs {
        let src = read_dirs(&comps, &o.components, s, o.k_source, d)?;
        let tgt = read_dirs(&comps, &o.components, l, o.k_target, d)?;
        pairs.push((s, l, src, tgt));
    }
    let table = PromptTable::read(&o.prompts)?;
    if table.is_empty() {
        bail!("{}: no prompt rows", o.prompts.display());
    }
    let rows = table
        .rows_by_category(o.categories.as_deref(), o.per_category)
        .map_err(hd_cli::categories_error)?;
    let all = categories(&table);
    let cats = rows.iter().map(|&i| all[i].clone()).collect();
    Ok(Inputs {
        table,
        rows,
        cats,
        pairs,
    })
}

/// Reads the inputs, computes every pair, then writes the three outputs together.
pub fn run(o: &Options) -> Result<()> {
    check_args(o)?;
    let config = Model::read_config(&o.model)?;
    let (nl, d) = (config.num_layers, config.hidden_size);
    let inp = read_inputs(o, nl, d)?;
    let names = [RELEVANCE_ST, RELEVANCE_CSV.0, EDGES_CSV.0];
    let paths = names.map(|n| o.out_dir.join(n));
    // The folder is created when the outputs are staged, after every late failure.
    let mut outs = Outputs::new()
        .input("--model", &o.model)
        .input("--components", &o.components)
        .input("--prompts", &o.prompts)
        .output_in_dir("--out-dir", &o.out_dir, &names)
        .check()?;
    let model = Model::load(&o.model)?;
    let mut seqs = Vec::with_capacity(inp.rows.len());
    for &i in &inp.rows {
        let e =
            encode_with_user_span(&model, inp.table.prompt(i), &o.format).with_context(|| {
                format!("{}: row with id '{}'", o.prompts.display(), inp.table.id(i))
            })?;
        seqs.push(e.ids);
    }
    let deepest = inp
        .pairs
        .iter()
        .map(|p| p.1)
        .max()
        .unwrap_or(model.config.num_layers);
    let batch = hd_cli::traced_batch(o.batch_size, &model, &seqs, deepest, 16);
    let Model {
        config, weights, ..
    } = model;
    let diff = DiffModel::new(config, weights)?;
    let pb = hd_cli::progress(seqs.len() as u64, "prompts");
    let pairs: Vec<Pair> = inp
        .pairs
        .iter()
        .map(|(s, l, src, tgt)| Pair {
            source: *s,
            target: *l,
            source_dirs: src,
            target_dirs: tgt,
        })
        .collect();
    let rels = pairs_relevance(&diff, &seqs, &pairs, o.rules, batch, |n| {
        pb.set_position(n as u64)
    })?;
    let results: Vec<(usize, usize, PairRelevance)> = inp
        .pairs
        .iter()
        .zip(rels)
        .map(|((s, l, _, _), r)| (*s, *l, r))
        .collect();
    pb.finish_and_clear();
    let mut tf = TensorFile::new(base_metadata("dir-interact", env!("CARGO_PKG_VERSION")));
    set_prompt_hashes(&mut tf.metadata, &inp.table);
    for (s, l, r) in &results {
        let means = cell_stats(r, &inp.cats, "all")
            .into_iter()
            .map(|c| c.0 as f32);
        tf.insert(
            format!("relevance.{s}.{l}"),
            Tensor::f32(vec![r.k_source, r.k_target], means.collect())?,
        );
    }
    tf.stage(&mut outs, &paths[0])?;
    let rel = relevance_csv(&results, &inp.cats)?;
    outs.stage(&paths[1], |w| w.write_all(&rel))?;
    let edges = edges_csv(&results, &inp.cats, o.edges)?;
    outs.stage(&paths[2], |w| w.write_all(&edges))?;
    outs.commit()?;
    Ok(())
}

/// `(mean, std, n)` of every cell over the prompts of `category` (`all`: every prompt).
fn cell_stats(r: &PairRelevance, cats: &[String], category: &str) -> Vec<(f64, f64, usize)> {
    (0..r.k_source * r.k_target)
        .map(|c| {
            mean_std(
                r.values
                    .iter()
                    .zip(cats)
                    .filter(|(_, k)| category == "all" || k.as_str() == category)
                    .map(|(v, _)| v[c]),
            )
        })
        .collect()
}

fn relevance_csv(results: &[(usize, usize, PairRelevance)], cats: &[String]) -> Result<Vec<u8>> {
    let mut order = vec!["all".to_string()];
    order.extend(category_order(cats).into_iter().filter(|c| c != "all"));
    let mut rows = Vec::new();
    for (s, l, r) in results {
        for cat in &order {
            let st = cell_stats(r, cats, cat);
            for k in 0..r.k_source {
                for j in 0..r.k_target {
                    let (m, sd, n) = st[k * r.k_target + j];
                    rows.push(vec![
                        s.to_string(),
                        comp_name(*s, k),
                        l.to_string(),
                        comp_name(*l, j),
                        cat.clone(),
                        num(m),
                        num(sd),
                        n.to_string(),
                    ]);
                }
            }
        }
    }
    csv_bytes(RELEVANCE_CSV.1, rows)
}

fn edges_csv(
    results: &[(usize, usize, PairRelevance)],
    cats: &[String],
    cut: EdgeCut,
) -> Result<Vec<u8>> {
    let mut all: Vec<(f64, usize, usize, usize, usize)> = Vec::new();
    for (s, l, r) in results {
        for (c, (m, _, _)) in cell_stats(r, cats, "all").into_iter().enumerate() {
            all.push((m, *s, c / r.k_target, *l, c % r.k_target));
        }
    }
    // Strongest first; ties in a fixed order so reruns are byte-identical.
    all.sort_by(|a, b| {
        b.0.abs()
            .total_cmp(&a.0.abs())
            .then((a.1, a.2, a.3, a.4).cmp(&(b.1, b.2, b.3, b.4)))
    });
    let kept: Vec<_> = match cut {
        EdgeCut::Top(n) => all.into_iter().take(n).collect(),
        EdgeCut::Threshold(t) => all.into_iter().filter(|e| e.0.abs() >= t).collect(),
    };
    csv_bytes(
        EDGES_CSV.1,
        kept.into_iter().map(|(m, s, k, l, j)| {
            vec![
                comp_name(s, k),
                comp_name(l, j),
                s.to_string(),
                l.to_string(),
                num(m),
            ]
        }),
    )
}
