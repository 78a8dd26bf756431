//! Hugging Face export: a model directory that `transformers`, `act-dump` and `generate` load.
//!
//! Files: `config.json` (Llama or Qwen2, f32), `model.safetensors` (un-fused q/k/v and
//! gate/up projections under their Hugging Face names), `tokenizer.json`,
//! `tokenizer_config.json` (with the chat template), `generation_config.json`, plus any
//! extra files the caller adds (the loss curve, a run summary).
//!
//! The directory is assembled in a hidden temporary folder beside the destination and
//! renamed into place only when complete ([`Staging`]), so a killed run never leaves a half
//! directory that make would take for done.

use crate::error::{Result, TrainError};
use hd_formats::atomic::write_atomic;
use hd_formats::tensors::{Tensor as FTensor, TensorFile};
use hd_lm::{Arch, ChatTemplate, Config, Tokenizer, Weights};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file that marks a directory as written by this exporter (safe to replace).
pub const MARKER: &str = "safety_tune.json";

/// An output directory being assembled.
pub struct Staging {
    out: PathBuf,
    tmp: tempfile::TempDir,
}

impl Staging {
    /// Checks that `out` can be written (creating its parent folder), and creates the
    /// temporary folder beside it. An existing `out` is only replaced if it is empty or was
    /// written by this exporter.
    pub fn new(out: &Path) -> Result<Self> {
        let name = out
            .file_name()
            .ok_or_else(|| {
                TrainError::Input(format!("{}: output path has no folder name", out.display()))
            })?
            .to_string_lossy()
            .into_owned();
        if out.exists() {
            if !out.is_dir() {
                return Err(TrainError::Input(format!(
                    "{}: exists and is not a directory",
                    out.display()
                )));
            }
            let empty = std::fs::read_dir(out)
                .map_err(|e| TrainError::io(out, "cannot read", e))?
                .next()
                .is_none();
            if !empty && !out.join(MARKER).exists() {
                return Err(TrainError::Input(format!(
                    "{}: exists and was not written by safety-tune (no {MARKER}); remove it or choose another folder",
                    out.display()
                )));
            }
        }
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .map_err(|e| TrainError::io(&parent, "cannot create the output's parent folder", e))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempdir_in(&parent)
            .map_err(|e| TrainError::io(out, "cannot create a temporary folder beside it", e))?;
        Ok(Staging {
            out: out.to_path_buf(),
            tmp,
        })
    }

    /// The temporary folder files go into.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The final destination.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Puts the finished export in place. A new destination is the temporary folder
    /// renamed (atomic). Into an existing one (an earlier export, which may also hold the
    /// user's notes or other tools' outputs), only the files this export wrote are moved,
    /// each replacing its namesake: nothing else in the folder is touched. The marker goes
    /// first and comes back last, so a half-replaced folder is never taken for a finished one.
    pub fn commit(self) -> Result<()> {
        let tmp = self.tmp.keep();
        if !self.out.exists() {
            if let Err(e) = std::fs::rename(&tmp, &self.out) {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(TrainError::io(
                    &self.out,
                    "cannot rename the finished export into place",
                    e,
                ));
            }
        } else {
            let moved = replace_files(&tmp, &self.out);
            let _ = std::fs::remove_dir_all(&tmp);
            moved?;
        }
        sync_dir(&self.out);
        if let Some(p) = self.out.parent() {
            sync_dir(if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            });
        }
        Ok(())
    }
}

/// Moves every file of `from` into `to`, replacing files of the same names; the marker is
/// removed from `to` first and moved last.
fn replace_files(from: &Path, to: &Path) -> Result<()> {
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(from)
        .map_err(|e| TrainError::io(from, "cannot read", e))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .filter(|n| n != MARKER)
        .collect();
    names.sort();
    names.push(MARKER.into());
    match std::fs::remove_file(to.join(MARKER)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(TrainError::io(to.join(MARKER), "cannot replace", e))
        }
        _ => {}
    }
    for n in names {
        let (src, dst) = (from.join(&n), to.join(&n));
        if !src.exists() {
            continue;
        }
        std::fs::rename(&src, &dst).map_err(|e| TrainError::io(&dst, "cannot replace", e))?;
    }
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) {}

/// Weights under their family's Hugging Face names (q/k/v and gate/up split apart again, except
/// where the family keeps them fused).
pub fn hf_tensors(cfg: &Config, w: Weights) -> Tensors {
    let d = cfg.hidden_size;
    let mut out: Tensors = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, d],
        dense(w.embed),
    )];
    for (i, l) in w.layers.into_iter().enumerate() {
        block_tensors(cfg, &format!("model.layers.{i}"), l, &mut out);
    }
    out.push((
        "model.norm.weight".to_string(),
        vec![d],
        stored_norm(cfg, w.final_norm),
    ));
    if let Some(h) = w.lm_head {
        out.push((
            "lm_head.weight".to_string(),
            vec![cfg.vocab_size, d],
            dense(h),
        ));
    }
    out
}

