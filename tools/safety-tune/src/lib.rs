//! safety-tune: safety fine-tuning of a chat model, exported as a Hugging Face directory.
//!
//! Harmful rows of the train CSV are trained towards a refusal, harmless rows towards the base
//! model's own answer (the `target` column, or `--answers`: a `generate` output), with the loss
//! on target tokens only. `--objective guard` is the paper's SSFT instead, a classifier
//! fine-tune: each prompt written into the guard template (`hd_lm::guard`), target `safe` or
//! `unsafe` and the category code on a second line, then end-of-turn (`--format guard` alone
//! trains those targets on the chat template). LoRA adapters (default) or the full weights; AdamW with warm-up and cosine decay,
//! gradient clipping, seeded. The result is merged and written as a Hugging Face directory
//! (`config.json`, `model.safetensors`, `tokenizer.json`, `tokenizer_config.json`,
//! `generation_config.json`) plus `loss.csv` (one row per step) and `safety_tune.json` (what
//! was done), assembled in a temporary folder and renamed into place when complete.
//!
//! `--objective dpo` trains on preference pairs instead (the paper's second method): for a
//! harmful row chosen = a refusal and rejected = the base model's own answer, the reverse for
//! a harmless row, so the base model must answer every row (`safety-tune select` for the
//! harmless rows, `select --harmful` for the harmful ones, both given as `--answers`);
//! the reference is the base model (the adapter-off forward), `--beta` its temperature.
//! `--exposure K` keeps only the first K rows of each jailbreak category (the paper's SSFT
//! exposure experiment).
//!
//! Checkpoints (`step-NNNNNN.safetensors`, every `--save-every` steps, in
//! `--checkpoint-dir`, default `<out>.ckpt`) hold adapters, optimiser state and the loss
//! history; `--resume` continues from one exactly as the uninterrupted run would have gone,
//! and refuses a checkpoint made from another base model, other data or other settings.

use anyhow::{Context, Result};
use hd_formats::atomic::write_atomic;
use hd_formats::meta;
use hd_formats::prompts::PromptTable;
use hd_grad::diff::{DiffModel, Method, Module};
use hd_lm::{Model, PromptFormat};
use hd_train::checkpoint;
use hd_train::data::{self, DataOptions, Example, TargetFormat};
use hd_train::export::{self, ExportParts, Staging};
use hd_train::train::{flatten_pairs, Objective, StepLog, TrainConfig, Trainer};
use hd_train::TrainError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Tool name in metadata.
pub const TOOL: &str = "safety-tune";

/// Everything a tuning run needs.
#[derive(Debug, Clone)]
pub struct TuneOptions {
    /// Base model (GGUF file or HF directory).
    pub model: PathBuf,
    /// Train CSV.
    pub train: PathBuf,
    /// `generate` outputs whose `response` fills empty `target` cells (by id), in order.
    pub answers: Vec<PathBuf>,
    /// Output directory.
    pub out: PathBuf,
    /// What is trained.
    pub method: Method,
    /// First trained block (lower blocks stay frozen).
    pub first_layer: usize,
    /// Hyper-parameters other than the method and layers.
    pub lr: f64,
    /// Passes over the data.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Warm-up fraction.
    pub warmup: f64,
    /// Final learning rate fraction.
    pub min_lr_ratio: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Gradient clipping norm (0 = off).
    pub clip: f64,
    /// Seed.
    pub seed: u64,
    /// Target format.
    pub format: TargetFormat,
    /// Target token cap.
    pub max_target_tokens: usize,
    /// Prompt rendering.
    pub prompt_format: PromptFormat,
    /// Where checkpoints go (default `<out>.ckpt`).
    pub checkpoint_dir: Option<PathBuf>,
    /// Steps between checkpoints (0 = none).
    pub save_every: usize,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
    /// Checkpoint (file or directory) to resume from.
    pub resume: Option<PathBuf>,
    /// SFT or DPO.
    pub objective: Objective,
    /// Rows kept per jailbreak category (`None`: all).
    pub exposure: Option<usize>,
}

