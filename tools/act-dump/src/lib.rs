//! act-dump: residual-stream activations of a chat model, one row per prompt (or per token),
//! in Hugging Face `output_hidden_states` numbering, plus a rows CSV describing the model's
//! next-token behaviour. See DESIGN.md, "Activation file".

use anyhow::{bail, Context, Result};
use hd_formats::layers::LayerSpec;
use hd_formats::meta;
use hd_formats::prompts::PromptTable;
use hd_formats::tensors::{resid_name, Tensor, TensorFile};
use hd_lm::kernels::log_softmax;
use hd_lm::{Model, Positions, PromptFormat, Request};
use std::path::{Path, PathBuf};

pub use hd_analysis::refusal::DEFAULT_REFUSAL_TOKENS;
use hd_analysis::refusal::RefusalTokens;

/// `K/N`: this run takes every N-th batch starting at batch K.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based shard index.
    pub k: usize,
    /// Number of shards.
    pub n: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid shard '{s}': expected K/N with 0 <= K < N, e.g. 0/4");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (usize, usize) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || k >= n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

/// Everything a dump needs.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// GGUF file or HF directory.
    pub model: PathBuf,
    /// Prompt CSV.
    pub prompts: PathBuf,
    /// Activation file (.safetensors, .npz, .npy).
    pub out: PathBuf,
    /// Optional rows CSV.
    pub rows: Option<PathBuf>,
    /// Layers to dump.
    pub layers: LayerSpec,
    /// Last position or all.
    pub positions: Positions,
    /// Prompts per forward pass.
    pub batch_size: usize,
    /// Chat formatting.
    pub format: PromptFormat,
    /// Optional shard.
    pub shard: Option<Shard>,
    /// Comma-separated refusal-token strings.
    pub refusal_tokens: String,
    /// Run the prompt set's common prefix (and each batch's) once and reuse it.
    pub share_prefix: bool,
}

/// Indices of the prompts a shard processes: whole batches, so that every prompt is computed
/// in exactly the batch it would be in without sharding (GEMM summation order depends on the
/// batch; this keeps merged shards byte-identical to an unsharded run).
pub fn shard_indices(n: usize, batch: usize, shard: Option<Shard>) -> Vec<usize> {
    match shard {
        None => (0..n).collect(),
        Some(s) => (0..n).filter(|i| (i / batch) % s.n == s.k).collect(),
    }
}