/// Named tensors: `(name, shape, values)`.
type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// A matrix as f32 values (stored types expanded: a trained model is small).
fn dense(m: hd_lm::Matrix) -> Vec<f32> {
    m.into_f32().unwrap_or_else(|m| m.to_f32())
}

/// A norm gain as the checkpoint stores it: Gemma stores `w` of `1 + w`, hd-lm holds `1 + w`
/// (exact both ways for gains in [0.5, 2], where `1 + w − 1` is exact).
fn stored_norm(cfg: &Config, v: Vec<f32>) -> Vec<f32> {
    if matches!(cfg.arch, Arch::Gemma2 | Arch::Gemma3) {
        v.into_iter().map(|x| x - 1.0).collect()
    } else {
        v
    }
}

/// One block's tensors under its family's names (prefix `p`): Phi-3's fused q|k|v and gate|up,
/// q/k norms, Qwen2's biases, Gemma's sandwich norms.
fn block_tensors(cfg: &Config, p: &str, l: hd_lm::weights::LayerWeights, out: &mut Tensors) {
    let (d, ff, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
    let (q, kv) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    let fused = cfg.arch == Arch::Phi3;
    let norm = |v: Vec<f32>| stored_norm(cfg, v);
    let mut put = |name: &str, shape: Vec<usize>, data: Vec<f32>| {
        out.push((format!("{p}.{name}"), shape, data));
    };
    put("input_layernorm.weight", vec![d], norm(l.attn_norm));
    let wqkv = dense(l.wqkv);
    if fused {
        put("self_attn.qkv_proj.weight", vec![q + 2 * kv, d], wqkv);
    } else {
        let (wq, rest) = wqkv.split_at(q * d);
        let (wk, wv) = rest.split_at(kv * d);
        put("self_attn.q_proj.weight", vec![q, d], wq.to_vec());
        put("self_attn.k_proj.weight", vec![kv, d], wk.to_vec());
        put("self_attn.v_proj.weight", vec![kv, d], wv.to_vec());
    }
    if let Some(g) = l.extra.q_norm {
        put("self_attn.q_norm.weight", vec![hd], norm(g));
    }
    if let Some(g) = l.extra.k_norm {
        put("self_attn.k_norm.weight", vec![hd], norm(g));
    }
    if let Some(b) = l.bqkv {
        put("self_attn.q_proj.bias", vec![q], b[..q].to_vec());
        put("self_attn.k_proj.bias", vec![kv], b[q..q + kv].to_vec());
        put("self_attn.v_proj.bias", vec![kv], b[q + kv..].to_vec());
    }
    put("self_attn.o_proj.weight", vec![d, q], dense(l.wo));
    match (l.extra.post_attn_norm, l.extra.post_mlp_norm) {
        // Gemma's sandwich: a norm after attention, then one before and one after the MLP
        (Some(pa), Some(pm)) => {
            put("post_attention_layernorm.weight", vec![d], norm(pa));
            put(
                "pre_feedforward_layernorm.weight",
                vec![d],
                norm(l.mlp_norm),
            );
            put("post_feedforward_layernorm.weight", vec![d], norm(pm));
        }
        _ => put("post_attention_layernorm.weight", vec![d], norm(l.mlp_norm)),
    }
    let w_gate_up = dense(l.w_gate_up);
    if fused {
        put("mlp.gate_up_proj.weight", vec![2 * ff, d], w_gate_up);
    } else {
        let (g, u) = w_gate_up.split_at(ff * d);
        put("mlp.gate_proj.weight", vec![ff, d], g.to_vec());
        put("mlp.up_proj.weight", vec![ff, d], u.to_vec());
    }
    put("mlp.down_proj.weight", vec![d, ff], dense(l.w_down));
}

fn token_id(tok: &Tokenizer, t: &Option<String>) -> Value {
    t.as_deref()
        .and_then(|t| tok.token_id(t))
        .map_or(Value::Null, Value::from)
}

/// `config.json` for transformers (`LlamaForCausalLM` or `Qwen2ForCausalLM`, f32).
pub fn config_json(cfg: &Config, tok: &Tokenizer) -> Value {
    let (arch, class) = match cfg.arch {
        Arch::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
        // checked by the caller (export_supported): only these two export
        _ => ("llama", "LlamaForCausalLM"),
    };
    let mut j = Map::new();
    j.insert("architectures".into(), json!([class]));
    j.insert("model_type".into(), json!(arch));
    j.insert("hidden_size".into(), json!(cfg.hidden_size));
    j.insert("intermediate_size".into(), json!(cfg.intermediate_size));
    j.insert("num_hidden_layers".into(), json!(cfg.num_layers));
    j.insert("num_attention_heads".into(), json!(cfg.num_heads));
    j.insert("num_key_value_heads".into(), json!(cfg.num_kv_heads));
    j.insert("head_dim".into(), json!(cfg.head_dim));
    j.insert("vocab_size".into(), json!(cfg.vocab_size));
    j.insert("hidden_act".into(), json!("silu"));
    j.insert("rms_norm_eps".into(), json!(cfg.rms_norm_eps));
    j.insert("rope_theta".into(), json!(cfg.rope_theta));
    j.insert(
        "rope_scaling".into(),
        match cfg.rope_scaling {
            None => Value::Null,
            Some(s) => json!({
                "rope_type": "llama3",
                "factor": s.factor,
                "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_position_embeddings,
            }),
        },
    );
    j.insert(
        "max_position_embeddings".into(),
        json!(cfg.max_position_embeddings),
    );
    j.insert("tie_word_embeddings".into(), json!(cfg.tie_word_embeddings));
    if cfg.arch == Arch::Llama {
        j.insert("attention_bias".into(), json!(false));
        j.insert("mlp_bias".into(), json!(false));
        j.insert("pretraining_tp".into(), json!(1));
    } else {
        j.insert("use_sliding_window".into(), json!(false));
    }
    j.insert("attention_dropout".into(), json!(0.0));
    j.insert("initializer_range".into(), json!(0.02));
    j.insert("bos_token_id".into(), token_id(tok, &tok.bos_token));
    j.insert("eos_token_id".into(), token_id(tok, &tok.eos_token));
    j.insert("use_cache".into(), json!(true));
    j.insert("torch_dtype".into(), json!("float32"));
    Value::Object(j)
}

/// `tokenizer_config.json`: the source directory's one when there is one, with the chat
/// template, BOS/EOS and the added-token table filled in.
pub fn tokenizer_config_json(
    tok: &Tokenizer,
    template: Option<&ChatTemplate>,
    max_len: usize,
    source: Option<&Value>,
) -> Value {
    let mut j = match source {
        Some(Value::Object(o)) => o.clone(),
        _ => Map::new(),
    };
    let decoder = tok.inner().get_added_tokens_decoder();
    let mut ids: Vec<&u32> = decoder.keys().collect();
    ids.sort();
    let mut table = Map::new();
    for id in ids {
        let t = &decoder[id];
        table.insert(
            id.to_string(),
            json!({
                "content": t.content, "lstrip": t.lstrip, "normalized": t.normalized,
                "rstrip": t.rstrip, "single_word": t.single_word, "special": t.special,
            }),
        );
    }
    j.entry("added_tokens_decoder")
        .or_insert(Value::Object(table));
    if let Some(b) = &tok.bos_token {
        j.insert("bos_token".into(), json!(b));
    }
    if let Some(e) = &tok.eos_token {
        j.insert("eos_token".into(), json!(e));
    }
    if let Some(t) = template {
        j.insert("chat_template".into(), json!(t.source()));
    }
    j.entry("clean_up_tokenization_spaces")
        .or_insert(json!(false));
    j.entry("model_max_length").or_insert(json!(max_len));
    j.entry("tokenizer_class")
        .or_insert(json!("PreTrainedTokenizerFast"));
    Value::Object(j)
}

/// `generation_config.json`: greedy decoding's stop tokens.
pub fn generation_config_json(tok: &Tokenizer) -> Value {
    let eos = tok.eos_token.as_deref().and_then(|t| tok.token_id(t));
    let mut stops: Vec<u32> = eos.into_iter().collect();
    for &s in &tok.stop_ids {
        if !stops.contains(&s) {
            stops.push(s);
        }
    }
    json!({
        "bos_token_id": token_id(tok, &tok.bos_token),
        "eos_token_id": stops,
        "do_sample": false,
    })
}

/// Everything an export writes besides the weights.
pub struct ExportParts<'a> {
    /// Hyper-parameters.
    pub config: &'a Config,
    /// Tokenizer.
    pub tokenizer: &'a Tokenizer,
    /// Chat template.
    pub template: Option<&'a ChatTemplate>,
    /// The source model directory, when it was a Hugging Face one (its `tokenizer.json` and
    /// `tokenizer_config.json` are carried over).
    pub source_dir: Option<&'a Path>,
    /// Extra `__metadata__` of `model.safetensors` (`format: pt` is always set).
    pub metadata: BTreeMap<String, String>,
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    let mut s = serde_json::to_string_pretty(v).expect("JSON values serialise");
    s.push('\n');
    write_atomic(path, |w| w.write_all(s.as_bytes()))?;
    Ok(())
}