/// The `select` subcommand: writes the harmless rows that need a base-model answer, or with
/// `harmful` (DPO's rejected completions) the harmful ones.
pub fn select(train: &Path, out: &Path, format: TargetFormat, harmful: bool) -> Result<()> {
    let mut outs = hd_formats::atomic::Outputs::new()
        .input("--train", train)
        .output("--out", out)
        .check()?;
    let table = PromptTable::read(train)?;
    let need = data::rows_needing_answers(&table, format, harmful)?;
    need.stage_with(&mut outs, out, &[], &[])?;
    outs.commit()?;
    tracing::info!(
        "{}: {} of {} rows need the base model's answer",
        out.display(),
        need.len(),
        table.len()
    );
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// A digest of the examples as trained (tokens and where the targets start), so a resumed
/// run refuses a checkpoint made from other data, answers or target format.
fn examples_digest(ex: &[Example]) -> String {
    let mut bytes = Vec::new();
    for e in ex {
        bytes.extend_from_slice(e.id.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&(e.n_prompt as u32).to_le_bytes());
        for t in &e.tokens {
            bytes.extend_from_slice(&t.to_le_bytes());
        }
    }
    format!("sha256:{}", sha256_hex(&bytes))
}

fn method_desc(m: &Method) -> String {
    match m {
        Method::Lora {
            rank,
            alpha,
            modules,
        } => format!(
            "lora rank={rank} alpha={alpha} modules={}",
            modules
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(",")
        ),
        Method::Full => "full".into(),
    }
}

fn loss_csv(history: &[StepLog]) -> String {
    let mut s = String::from("step,epoch,lr,loss,grad_norm,target_tokens\n");
    for h in history {
        s += &format!(
            "{},{:.4},{:.6e},{:.6},{:.6},{}\n",
            h.step, h.epoch, h.lr, h.loss, h.grad_norm, h.target_tokens
        );
    }
    s
}

fn prune_checkpoints(dir: &Path, keep: usize) {
    let Ok(found) = hd_train::checkpoint::list(dir) else {
        return;
    };
    let n = found.len().saturating_sub(keep.max(1));
    for p in &found[..n] {
        let _ = std::fs::remove_file(p);
    }
}

fn mean_loss(h: &[StepLog]) -> f64 {
    if h.is_empty() {
        return f64::NAN;
    }
    h.iter().map(|x| x.loss).sum::<f64>() / h.len() as f64
}

/// Usage errors, before anything is read or loaded (exit 2): an output that is an input (or
/// the other output), a first layer outside the model.
fn check_before_load(o: &TuneOptions, ckpt_dir: &Path) -> Result<()> {
    let mut outs = hd_formats::atomic::Outputs::new()
        .input("--model", &o.model)
        .input("--train", &o.train);
    for a in &o.answers {
        outs = outs.input("--answers", a);
    }
    // --resume may name the checkpoint folder itself: reading it back is the point.
    outs.output_dir("--out", &o.out)
        .output_dir("the checkpoint folder", ckpt_dir)
        .check()?;
    let l = Model::read_config(&o.model)?.num_layers;
    if o.first_layer >= l {
        return Err(hd_cli::usage(format!(
            "--first-layer {} out of range: the model has {l} blocks (0..{})",
            o.first_layer,
            l - 1
        )));
    }
    Ok(())
}

/// Runs a tuning: read, check, train, export. Every input problem is reported before any
/// training starts; nothing is written at `--out` unless the run completes.
pub fn tune(o: &TuneOptions) -> Result<()> {
    let t_start = std::time::Instant::now();
    let ckpt_dir = checkpoint_dir(o);
    check_before_load(o, &ckpt_dir)?;
    // Output first: an unwritable destination should fail now, not after the training.
    let staging = Staging::new(&o.out).context("--out")?;
    // A SIGINT or SIGTERM removes the staging folder (hundreds of MB) before the process dies.
    let _staging_guard = hd_formats::atomic::register_temp(staging.path());

    let (table, exposure_kept) = read_rows(o)?;
    let model = Model::load(&o.model)?;
    let l = model.config.num_layers;
    let (examples, pair_stats) = examples_for(o, &model, &table)?;
    let empty_answers = empty_answers(&model, &examples)?;
    let model_hash = model_hash(&model)?;
    let fingerprint = fingerprint_of(o, &model_hash, &examples);

    let Model {
        config,
        weights,
        tokenizer,
        template,
        path: model_path,
        ..
    } = model;
    let source_dir = model_path.is_dir().then(|| model_path.clone());
    let diff = DiffModel::new(config.clone(), weights)?;
    hd_train::export::check_exportable(&config, source_dir.as_deref())?;
    let mut trainer = trainer_for(o, diff, examples, l, &fingerprint)?;
    train_steps(o, &mut trainer, &fingerprint, &ckpt_dir)?;

    // Export.
    let spe = trainer.steps_per_epoch().max(1);
    let history = trainer.history.clone();
    let weights = trainer.model.merged_weights()?;
    drop(trainer);
    write_atomic(&staging.path().join("loss.csv"), |w| {
        w.write_all(loss_csv(&history).as_bytes())
    })?;
    export::write_model_files(
        staging.path(),
        &ExportParts {
            config: &config,
            tokenizer: &tokenizer,
            template: template.as_ref(),
            source_dir: source_dir.as_deref(),
            metadata: export_metadata(o, &model_hash),
        },
        weights,
    )?;
    let epoch_means: Vec<String> = history
        .chunks(spe)
        .map(|c| format!("{:.4}", mean_loss(c)))
        .collect();
    let facts = RunFacts {
        model_hash: &model_hash,
        train_ids_hash: table.ids_hash(),
        exposure_kept: &exposure_kept,
        pair_stats,
        empty_answers,
        blocks: l,
        fingerprint: &fingerprint,
        history: &history,
        epoch_means: &epoch_means,
        steps_per_epoch: spe,
    };
    write_summary(o, staging.path(), &facts)?;
    staging.commit()?;
    tracing::info!(
        "wrote {} ({} steps, loss {:.3} -> {:.3} by epoch means [{}]) in {:.0} s",
        o.out.display(),
        history.len(),
        history.first().map_or(f64::NAN, |h| h.loss),
        history.chunks(spe).last().map_or(f64::NAN, mean_loss),
        epoch_means.join(", "),
        t_start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--checkpoint-dir`, by default `<out>.ckpt`.
fn checkpoint_dir(o: &TuneOptions) -> PathBuf {
    o.checkpoint_dir.clone().unwrap_or_else(|| {
        let mut s = o.out.as_os_str().to_owned();
        s.push(".ckpt");
        PathBuf::from(s)
    })
}

/// The SHA-256 of each weight file of the base model, comma-separated.
fn model_hash(model: &Model) -> Result<String> {
    let mut hashes = Vec::new();
    for f in &model.weight_files {
        hashes.push(meta::sha256_file(f)?);
    }
    Ok(hashes.join(","))
}

/// The exported weights' metadata: the tool, and the base model they were tuned from.
fn export_metadata(o: &TuneOptions, model_hash: &str) -> BTreeMap<String, String> {
    let mut m = meta::base_metadata(TOOL, env!("CARGO_PKG_VERSION"));
    m.insert("base_model".into(), o.model.display().to_string());
    m.insert("base_model_hash".into(), model_hash.to_string());
    m
}

/// Writes the run's summary, the file whose presence marks a complete export, into `dir`.
fn write_summary(o: &TuneOptions, dir: &Path, facts: &RunFacts) -> Result<()> {
    let mut s = serde_json::to_string_pretty(&summary_json(o, facts))?;
    s.push('\n');
    write_atomic(&dir.join(export::MARKER), |w| w.write_all(s.as_bytes()))?;
    Ok(())
}

/// The trainer of `--method` on blocks `--first-layer..blocks`, resumed from `--resume`.
fn trainer_for(
    o: &TuneOptions,
    diff: DiffModel,
    examples: Vec<Example>,
    blocks: usize,
    fingerprint: &BTreeMap<String, String>,
) -> Result<Trainer> {
    let l = blocks;
    let mut trainer = Trainer::new(
        diff,
        examples,
        TrainConfig {
            objective: o.objective,
            method: o.method.clone(),
            layers: o.first_layer..l,
            lr: o.lr,
            epochs: o.epochs,
            batch_size: o.batch_size,
            warmup_ratio: o.warmup,
            min_lr_ratio: o.min_lr_ratio,
            weight_decay: o.weight_decay,
            clip: o.clip,
            seed: o.seed,
        },
    )?;
    if let Some(r) = &o.resume {
        let p = checkpoint::resolve(r)?;
        checkpoint::load(&p, &mut trainer, fingerprint)?;
        tracing::info!("resumed from {} at step {}", p.display(), trainer.step);
    }
    tracing::info!(
        "{}: {} trainable parameters in blocks {}..{l}, {} steps ({} per epoch)",
        method_desc(&o.method),
        trainer.n_trainable(),
        o.first_layer,
        trainer.total_steps(),
        trainer.steps_per_epoch()
    );
    Ok(trainer)
}

/// What a finished run records in `safety_tune.json` beside its options.
struct RunFacts<'a> {
    model_hash: &'a str,
    train_ids_hash: String,
    exposure_kept: &'a [(String, usize)],
    pair_stats: Option<data::PairStats>,
    /// Sequences whose target is the end-of-turn token alone (an empty base answer).
    empty_answers: usize,
    blocks: usize,
    fingerprint: &'a BTreeMap<String, String>,
    history: &'a [StepLog],
    epoch_means: &'a [String],
    steps_per_epoch: usize,
}

/// `safety_tune.json`: what was done.
fn summary_json(o: &TuneOptions, f: &RunFacts) -> serde_json::Value {
    serde_json::json!({
        "tool": TOOL,
        "version": env!("CARGO_PKG_VERSION"),
        "argv": std::env::args().collect::<Vec<_>>(),
        "base_model": o.model.display().to_string(),
        "base_model_hash": f.model_hash,
        "train": o.train.display().to_string(),
        "train_ids_hash": f.train_ids_hash,
        "answers": o.answers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "format": o.format.name(),
        "prompt_format": o.prompt_format.describe(),
        "objective": o.objective.describe(),
        "exposure": o.exposure,
        "exposure_rows": f.exposure_kept.iter().map(|(c, n)| (c.clone(), *n)).collect::<BTreeMap<_, _>>(),
        "dpo_pairs_left_out": f.pair_stats.as_ref().map(|s| serde_json::json!({
            "harmful_base_refused": s.harmful_base_refused,
            "harmless_base_refused": s.harmless_base_refused,
        })),
        "empty_base_answers": f.empty_answers,
        "max_target_tokens": o.max_target_tokens,
        "method": method_desc(&o.method),
        "trained_blocks": format!("{}..{}", o.first_layer, f.blocks),
        "fingerprint": f.fingerprint,
        "steps": f.history.len(),
        "loss_first": f.history.first().map(|h| h.loss),
        "loss_last_epoch_mean": f.history.chunks(f.steps_per_epoch).last().map(mean_loss),
        "loss_epoch_means": f.epoch_means,
        "refusals": data::REFUSALS,
    })
}

/// The train rows with their answers attached, limited by `--exposure` (with the rows kept
/// per jailbreak category).
fn read_rows(o: &TuneOptions) -> Result<(PromptTable, Vec<(String, usize)>)> {
    let mut table = PromptTable::read(&o.train)?;
    for a in &o.answers {
        let answers = PromptTable::read(a)?;
        table = data::attach_answers(&table, &answers)?;
    }
    let Some(k) = o.exposure else {
        return Ok((table, Vec::new()));
    };
    let (t, kept) = data::limit_exposure(&table, k);
    tracing::info!(
        "--exposure {k}: {} of {} rows kept ({})",
        t.len(),
        table.len(),
        kept.iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok((t, kept))
}

/// The tokenised training sequences of the objective (DPO: chosen and rejected, flattened).
fn examples_for(
    o: &TuneOptions,
    model: &Model,
    table: &PromptTable,
) -> Result<(Vec<Example>, Option<data::PairStats>)> {
    let data_opts = DataOptions {
        format: o.format,
        seed: o.seed,
        max_target_tokens: o.max_target_tokens,
        prompt_format: o.prompt_format.clone(),
    };
    let (examples, pair_stats) = match o.objective {
        Objective::Sft => (
            data::build_examples(model, table, &data_opts).map_err(|e| flagged(e, o))?,
            None,
        ),
        Objective::Dpo { .. } => {
            let (pairs, stats) =
                data::build_pairs(model, table, &data_opts).map_err(|e| flagged(e, o))?;
            tracing::info!(
                "{} preference pairs; left out: {} harmful and {} harmless rows whose base answer was judged a refusal",
                pairs.len(),
                stats.harmful_base_refused,
                stats.harmless_base_refused
            );
            (flatten_pairs(pairs), Some(stats))
        }
    };
    let n_harmful = examples.iter().filter(|e| e.harmful).count();
    let n_tokens: usize = examples.iter().map(|e| e.tokens.len()).sum();
    let n_target: usize = examples.iter().map(Example::n_target).sum();
    tracing::info!(
        "{} sequences ({n_harmful} harmful, {} harmless), {n_tokens} tokens of which {n_target} targets",
        examples.len(),
        examples.len() - n_harmful
    );
    Ok((examples, pair_stats))
}

/// The sequences trained on the end-of-turn token alone (base answers that were empty text:
/// `generate`'s tokens decoded to nothing), said in the log with the first row's id.
fn empty_answers(model: &Model, examples: &[Example]) -> Result<usize> {
    let eot = data::end_of_turn_id(model)?;
    let empty: Vec<&Example> = examples
        .iter()
        .filter(|e| e.tokens[e.n_prompt..] == [eot])
        .collect();
    if let Some(first) = empty.first() {
        tracing::warn!(
            "{} of {} sequences have an empty base-model answer as target (the answer's tokens \
             decoded to no text; first: id '{}'): they learn to end the turn at once",
            empty.len(),
            examples.len(),
            first.id
        );
    }
    Ok(empty.len())
}

/// An hd-train error as this tool's user reads it: the fix it describes named by its flag.
fn flagged(e: TrainError, o: &TuneOptions) -> anyhow::Error {
    match e {
        TrainError::NoAnswers { msg } => anyhow::anyhow!(
            "{msg} (make them with `safety-tune select` and `generate`, then pass --answers)"
        ),
        TrainError::Diverged { step, loss } => {
            anyhow::anyhow!("step {step}: the loss is {loss}; lower --lr (now {})", o.lr)
        }
        e => e.into(),
    }
}

/// What a checkpoint must match to be resumed by this run.
fn fingerprint_of(
    o: &TuneOptions,
    model_hash: &str,
    examples: &[Example],
) -> BTreeMap<String, String> {
    let mut fingerprint = BTreeMap::new();
    fingerprint.insert("model_hash".to_string(), model_hash.to_string());
    fingerprint.insert("examples_digest".to_string(), examples_digest(examples));
    fingerprint.insert("method".to_string(), method_desc(&o.method));
    fingerprint.insert("first_layer".to_string(), o.first_layer.to_string());
    fingerprint.insert("objective".to_string(), o.objective.describe());
    fingerprint.insert(
        "schedule".to_string(),
        format!(
            "lr={} epochs={} batch_size={} warmup={} min_lr_ratio={} weight_decay={} clip={} seed={}",
            o.lr, o.epochs, o.batch_size, o.warmup, o.min_lr_ratio, o.weight_decay, o.clip, o.seed
        ),
    );
    fingerprint
}

/// The training loop from the trainer's current step: progress, periodic log lines and
/// checkpoints every `--save-every` steps.
fn train_steps(
    o: &TuneOptions,
    trainer: &mut Trainer,
    fingerprint: &BTreeMap<String, String>,
    ckpt_dir: &Path,
) -> Result<()> {
    let total = trainer.total_steps();
    let pb = hd_cli::progress(total as u64, "tuning");
    pb.set_position(trainer.step as u64);
    let spe = trainer.steps_per_epoch();
    let log_every = (total / 20).max(1);
    let t_train = std::time::Instant::now();
    let first_step = trainer.step;
    while trainer.step < total {
        let s = trainer.step().map_err(|e| flagged(e, o))?;
        pb.set_position(s.step as u64);
        pb.set_message(format!("tuning (loss {:.3})", s.loss));
        if s.step % log_every == 0 || s.step == total || s.step % spe == 0 {
            let recent = &trainer.history[trainer.history.len().saturating_sub(log_every)..];
            let done = (s.step - first_step) as f64;
            let per = t_train.elapsed().as_secs_f64() / done.max(1.0);
            pb.suspend(|| {
                tracing::info!(
                    "step {}/{total} epoch {:.2} loss {:.4} (mean of last {}: {:.4}) lr {:.2e} |g| {:.3} ({per:.2} s/step)",
                    s.step,
                    s.epoch,
                    s.loss,
                    recent.len(),
                    mean_loss(recent),
                    s.lr,
                    s.grad_norm
                )
            });
        }
        if o.save_every > 0 && s.step % o.save_every == 0 && s.step < total {
            std::fs::create_dir_all(ckpt_dir).with_context(|| {
                format!(
                    "{}: cannot create the checkpoint folder",
                    ckpt_dir.display()
                )
            })?;
            let p = ckpt_dir.join(format!("step-{:06}.safetensors", s.step));
            checkpoint::save(
                &p,
                trainer,
                fingerprint,
                meta::base_metadata(TOOL, env!("CARGO_PKG_VERSION")),
            )?;
            write_atomic(&ckpt_dir.join("loss.csv"), |w| {
                w.write_all(loss_csv(&trainer.history).as_bytes())
            })?;
            prune_checkpoints(ckpt_dir, o.keep_checkpoints);
        }
    }
    pb.finish_and_clear();
    Ok(())
}

/// Parses `--modules`: comma-separated names of [`Module`], or `all`.
pub fn parse_modules(s: &str) -> std::result::Result<Vec<Module>, String> {
    if s == "all" {
        return Ok(Module::ALL.to_vec());
    }
    let mut v = Vec::new();
    for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let m = Module::parse(p).ok_or_else(|| {
            format!("unknown module '{p}' (expected qkv, o, gate_up, down or all)")
        })?;
        if !v.contains(&m) {
            v.push(m);
        }
    }
    if v.is_empty() {
        return Err("no modules given".into());
    }
    v.sort();
    Ok(v)
}