/// Runs the dump.
pub fn dump(o: &DumpOptions) -> Result<()> {
    if o.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    hd_formats::tensors::Format::from_path(&o.out)?;
    for p in std::iter::once(&o.out).chain(o.rows.as_ref()) {
        hd_formats::atomic::check_writable(p)?;
    }
    let table = PromptTable::read(&o.prompts)?;
    if table.is_empty() {
        bail!("{}: no prompt rows", o.prompts.display());
    }
    let full_hash = table.ids_hash();
    let t0 = std::time::Instant::now();
    let model = Model::load(&o.model)?;
    tracing::debug!(
        "loaded {} in {:.2} s",
        o.model.display(),
        t0.elapsed().as_secs_f64()
    );
    let cfg = &model.config;
    let layers = o.layers.resolve(cfg.num_layers)?;
    if hd_formats::tensors::Format::from_path(&o.out)? == hd_formats::tensors::Format::Npy
        && (layers.len() != 1 || o.positions == Positions::All)
    {
        bail!(
            "{}: a .npy file holds one tensor; dump one layer with --positions last, or write .npz / .safetensors",
            o.out.display()
        );
    }
    // Every prompt is encoded, also in a shard: the shared prefix comes from the whole set, so
    // that shards compute exactly what an unsharded run computes.
    let mut all_seqs = Vec::with_capacity(table.len());
    for i in 0..table.len() {
        let ids = model
            .encode_prompt(table.prompt(i), &o.format)
            .with_context(|| format!("{}: row with id '{}'", o.prompts.display(), table.id(i)))?;
        if ids.is_empty() {
            bail!(
                "{}: row with id '{}': the prompt encodes to no tokens",
                o.prompts.display(),
                table.id(i)
            );
        }
        if ids.len() > cfg.max_position_embeddings {
            bail!(
                "{}: row with id '{}': {} tokens, more than the model's context of {}",
                o.prompts.display(),
                table.id(i),
                ids.len(),
                cfg.max_position_embeddings
            );
        }
        all_seqs.push(ids);
    }
    let shared = if o.share_prefix {
        let refs: Vec<&[u32]> = all_seqs.iter().map(Vec::as_slice).collect();
        hd_lm::forward::shared_prefix(&refs).to_vec()
    } else {
        vec![]
    };
    let idx = shard_indices(table.len(), o.batch_size, o.shard);
    let table = table.select(&idx);
    let seqs: Vec<Vec<u32>> = idx
        .iter()
        .map(|&i| std::mem::take(&mut all_seqs[i]))
        .collect();
    drop(all_seqs);
    let refusal = RefusalTokens::parse(&model.tokenizer, &o.refusal_tokens)?;
    let d = cfg.hidden_size;
    let req = Request {
        capture_layers: layers.clone(),
        capture_positions: o.positions,
        interventions: vec![],
        logits: o.rows.is_some(),
    };
    let mut per_layer: Vec<Vec<f32>> = vec![Vec::new(); layers.len()];
    let mut row_extra: Vec<Vec<String>> = Vec::with_capacity(seqs.len());
    let total_tokens: usize = seqs.iter().map(Vec::len).sum();
    let pb = hd_cli::progress(seqs.len() as u64, "prompts");
    let fw = model.forward();
    let t0 = std::time::Instant::now();
    let base = if shared.is_empty() {
        None
    } else {
        Some(fw.prefix(&shared, &req, false)?)
    };
    for chunk in seqs.chunks(o.batch_size) {
        let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        let out = if o.share_prefix {
            fw.run_shared(base.as_ref(), &refs, &req)?
        } else {
            fw.run(&refs, &req)?
        };
        for (buf, (_, states)) in per_layer.iter_mut().zip(out.captured) {
            buf.extend_from_slice(&states);
        }
        if let Some(lg) = out.logits {
            let v = cfg.vocab_size;
            for (j, s) in chunk.iter().enumerate() {
                let lp = log_softmax(&lg[j * v..(j + 1) * v]);
                let top = (0..v).fold(0, |b, i| if lp[i] > lp[b] { i } else { b });
                let score = refusal.score(&lp);
                row_extra.push(vec![
                    s.len().to_string(),
                    top.to_string(),
                    model.tokenizer.token_text(top as u32),
                    format!("{:.6}", lp[top]),
                    format!("{score:.6}"),
                ]);
            }
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    tracing::debug!(
        "forward: {} prompts, {total_tokens} tokens ({} of them a prefix shared by all) in {secs:.2} s, {:.0} tokens/s",
        seqs.len(),
        shared.len(),
        total_tokens as f64 / secs
    );
    let t0 = std::time::Instant::now();

    let mut md = meta::base_metadata("act-dump", env!("CARGO_PKG_VERSION"));
    meta::set_prompt_ids_hash(&mut md, &table);
    md.insert("model".into(), o.model.display().to_string());
    let mut hashes = Vec::new();
    for f in &model.weight_files {
        hashes.push(meta::sha256_file(f)?);
    }
    md.insert("model_hash".into(), hashes.join(","));
    md.insert("architecture".into(), cfg.arch.name().into());
    md.insert("hidden_size".into(), d.to_string());
    md.insert("num_layers".into(), cfg.num_layers.to_string());
    md.insert(
        "template".into(),
        if o.format.no_template {
            "none".into()
        } else {
            model
                .template
                .as_ref()
                .map(|t| t.source().to_string())
                .unwrap_or_default()
        },
    );
    if let Some(s) = &o.format.system {
        md.insert("system".into(), s.clone());
    }
    md.insert("layers".into(), serde_json::to_string(&layers)?);
    md.insert(
        "positions".into(),
        match o.positions {
            Positions::Last => "last",
            Positions::All => "all",
        }
        .into(),
    );
    md.insert("n_prompts".into(), table.len().to_string());
    md.insert("batch_size".into(), o.batch_size.to_string());
    md.insert(
        "share_prefix".into(),
        if o.share_prefix { "on" } else { "off" }.into(),
    );
    md.insert("shared_prefix_tokens".into(), shared.len().to_string());
    md.insert(
        "refusal_tokens".into(),
        serde_json::to_string(&refusal.names)?,
    );
    if let Some(s) = o.shard {
        md.insert("shard".into(), format!("{}/{}", s.k, s.n));
        md.insert("full_prompt_ids_hash".into(), full_hash);
        if let Some(r) = &o.rows {
            md.insert("rows".into(), r.display().to_string());
        }
    }
    let mut file = TensorFile::new(md);
    let n_rows = match o.positions {
        Positions::Last => table.len(),
        Positions::All => total_tokens,
    };
    for (&l, buf) in layers.iter().zip(per_layer) {
        file.insert(resid_name(l), Tensor::f32(vec![n_rows, d], buf)?);
    }
    if o.positions == Positions::All {
        let mut off = vec![0i64];
        for s in &seqs {
            off.push(off.last().unwrap() + s.len() as i64);
        }
        file.insert("offsets", Tensor::i64(vec![seqs.len() + 1], off)?);
        let toks: Vec<i64> = seqs.iter().flatten().map(|&t| t as i64).collect();
        file.insert("token_ids", Tensor::i64(vec![total_tokens], toks)?);
    }
    write_outputs(
        &file,
        &o.out,
        o.rows.as_deref().map(|r| (r, &table, row_extra)),
    )?;
    tracing::debug!(
        "hashed the model and wrote {} in {:.2} s",
        o.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Rows CSV columns added by act-dump.
pub const ROW_COLUMNS: [&str; 5] = [
    "n_tokens",
    "top1_id",
    "top1_token",
    "top1_logprob",
    "refusal_score",
];

fn write_outputs(
    file: &TensorFile,
    out: &Path,
    rows: Option<(&Path, &PromptTable, Vec<Vec<String>>)>,
) -> Result<()> {
    file.write(out)?;
    if let Some((path, table, extra)) = rows {
        if let Err(e) = table.write_with(path, &ROW_COLUMNS, &extra) {
            // Both outputs or neither: make must not see a half-finished stage as done.
            let _ = std::fs::remove_file(out);
            return Err(e.into());
        }
    }
    Ok(())
}

/// Joins `--shard` outputs (any order) into the file an unsharded run would have written.
pub fn merge(shards: &[PathBuf], out: &Path, rows: Option<&Path>) -> Result<()> {
    if shards.is_empty() {
        bail!("merge: no shard files given");
    }
    let files: Vec<TensorFile> = shards
        .iter()
        .map(|p| TensorFile::read(p))
        .collect::<Result<_, _>>()?;
    let shard_of = |f: &TensorFile| -> Result<Shard> {
        let s = f.metadata.get("shard").with_context(|| {
            format!(
                "{}: not an act-dump --shard output (no 'shard' metadata)",
                f.path
            )
        })?;
        s.parse::<Shard>()
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.path))
    };
    let n = shard_of(&files[0])?.n;
    let mut by_k: Vec<Option<&TensorFile>> = vec![None; n];
    let same_keys = [
        "full_prompt_ids_hash",
        "model_hash",
        "layers",
        "positions",
        "template",
        "batch_size",
        "share_prefix",
        "shared_prefix_tokens",
        "refusal_tokens",
        "system",
        "hidden_size",
    ];
    for f in &files {
        let s = shard_of(f)?;
        if s.n != n {
            bail!(
                "{}: shard {}/{} does not belong with {} ({} shards)",
                f.path,
                s.k,
                s.n,
                files[0].path,
                n
            );
        }
        if let Some(prev) = by_k[s.k] {
            bail!("{} and {}: both are shard {}/{}", prev.path, f.path, s.k, n);
        }
        for k in same_keys {
            if f.metadata.get(k) != files[0].metadata.get(k) {
                bail!(
                    "{} and {}: metadata '{}' differs; shards must come from the same command",
                    files[0].path,
                    f.path,
                    k
                );
            }
        }
        by_k[s.k] = Some(f);
    }
    if let Some(k) = by_k.iter().position(Option::is_none) {
        bail!("merge: shard {k}/{n} is missing");
    }
    let parts: Vec<&TensorFile> = by_k.into_iter().map(Option::unwrap).collect();
    let batch: usize = parts[0]
        .metadata
        .get("batch_size")
        .and_then(|b| b.parse().ok())
        .context("shard without batch_size metadata")?;
    let counts: Vec<usize> = parts
        .iter()
        .map(|f| {
            f.metadata
                .get("n_prompts")
                .and_then(|c| c.parse().ok())
                .with_context(|| format!("{}: no n_prompts metadata", f.path))
        })
        .collect::<Result<_>>()?;
    // Global order: batch b comes from shard b % n, as its (b / n)-th batch.
    let total: usize = counts.iter().sum();
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(total); // (shard, local index)
    let mut taken = vec![0usize; n];
    let mut b = 0;
    while order.len() < total {
        let k = b % n;
        let take = batch.min(counts[k] - taken[k]);
        if take == 0 {
            bail!("merge: shard sizes {counts:?} do not fit {n} shards of batches of {batch}");
        }
        order.extend((taken[k]..taken[k] + take).map(|i| (k, i)));
        taken[k] += take;
        b += 1;
    }
    let all = parts[0].metadata.get("positions").map(String::as_str) == Some("all");
    let mut md = parts[0].metadata.clone();
    md.remove("shard");
    md.remove("rows");
    let full = md
        .remove("full_prompt_ids_hash")
        .context("shard without full_prompt_ids_hash metadata")?;
    md.insert(meta::PROMPT_IDS_HASH.into(), full);
    md.insert("n_prompts".into(), total.to_string());
    md.insert(
        meta::ARGV.into(),
        meta::base_metadata("act-dump", "")[meta::ARGV].clone(),
    );
    let mut merged_rows: Option<(Vec<String>, Vec<Vec<String>>, String)> = None;
    if let Some(r) = rows {
        let mut tables = Vec::new();
        for f in &parts {
            let p = f.metadata.get("rows").with_context(|| {
                format!(
                    "{}: no rows CSV recorded; run the shards with --rows",
                    f.path
                )
            })?;
            tables.push(PromptTable::read(Path::new(p))?);
        }
        let headers = tables[0].headers.clone();
        let rows_out: Vec<Vec<String>> = order
            .iter()
            .map(|&(k, i)| tables[k].rows[i].clone())
            .collect();
        merged_rows = Some((headers, rows_out, r.display().to_string()));
    }
    let mut file = TensorFile::new(md);
    let offsets: Vec<&[i64]> = if all {
        parts
            .iter()
            .map(|f| {
                f.get("offsets")
                    .ok()
                    .and_then(|t| t.as_i64())
                    .with_context(|| format!("{}: no offsets", f.path))
            })
            .collect::<Result<_>>()?
    } else {
        vec![]
    };
    let span = |k: usize, i: usize| -> (usize, usize) {
        if all {
            (offsets[k][i] as usize, offsets[k][i + 1] as usize)
        } else {
            (i, i + 1)
        }
    };
    let names: Vec<String> = parts[0]
        .tensors
        .keys()
        .filter(|k| k.starts_with("resid."))
        .cloned()
        .collect();
    for name in names {
        let mut data = Vec::new();
        let mut d = 0;
        let srcs: Vec<(usize, usize, &[f32])> = parts
            .iter()
            .map(|f| f.get_2d_f32(&name))
            .collect::<Result<_, _>>()?;
        for &(k, i) in &order {
            d = srcs[k].1;
            let (a, b) = span(k, i);
            data.extend_from_slice(&srcs[k].2[a * d..b * d]);
        }
        let rows_n = data.len() / d.max(1);
        file.insert(name, Tensor::f32(vec![rows_n, d], data)?);
    }
    if all {
        let toks: Vec<&[i64]> = parts
            .iter()
            .map(|f| {
                f.get("token_ids")
                    .ok()
                    .and_then(|t| t.as_i64())
                    .with_context(|| format!("{}: no token_ids", f.path))
            })
            .collect::<Result<_>>()?;
        let mut off = vec![0i64];
        let mut ids = Vec::new();
        for &(k, i) in &order {
            let (a, b) = span(k, i);
            ids.extend_from_slice(&toks[k][a..b]);
            off.push(off.last().unwrap() + (b - a) as i64);
        }
        file.insert("offsets", Tensor::i64(vec![off.len()], off)?);
        file.insert("token_ids", Tensor::i64(vec![ids.len()], ids)?);
    }
    match (rows, merged_rows) {
        (Some(r), Some((headers, rows_out, label))) => {
            let table = PromptTable::from_rows(&label, headers, rows_out)?;
            if file.metadata.get(meta::PROMPT_IDS_HASH) != Some(&table.ids_hash()) {
                bail!("merge: the shards' rows CSVs do not hold the prompts the shards were made from");
            }
            file.write(out)?;
            if let Err(e) = table.write(r) {
                let _ = std::fs::remove_file(out);
                return Err(e.into());
            }
            Ok(())
        }
        _ => Ok(file.write(out)?),
    }
}

/// Parses `--positions`.
pub fn parse_positions(s: &str) -> Result<Positions, String> {
    match s {
        "last" => Ok(Positions::Last),
        "all" => Ok(Positions::All),
        _ => Err(format!("invalid positions '{s}': expected last or all")),
    }
}