/// Whether a model can be exported (checked before training, by the tools that train): Llama
/// and Qwen2 from any source, their config written here; every other family only from its
/// Hugging Face directory, whose `config.json` (every family field, as transformers wrote it)
/// is carried over beside the new weights. A GGUF of another family would need its config
/// written from scratch, and a multimodal directory's config describes more than the text
/// model we train: both are refused.
pub fn check_exportable(cfg: &Config, source_dir: Option<&Path>) -> Result<()> {
    if writes_config(cfg) {
        return Ok(());
    }
    let refuse = |why: String| {
        Err(crate::TrainError::Input(format!(
            "cannot export a {} model as a Hugging Face checkpoint: {why}",
            cfg.arch.name()
        )))
    };
    let Some(dir) = source_dir else {
        return refuse(
            "only Llama and Qwen2 configs are written from scratch; run it from its Hugging \
             Face directory, whose config.json is carried over"
                .into(),
        );
    };
    match source_config(dir)? {
        Some(j) if j.get("text_config").is_some() => refuse(format!(
            "{} is a multimodal config (text_config); export its text model's directory",
            dir.join("config.json").display()
        )),
        Some(_) => Ok(()),
        None => refuse(format!("{} has no config.json", dir.display())),
    }
}

/// Whether [`config_json`] writes this model's whole config (plain Llama and Qwen2 blocks).
fn writes_config(cfg: &Config) -> bool {
    matches!(cfg.arch, Arch::Llama | Arch::Qwen2) && cfg.features.names().is_empty()
}

