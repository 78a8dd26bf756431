//! act-dump: residual-stream activations of a chat model, one row per prompt (or per token),
//! in Hugging Face `output_hidden_states` numbering, plus a rows CSV describing the model's
//! next-token behaviour. See DESIGN.md, "Activation file".

use anyhow::{bail, Context, Result};
use hd_formats::atomic::Outputs;
use hd_formats::layers::LayerSpec;
use hd_formats::meta;
use hd_formats::prompts::PromptTable;
use hd_formats::tensors::Format;
use hd_formats::tensors::{resid_name, Tensor, TensorFile};
use hd_lm::kernels::log_softmax;
use hd_lm::{Model, Positions, PromptFormat, Request};
use std::path::{Path, PathBuf};

use hd_analysis::refusal::RefusalTokens;
pub use hd_analysis::refusal::DEFAULT_REFUSAL_TOKENS;

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
pub struct Options {
    /// GGUF file or HF directory.
    pub model: PathBuf,
    /// Prompt CSV.
    pub prompts: PathBuf,
    /// Only the first N rows of each category (a sized run: `make pair` in CI).
    pub per_category: Option<usize>,
    /// Activation file (.safetensors, .npz, .npy; `-` for stdout).
    pub out: PathBuf,
    /// Format of `out`, instead of the one its extension (or a pipe) implies.
    pub out_format: Option<Format>,
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
    /// Comma-separated strings whose first tokens the refusal tokens are scored against:
    /// refusal_score = log p(refusal tokens) − log p(these) instead of the log-odds.
    pub versus_tokens: Option<String>,
    /// Run the prompt set's common prefix (and each batch's) once and reuse it.
    pub share_prefix: bool,
    /// How stored (quantised) weights are multiplied.
    pub compute: hd_lm::Compute,
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

/// Everything that can be checked before the model loads: the command line is a usage error
/// (exit 2) when an output is an input, the layers are outside the model, the refusal-token
/// list is empty, or a `.npy` output cannot hold what was asked. Returns the layers.
fn check_before_load(o: &Options) -> Result<(Vec<usize>, Outputs)> {
    if o.batch_size == 0 {
        return Err(hd_cli::usage("--batch-size must be at least 1"));
    }
    let outs = Outputs::new()
        .input("--model", &o.model)
        .input("--prompts", &o.prompts)
        .output("--out", &o.out)
        .output_opt("--rows", o.rows.as_deref())
        .check()?;
    let format = match o.out_format {
        Some(f) => f,
        None => Format::from_path(&o.out)?,
    };
    if o.refusal_tokens.split(',').all(|w| w.trim().is_empty()) {
        return Err(hd_cli::usage(format!(
            "--refusal-tokens '{}': no tokens, expected comma-separated strings like '{}'",
            o.refusal_tokens, DEFAULT_REFUSAL_TOKENS
        )));
    }
    let cfg = Model::read_config(&o.model)?;
    let layers = o.layers.resolve(cfg.num_layers).map_err(|e| {
        hd_cli::usage(format!(
            "--layers {}: {e} (the model has {} blocks)",
            o.layers, cfg.num_layers
        ))
    })?;
    if format == Format::Npy && (layers.len() != 1 || o.positions == Positions::All) {
        return Err(hd_cli::usage(format!(
            "{}: a .npy file holds one tensor; dump one layer with --positions last, or write .npz / .safetensors",
            o.out.display()
        )));
    }
    Ok((layers, outs))
}

/// Token ids of every prompt, checked against the model's context.
fn encode_all(model: &Model, table: &PromptTable, o: &Options) -> Result<Vec<Vec<u32>>> {
    let cfg = &model.config;
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
    Ok(all_seqs)
}

/// A corrupt model or an overflow shows as NaN or infinity; those must stop the run, naming
/// the layer and the prompt, rather than be written as activations. `rows_of[j]` is the
/// range of rows of prompt `j` of the batch; `ids[j]` its id.
fn check_finite_batch(
    model: &Path,
    captured: &[(usize, Vec<f32>)],
    logits: Option<&[f32]>,
    d: usize,
    v: usize,
    spans: &[(usize, usize)],
    ids: &[&str],
) -> Result<()> {
    for (layer, states) in captured {
        for (&(a, b), id) in spans.iter().zip(ids) {
            if states[a * d..b * d].iter().any(|x| !x.is_finite()) {
                bail!(
                    "{}: layer {layer}: the activations of prompt id '{id}' are not finite (NaN or \
                     infinity; corrupt weights?)",
                    model.display()
                );
            }
        }
    }
    if let Some(lg) = logits {
        for (j, id) in ids.iter().enumerate() {
            if lg[j * v..(j + 1) * v].iter().any(|x| !x.is_finite()) {
                bail!(
                    "{}: the logits of prompt id '{id}' are not finite (NaN or infinity; corrupt \
                     weights?)",
                    model.display()
                );
            }
        }
    }
    Ok(())
}

/// Stages the activation file in `--format` when given, else as its path implies.
fn stage_out(file: &TensorFile, outs: &mut Outputs, o: &Options) -> Result<()> {
    match o.out_format {
        Some(f) => file.stage_as(outs, &o.out, f)?,
        None => file.stage(outs, &o.out)?,
    }
    Ok(())
}

/// Runs the dump.
pub fn run(o: &Options) -> Result<()> {
    let (layers, outs) = check_before_load(o)?;
    let table = read_prompts(o)?;
    // The whole prompt set's hashes: a shard records them, so that merge can check its
    // shards were cut from one set.
    let mut full_hash = std::collections::BTreeMap::new();
    meta::set_prompt_hashes(&mut full_hash, &table);
    let t0 = std::time::Instant::now();
    let mut model = Model::load(&o.model)?;
    model.compute = o.compute;
    tracing::debug!(
        "loaded {} in {:.2} s",
        o.model.display(),
        t0.elapsed().as_secs_f64()
    );
    let refusal = Scoring {
        tokens: RefusalTokens::parse(&model.tokenizer, &o.refusal_tokens)
            .context("--refusal-tokens")?,
        versus: match &o.versus_tokens {
            Some(v) => Some(RefusalTokens::parse(&model.tokenizer, v).context("--versus-tokens")?),
            None => None,
        },
    };
    let (table, seqs, shared) = encode_shard(&model, table, o)?;
    let (per_layer, row_extra) = forward_all(&model, o, &layers, &table, &seqs, &shared, &refusal)?;
    let t0 = std::time::Instant::now();
    let md = metadata(
        o,
        &model,
        &table,
        &layers,
        shared.len(),
        &refusal,
        full_hash,
    )?;
    let file = tensor_file(md, o, &layers, per_layer, &seqs, model.config.hidden_size)?;
    write_outputs(file, outs, o, &table, &row_extra)?;
    tracing::debug!(
        "hashed the model and wrote {} in {:.2} s",
        o.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The prompt rows of the run: the CSV, or the first `--per-category` rows of each category.
fn read_prompts(o: &Options) -> Result<PromptTable> {
    let mut table = PromptTable::read(&o.prompts)?;
    if o.per_category.is_some() {
        table = table.select(&table.rows_by_category(None, o.per_category)?);
    }
    if table.is_empty() {
        bail!("{}: no prompt rows", o.prompts.display());
    }
    Ok(table)
}

/// This shard's rows and token ids, and the prefix shared by the whole set. Every prompt is
/// encoded, also in a shard: the shared prefix comes from the whole set, so that shards
/// compute exactly what an unsharded run computes.
fn encode_shard(
    model: &Model,
    table: PromptTable,
    o: &Options,
) -> Result<(PromptTable, Vec<Vec<u32>>, Vec<u32>)> {
    let mut all_seqs = encode_all(model, &table, o)?;
    let shared = if o.share_prefix {
        let refs: Vec<&[u32]> = all_seqs.iter().map(Vec::as_slice).collect();
        hd_lm::forward::shared_prefix(&refs).to_vec()
    } else {
        vec![]
    };
    let idx = shard_indices(table.len(), o.batch_size, o.shard);
    let seqs = idx
        .iter()
        .map(|&i| std::mem::take(&mut all_seqs[i]))
        .collect();
    Ok((table.select(&idx), seqs, shared))
}

/// The activation file: one `resid.L` tensor per layer, plus offsets and token ids when every
/// position is kept.
fn tensor_file(
    md: std::collections::BTreeMap<String, String>,
    o: &Options,
    layers: &[usize],
    per_layer: Vec<Vec<f32>>,
    seqs: &[Vec<u32>],
    d: usize,
) -> Result<TensorFile> {
    let total_tokens: usize = seqs.iter().map(Vec::len).sum();
    let mut file = TensorFile::new(md);
    let n_rows = match o.positions {
        Positions::Last => seqs.len(),
        Positions::All => total_tokens,
    };
    for (&l, buf) in layers.iter().zip(per_layer) {
        file.insert(resid_name(l), Tensor::f32(vec![n_rows, d], buf)?);
    }
    if o.positions == Positions::All {
        let mut off = vec![0i64];
        for s in seqs {
            off.push(off.last().unwrap() + s.len() as i64);
        }
        file.insert("offsets", Tensor::i64(vec![seqs.len() + 1], off)?);
        let toks: Vec<i64> = seqs.iter().flatten().map(|&t| t as i64).collect();
        file.insert("token_ids", Tensor::i64(vec![total_tokens], toks)?);
    }
    Ok(file)
}

/// Both outputs or neither: make must not see a half-finished stage as done. A shard records
/// its rows CSV's hash, so a merge can tell when another run replaced it.
fn write_outputs(
    mut file: TensorFile,
    mut outs: Outputs,
    o: &Options,
    table: &PromptTable,
    row_extra: &[Vec<String>],
) -> Result<()> {
    if let Some(r) = &o.rows {
        let bytes = table.to_csv_with(&r.display().to_string(), &ROW_COLUMNS, row_extra)?;
        if o.shard.is_some() {
            file.metadata
                .insert(ROWS_SHA256.into(), meta::sha256_bytes(&bytes));
            file.metadata.insert(
                "rows".into(),
                std::path::absolute(r)
                    .unwrap_or_else(|_| r.clone())
                    .display()
                    .to_string(),
            );
        }
        stage_out(&file, &mut outs, o)?;
        outs.stage(r, |w| w.write_all(&bytes))?;
    } else {
        stage_out(&file, &mut outs, o)?;
    }
    outs.commit()?;
    Ok(())
}

/// Metadata key of a shard: `sha256:<hex>` of the rows CSV it wrote.
pub const ROWS_SHA256: &str = "rows_sha256";

type Captured = (Vec<Vec<f32>>, Vec<Vec<String>>);

/// The forward passes: per layer, the captured rows of every prompt; per prompt, the rows
/// CSV's extra cells (when `--rows` asks for them).
fn forward_all(
    model: &Model,
    o: &Options,
    layers: &[usize],
    table: &PromptTable,
    seqs: &[Vec<u32>],
    shared: &[u32],
    refusal: &Scoring,
) -> Result<Captured> {
    let cfg = &model.config;
    let (d, v) = (cfg.hidden_size, cfg.vocab_size);
    let req = Request {
        capture_layers: layers.to_vec(),
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
        Some(fw.prefix(shared, &req, false)?)
    };
    for (c, chunk) in seqs.chunks(o.batch_size).enumerate() {
        let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
        let out = if o.share_prefix {
            fw.run_shared(base.as_ref(), &refs, &req)?
        } else {
            fw.run(&refs, &req)?
        };
        let first = c * o.batch_size;
        let ids: Vec<&str> = (first..first + chunk.len()).map(|i| table.id(i)).collect();
        let spans = captured_spans(chunk, o.positions);
        check_finite_batch(
            &o.model,
            &out.captured,
            out.logits.as_deref(),
            d,
            v,
            &spans,
            &ids,
        )?;
        for (buf, (_, states)) in per_layer.iter_mut().zip(out.captured) {
            buf.extend_from_slice(&states);
        }
        if let Some(lg) = out.logits {
            row_extra.extend(logit_cells(model, refusal, chunk, &lg));
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
    Ok((per_layer, row_extra))
}

/// Each prompt's rows in a batch's captured states: `[start, end)`, one row per prompt at
/// the last position, one per token at every position.
fn captured_spans(chunk: &[Vec<u32>], positions: Positions) -> Vec<(usize, usize)> {
    let mut spans = Vec::with_capacity(chunk.len());
    let mut at = 0;
    for s in chunk {
        let n = if positions == Positions::All {
            s.len()
        } else {
            1
        };
        spans.push((at, at + n));
        at += n;
    }
    spans
}

/// The rows CSV's extra cells of each prompt of a batch, from its next-token logits `lg`
/// (`[chunk.len(), vocab]`): token count, top token id and text, its log-probability, and
/// the refusal score.
fn logit_cells(
    model: &Model,
    refusal: &Scoring,
    chunk: &[Vec<u32>],
    lg: &[f32],
) -> Vec<Vec<String>> {
    let v = model.config.vocab_size;
    chunk
        .iter()
        .enumerate()
        .map(|(j, s)| {
            let lp = log_softmax(&lg[j * v..(j + 1) * v]);
            let top = (0..v).fold(0, |b, i| if lp[i] > lp[b] { i } else { b });
            let score = refusal.score(&lp);
            vec![
                s.len().to_string(),
                top.to_string(),
                model.tokenizer.token_text(top as u32),
                format!("{:.6}", lp[top]),
                format!("{score:.6}"),
            ]
        })
        .collect()
}

/// The activation file's `__metadata__` (DESIGN.md, "Activation file").
fn metadata(
    o: &Options,
    model: &Model,
    table: &PromptTable,
    layers: &[usize],
    shared_len: usize,
    refusal: &Scoring,
    full_hash: std::collections::BTreeMap<String, String>,
) -> Result<std::collections::BTreeMap<String, String>> {
    let cfg = &model.config;
    let mut md = meta::base_metadata("act-dump", env!("CARGO_PKG_VERSION"));
    meta::set_prompt_hashes(&mut md, table);
    // Files dumped with another system prompt, user template or none hold other states of
    // the same prompts, and must not be paired.
    if let Some(f) = model.describe_format(&o.format) {
        md.insert(meta::PROMPT_FORMAT.into(), f);
    }
    md.insert("model".into(), o.model.display().to_string());
    let mut hashes = Vec::new();
    for f in &model.weight_files {
        hashes.push(meta::sha256_file(f)?);
    }
    md.insert("model_hash".into(), hashes.join(","));
    md.insert("architecture".into(), cfg.arch.name().into());
    md.insert("hidden_size".into(), cfg.hidden_size.to_string());
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
    if let Some(t) = &o.format.user_template {
        md.insert("user_template".into(), t.source().to_string());
    }
    md.insert("layers".into(), serde_json::to_string(layers)?);
    md.insert(
        "positions".into(),
        match o.positions {
            Positions::Last => "last",
            Positions::All => "all",
        }
        .into(),
    );
    if o.compute == hd_lm::Compute::Fast {
        // recorded only when not exact, so exact dumps stay as they were
        md.insert("compute".into(), o.compute.name().into());
    }
    md.insert("n_prompts".into(), table.len().to_string());
    md.insert("batch_size".into(), o.batch_size.to_string());
    md.insert(
        "share_prefix".into(),
        if o.share_prefix { "on" } else { "off" }.into(),
    );
    md.insert("shared_prefix_tokens".into(), shared_len.to_string());
    md.insert(
        "refusal_tokens".into(),
        serde_json::to_string(&refusal.tokens.names)?,
    );
    if let Some(v) = &refusal.versus {
        md.insert("versus_tokens".into(), serde_json::to_string(&v.names)?);
    }
    if let Some(s) = o.shard {
        md.insert("shard".into(), format!("{}/{}", s.k, s.n));
        for (k, v) in full_hash {
            md.insert(format!("full_{k}"), v);
        }
    }
    Ok(md)
}

/// How refusal_score is computed: the refusal tokens' log-odds, or their log-ratio against
/// a second set.
struct Scoring {
    tokens: RefusalTokens,
    versus: Option<RefusalTokens>,
}

impl Scoring {
    fn score(&self, logprobs: &[f32]) -> f64 {
        match &self.versus {
            Some(v) => self.tokens.score_versus(v, logprobs),
            None => self.tokens.score(logprobs),
        }
    }
}

/// Rows CSV columns added by act-dump.
pub const ROW_COLUMNS: [&str; 5] = [
    "n_tokens",
    "top1_id",
    "top1_token",
    "top1_logprob",
    "refusal_score",
];

/// Joins `--shard` outputs (any order) into the file an unsharded run would have written.
pub fn merge(shards: &[PathBuf], out: &Path, rows: Option<&Path>) -> Result<()> {
    if shards.is_empty() {
        bail!("merge: no shard files given");
    }
    let files: Vec<TensorFile> = shards
        .iter()
        .map(|p| TensorFile::read(p))
        .collect::<Result<_, _>>()?;
    let parts = shards_in_order(&files)?;
    let order = merge_order(&parts)?;
    let md = merged_metadata(&parts, order.len())?;
    let mut outs = Outputs::new();
    for f in &files {
        outs = outs.input(&format!("shard {}", f.path), Path::new(&f.path));
    }
    let table = match rows {
        Some(r) => {
            let (inputs, table) = merge_rows(&parts, &order, r)?;
            for (f, p) in parts.iter().zip(&inputs) {
                outs = outs.input(&format!("the rows CSV of {}", f.path), p);
            }
            let recorded = md.get(meta::PROMPTS_HASH).map_or(
                md.get(meta::PROMPT_IDS_HASH) == Some(&table.ids_hash()),
                |h| *h == table.prompts_hash(),
            );
            if !recorded {
                bail!("merge: the shards' rows CSVs do not hold the prompts the shards were made from");
            }
            Some(table)
        }
        None => None,
    };
    let mut outs = outs
        .output("--out", out)
        .output_opt("--rows", rows)
        .check()?;
    merge_tensors(&parts, &order, md)?.stage(&mut outs, out)?;
    if let (Some(r), Some(table)) = (rows, table) {
        table.stage_with(&mut outs, r, &[], &[])?;
    }
    Ok(outs.commit()?)
}

/// The shards by index, checked to be one complete set from one command.
fn shards_in_order(files: &[TensorFile]) -> Result<Vec<&TensorFile>> {
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
        "versus_tokens",
        "system",
        "user_template",
        "compute",
        "hidden_size",
    ];
    for f in files {
        let s = shard_of(f)?;
        check_same_full_prompts(&files[0], f)?;
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
    Ok(by_k.into_iter().map(Option::unwrap).collect())
}

/// Two shards cut from one prompt set: their `full_*` prompt hashes agree (ids and text),
/// else the error names both files and the first row that differs.
fn check_same_full_prompts(a: &TensorFile, b: &TensorFile) -> Result<()> {
    let full = |f: &TensorFile| {
        let mut md = std::collections::BTreeMap::new();
        for k in meta::PROMPT_KEYS {
            if let Some(v) = f.metadata.get(&format!("full_{k}")) {
                md.insert(k.to_string(), v.clone());
            }
        }
        TensorFile {
            path: f.path.clone(),
            ..TensorFile::new(md)
        }
    };
    if let Some(w) = meta::check_same_prompts(&full(a), &full(b))? {
        tracing::warn!("{w}");
    }
    Ok(())
}

/// The unsharded order of the prompts, as (shard, index in the shard): batch `b` comes from
/// shard `b % n`, as its `(b / n)`-th batch.
fn merge_order(parts: &[&TensorFile]) -> Result<Vec<(usize, usize)>> {
    let n = parts.len();
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
    Ok(order)
}

/// The first shard's metadata, made that of an unsharded run of `total` prompts.
fn merged_metadata(
    parts: &[&TensorFile],
    total: usize,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut md = parts[0].metadata.clone();
    md.remove("shard");
    md.remove("rows");
    md.remove(ROWS_SHA256);
    let full = md
        .remove("full_prompt_ids_hash")
        .context("shard without full_prompt_ids_hash metadata")?;
    md.insert(meta::PROMPT_IDS_HASH.into(), full);
    // The shard's own hashes are of its part; the merged file holds the whole set.
    for k in [meta::PROMPTS_HASH, meta::PROMPT_ROW_HASHES] {
        md.remove(k);
        if let Some(v) = md.remove(&format!("full_{k}")) {
            md.insert(k.into(), v);
        }
    }
    md.insert("n_prompts".into(), total.to_string());
    md.insert(
        meta::ARGV.into(),
        meta::base_metadata("act-dump", "")[meta::ARGV].clone(),
    );
    Ok(md)
}

/// The shards' rows CSVs (paths as found, for the input check) and their rows in `order`.
fn merge_rows(
    parts: &[&TensorFile],
    order: &[(usize, usize)],
    out: &Path,
) -> Result<(Vec<PathBuf>, PromptTable)> {
    let mut tables = Vec::new();
    let mut paths = Vec::new();
    for f in parts {
        let (path, table) = shard_rows(f)?;
        paths.push(path);
        tables.push(table);
    }
    let headers = tables[0].headers.clone();
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    for &(k, i) in order {
        let id = tables[k].id(i);
        if let Some(prev) = seen.insert(id, k) {
            bail!(
                "{} and {}: both hold prompt id '{id}' (rows CSVs {} and {}); shards of one \
                 run hold disjoint prompts",
                parts[prev].path,
                parts[k].path,
                tables[prev].path,
                tables[k].path
            );
        }
    }
    let rows_out: Vec<Vec<String>> = order
        .iter()
        .map(|&(k, i)| tables[k].rows[i].clone())
        .collect();
    let table = PromptTable::from_rows(&out.display().to_string(), headers, rows_out)?;
    Ok((paths, table))
}

/// The activation tensors of all shards in `order`.
fn merge_tensors(
    parts: &[&TensorFile],
    order: &[(usize, usize)],
    md: std::collections::BTreeMap<String, String>,
) -> Result<TensorFile> {
    let all = parts[0].metadata.get("positions").map(String::as_str) == Some("all");
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
        for &(k, i) in order {
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
        for &(k, i) in order {
            let (a, b) = span(k, i);
            ids.extend_from_slice(&toks[k][a..b]);
            off.push(off.last().unwrap() + (b - a) as i64);
        }
        file.insert("offsets", Tensor::i64(vec![off.len()], off)?);
        file.insert("token_ids", Tensor::i64(vec![ids.len()], ids)?);
    }
    Ok(file)
}

/// The rows CSV a shard recorded, found where it was written (an absolute path), or for
/// shards of older runs relative to the current folder or the shard's; checked against the
/// hash the shard recorded, so a rows file that another run has since overwritten is not
/// merged as if it belonged.
fn shard_rows(f: &TensorFile) -> Result<(PathBuf, PromptTable)> {
    let recorded = f.metadata.get("rows").with_context(|| {
        format!(
            "{}: no rows CSV recorded; run the shards with --rows",
            f.path
        )
    })?;
    let recorded = PathBuf::from(recorded);
    let mut tried = vec![recorded.clone()];
    if recorded.is_relative() {
        if let Some(dir) = Path::new(&f.path).parent() {
            tried.push(dir.join(&recorded));
        }
    }
    let Some(path) = tried.iter().find(|p| p.is_file()).cloned() else {
        let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "{}: its rows CSV is missing (looked at {})",
            f.path,
            list.join(" and ")
        );
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    if let Some(want) = f.metadata.get(ROWS_SHA256) {
        let got = meta::sha256_bytes(&bytes);
        if &got != want {
            bail!(
                "{}: changed since {} was written (its {ROWS_SHA256} is {want}, the file's is \
                 {got}); rerun that shard",
                path.display(),
                f.path
            );
        }
    }
    let table = PromptTable::from_bytes(&path.display().to_string(), &bytes)?;
    Ok((path, table))
}

/// Parses `--positions`.
pub fn parse_positions(s: &str) -> Result<Positions, String> {
    match s {
        "last" => Ok(Positions::Last),
        "all" => Ok(Positions::All),
        _ => Err(format!("invalid positions '{s}': expected last or all")),
    }
}