fn source_config(dir: &Path) -> Result<Option<Value>> {
    let p = dir.join("config.json");
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| TrainError::Input(format!("{}: invalid JSON: {e}", p.display()))),
        Err(_) => Ok(None),
    }
}

/// Writes the model files into `dir` (normally [`Staging::path`]).
pub fn write_model_files(dir: &Path, parts: &ExportParts<'_>, weights: Weights) -> Result<()> {
    let cfg = parts.config;
    let tok = parts.tokenizer;
    check_exportable(cfg, parts.source_dir)?;
    let config = match parts.source_dir.map(source_config).transpose()?.flatten() {
        // every field of the family as transformers wrote it; the weights are now f32
        Some(mut j) if !writes_config(cfg) => {
            j["torch_dtype"] = json!("float32");
            j
        }
        _ => config_json(cfg, tok),
    };
    write_json(&dir.join("config.json"), &config)?;
    let source_tc = match parts.source_dir {
        Some(d) => {
            let p = d.join("tokenizer_config.json");
            match std::fs::read(&p) {
                Ok(b) => Some(serde_json::from_slice::<Value>(&b).map_err(|e| {
                    TrainError::Input(format!("{}: invalid JSON: {e}", p.display()))
                })?),
                Err(_) => None,
            }
        }
        None => None,
    };
    write_json(
        &dir.join("tokenizer_config.json"),
        &tokenizer_config_json(
            tok,
            parts.template,
            cfg.max_position_embeddings,
            source_tc.as_ref(),
        ),
    )?;
    write_json(
        &dir.join("generation_config.json"),
        &generation_config_json(tok),
    )?;
    let tj = match parts.source_dir.map(|d| d.join("tokenizer.json")) {
        Some(p) if p.exists() => {
            std::fs::read(&p).map_err(|e| TrainError::io(&p, "cannot read", e))?
        }
        _ => tok
            .inner()
            .to_string(false)
            .map_err(|e| TrainError::Input(format!("cannot serialise the tokenizer: {e}")))?
            .into_bytes(),
    };
    write_atomic(&dir.join("tokenizer.json"), |w| w.write_all(&tj))?;
    // A SentencePiece model beside it (Llama 2, Mistral, Gemma): transformers rebuilds the
    // fast tokenizer from it when the config asks (`add_prefix_space`, `legacy`).
    if let Some(p) = parts.source_dir.map(|d| d.join("tokenizer.model")) {
        if p.exists() {
            let b = std::fs::read(&p).map_err(|e| TrainError::io(&p, "cannot read", e))?;
            write_atomic(&dir.join("tokenizer.model"), |w| w.write_all(&b))?;
        }
    }
    let mut meta = parts.metadata.clone();
    meta.insert("format".into(), "pt".into());
    let mut f = TensorFile::new(meta);
    for (name, shape, data) in hf_tensors(cfg, weights) {
        f.insert(name, FTensor::f32(shape, data)?);
    }
    f.write(&dir.join("model.safetensors"))?;
    Ok(())
}
