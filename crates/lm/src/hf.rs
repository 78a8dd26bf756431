//! Hugging Face model directories: `config.json`, `model.safetensors` or a sharded index.

use crate::config::{Act, Arch, Config, Features, Llama3Scaling, LongRope};
use crate::error::{LmError, Result};
use crate::matrix::{Bytes, Matrix};
use crate::tokenizer::read_json_opt;
use crate::weights::{decode_floats, Float, TensorSource};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value as J;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) fn config(dir: &Path) -> Result<Config> {
    let path = dir.join("config.json");
    let j = read_json_opt(&path)?
        .ok_or_else(|| LmError::format(dir, "no config.json in the model directory"))?;
    let mut model_type = j
        .get("model_type")
        .and_then(J::as_str)
        .unwrap_or("")
        .to_string();
    // A multimodal Gemma 3 (4B and up): its text model, from `text_config`.
    let j = if model_type == "gemma3" {
        let text = j
            .get("text_config")
            .filter(|t| t.is_object())
            .ok_or_else(|| LmError::format(&path, "model_type gemma3 without a 'text_config'"))?
            .clone();
        model_type = text
            .get("model_type")
            .and_then(J::as_str)
            .unwrap_or("gemma3_text")
            .to_string();
        text
    } else {
        j
    };
    let arch = match model_type.as_str() {
        "llama" => Arch::Llama,
        "mistral" => Arch::Mistral,
        "qwen2" => Arch::Qwen2,
        "qwen3" => Arch::Qwen3,
        "gemma2" => Arch::Gemma2,
        "gemma3_text" => Arch::Gemma3,
        "phi3" => Arch::Phi3,
        other => {
            let archs = j
                .get("architectures")
                .map(|a| format!(" {a}"))
                .unwrap_or_default();
            return Err(LmError::Unsupported {
                path,
                what: format!(
                    "model_type '{other}'{archs} (supported: {}, gemma3_text)",
                    Arch::supported()
                ),
            });
        }
    };
    let j = with_defaults(j, arch);
    let cfg = HfConfig { j: &j, path: &path }.parse(arch)?;
    cfg.validate().map_err(|m| LmError::format(&path, m))?;
    Ok(cfg)
}

/// `j` with transformers' defaults (4.57's config classes) for the keys it leaves out that
/// change the computation: a config saved as a diff from the defaults, or written by hand,
/// means those values (Gemma 2's soft-capping, Mistral's window of 4096, ...). A key that is
/// present, even as null, is kept.
fn with_defaults(mut j: J, arch: Arch) -> J {
    let d = match arch {
        Arch::Llama => serde_json::json!({"rms_norm_eps": 1e-6, "rope_theta": 10000.0}),
        Arch::Mistral => serde_json::json!({"rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "sliding_window": 4096}),
        Arch::Qwen2 => serde_json::json!({"rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "use_sliding_window": false, "max_window_layers": 28}),
        Arch::Qwen3 => serde_json::json!({"rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "head_dim": 128, "use_sliding_window": false, "max_window_layers": 28}),
        Arch::Gemma2 => serde_json::json!({"rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 4096,
            "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
            "tie_word_embeddings": true}),
        // a multimodal checkpoint's text_config is saved as a diff from these, sizes included
        Arch::Gemma3 => serde_json::json!({"rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
            "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 4096,
            "rope_local_base_freq": 10000.0, "tie_word_embeddings": true,
            "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 262208,
            "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
            "max_position_embeddings": 131072}),
        Arch::Phi3 => serde_json::json!({"rms_norm_eps": 1e-5, "rope_theta": 10000.0}),
    };
    if let (Some(obj), J::Object(d)) = (j.as_object_mut(), d) {
        for (k, v) in d {
            obj.entry(k).or_insert(v);
        }
    }
    j
}

/// A `config.json` being read: every key that changes the computation is either implemented
/// or refused with its name.
struct HfConfig<'a> {
    j: &'a J,
    path: &'a Path,
}

impl HfConfig<'_> {
    fn get(&self, k: &str) -> Option<&J> {
        self.j.get(k).filter(|v| !v.is_null())
    }
    fn u(&self, k: &str) -> Result<usize> {
        self.get(k)
            .and_then(J::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| LmError::format(self.path, format!("missing or non-integer '{k}'")))
    }
    fn f(&self, k: &str, def: f64) -> f64 {
        self.get(k).and_then(J::as_f64).unwrap_or(def)
    }
    fn opt_f(&self, k: &str) -> Result<Option<f64>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                LmError::format(
                    self.path,
                    format!("'{k}' is {v}, expected a number or null"),
                )
            }),
        }
    }
    fn flag(&self, k: &str) -> bool {
        self.get(k).and_then(J::as_bool).unwrap_or(false)
    }
    fn refuse(&self, what: String) -> LmError {
        LmError::Unsupported {
            path: self.path.into(),
            what,
        }
    }

    fn parse(&self, arch: Arch) -> Result<Config> {
        let gemma = matches!(arch, Arch::Gemma2 | Arch::Gemma3);
        let hidden_size = self.u("hidden_size")?;
        let num_heads = self.u("num_attention_heads")?;
        let num_kv_heads = self.u("num_key_value_heads").unwrap_or(num_heads);
        let head_dim = match self.get("head_dim").and_then(J::as_u64) {
            Some(h) => h as usize,
            // 0 heads is reported by validate(), not a division by zero here.
            None => hidden_size.checked_div(num_heads).unwrap_or(0),
        };
        let num_layers = self.u("num_hidden_layers")?;
        self.check_act(gemma)?;
        if let Some(p) = self.opt_f("partial_rotary_factor")? {
            if p != 1.0 {
                return Err(self.refuse(format!(
                    "partial_rotary_factor {p} (only full rotary embeddings run)"
                )));
            }
        }
        if self.flag("use_bidirectional_attention") {
            return Err(self.refuse("use_bidirectional_attention true (causal models only)".into()));
        }
        let (rope_scaling, mut features) = self.rope(arch, head_dim)?;
        features.sliding_window = self.window(arch)?;
        features.sliding_layers = self.layer_types(arch, num_layers, &features)?;
        features.qk_norm = matches!(arch, Arch::Qwen3 | Arch::Gemma3);
        if gemma {
            features.sandwich_norms = true;
            features.act = Act::GeluTanh;
            features.embed_scale = Some((hidden_size as f64).sqrt() as f32);
            features.query_pre_attn_scalar = Some(self.f("query_pre_attn_scalar", 256.0));
            features.attn_softcap = self.opt_f("attn_logit_softcapping")?.map(|x| x as f32);
            features.final_softcap = self.opt_f("final_logit_softcapping")?.map(|x| x as f32);
        } else {
            for k in [
                "attn_logit_softcapping",
                "final_logit_softcapping",
                "query_pre_attn_scalar",
            ] {
                if self.get(k).is_some() {
                    return Err(self.refuse(format!("'{k}' in a {} config", arch.name())));
                }
            }
        }
        if arch == Arch::Gemma3 {
            features.rope_local_theta = Some(self.f("rope_local_base_freq", 10_000.0));
        }
        let tie_default = gemma;
        Ok(Config {
            arch,
            hidden_size,
            intermediate_size: self.u("intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size: self.u("vocab_size")?,
            rms_norm_eps: self.f("rms_norm_eps", 1e-6),
            rope_theta: self.f("rope_theta", 10_000.0),
            rope_scaling,
            max_position_embeddings: self.u("max_position_embeddings").unwrap_or(4096),
            tie_word_embeddings: self
                .get("tie_word_embeddings")
                .and_then(J::as_bool)
                .unwrap_or(tie_default),
            features,
        })
    }

    /// The MLP activation must be the family's.
    fn check_act(&self, gemma: bool) -> Result<()> {
        let want = if gemma { "gelu_pytorch_tanh" } else { "silu" };
        // transformers' Gemma 2/3 read `hidden_activation` (and ignore `hidden_act`); the
        // others `hidden_act`. Absent, each family's default is the one above.
        let key = if gemma {
            "hidden_activation"
        } else {
            "hidden_act"
        };
        match self.get(key) {
            None => Ok(()),
            Some(J::String(a)) if a == want => Ok(()),
            Some(other) => Err(self.refuse(format!("{key} {other} (this family runs {want})"))),
        }
    }

    /// The sliding window, for the families whose transformers code applies one.
    fn window(&self, arch: Arch) -> Result<Option<usize>> {
        let w = match self.get("sliding_window") {
            None => return Ok(None),
            Some(v) => v.as_u64().ok_or_else(|| {
                LmError::format(
                    self.path,
                    format!("'sliding_window' is {v}, expected an integer"),
                )
            })? as usize,
        };
        Ok(match arch {
            // transformers' Llama ignores the key.
            Arch::Llama => None,
            Arch::Qwen2 | Arch::Qwen3 => self.flag("use_sliding_window").then_some(w),
            _ => Some(w),
        })
    }

    /// Which layers slide: `layer_types` when given, else each family's default.
    fn layer_types(&self, arch: Arch, nl: usize, f: &Features) -> Result<Vec<bool>> {
        if f.sliding_window.is_none() {
            return Ok(Vec::new());
        }
        if let Some(lt) = self.get("layer_types") {
            let a = lt.as_array().filter(|a| a.len() == nl).ok_or_else(|| {
                LmError::format(
                    self.path,
                    format!("'layer_types' is not a list of {nl} layer types"),
                )
            })?;
            return a
                .iter()
                .map(|t| match t.as_str() {
                    Some("sliding_attention") => Ok(true),
                    Some("full_attention") => Ok(false),
                    _ => Err(self.refuse(format!(
                        "layer type {t} (supported: sliding_attention, full_attention)"
                    ))),
                })
                .collect();
        }
        Ok(match arch {
            Arch::Gemma2 => (0..nl).map(|i| (i + 1) % 2 != 0).collect(),
            Arch::Gemma3 => {
                let p = self.u("sliding_window_pattern").unwrap_or(6).max(1);
                (0..nl).map(|i| (i + 1) % p != 0).collect()
            }
            Arch::Qwen2 | Arch::Qwen3 => {
                let m = self.u("max_window_layers").unwrap_or(0);
                (0..nl).map(|i| i >= m).collect()
            }
            _ => vec![true; nl],
        })
    }

    /// `rope_scaling`: Llama 3, linear (Gemma 3) and longrope / su (Phi-3); anything else is
    /// refused by name.
    fn rope(&self, arch: Arch, head_dim: usize) -> Result<(Option<Llama3Scaling>, Features)> {
        let mut f = Features::default();
        let Some(rs) = self.get("rope_scaling") else {
            return Ok((None, f));
        };
        let ty = rs
            .get("rope_type")
            .or_else(|| rs.get("type"))
            .and_then(J::as_str)
            .unwrap_or("");
        let g = |k: &str| rs.get(k).and_then(J::as_f64);
        match ty {
            "default" => Ok((None, f)),
            "llama3" => Ok((
                Some(Llama3Scaling {
                    factor: g("factor").unwrap_or(8.0),
                    low_freq_factor: g("low_freq_factor").unwrap_or(1.0),
                    high_freq_factor: g("high_freq_factor").unwrap_or(4.0),
                    original_max_position_embeddings: g("original_max_position_embeddings")
                        .unwrap_or(8192.0)
                        as usize,
                }),
                f,
            )),
            "linear" => {
                f.rope_linear_factor = Some(g("factor").unwrap_or(1.0));
                Ok((None, f))
            }
            "longrope" | "su" if arch == Arch::Phi3 => {
                let short: Vec<f64> = rs
                    .get("short_factor")
                    .and_then(J::as_array)
                    .map(|a| a.iter().filter_map(J::as_f64).collect())
                    .unwrap_or_default();
                if short.len() != head_dim / 2 {
                    return Err(LmError::format(
                        self.path,
                        format!(
                            "rope_scaling.short_factor has {} numbers, expected head_dim/2 = {}",
                            short.len(),
                            head_dim / 2
                        ),
                    ));
                }
                let max = self.u("max_position_embeddings")?;
                // transformers: sqrt(1 + ln(factor) / ln(original)), factor = max / original
                let (orig, factor) = match self.u("original_max_position_embeddings") {
                    Ok(o) => (o, max as f64 / o.max(1) as f64),
                    Err(_) => (max, g("factor").unwrap_or(1.0)),
                };
                let attention_factor = g("attention_factor").unwrap_or(if factor <= 1.0 {
                    1.0
                } else {
                    (1.0 + factor.ln() / (orig as f64).ln()).sqrt()
                });
                f.longrope = Some(LongRope {
                    short_factor: short,
                    attention_factor,
                    original_max_position_embeddings: orig,
                });
                Ok((None, f))
            }
            other => Err(self.refuse(format!(
                "rope_scaling type '{other}' for {} (supported: llama3, linear{})",
                arch.name(),
                if arch == Arch::Phi3 {
                    ", longrope, su"
                } else {
                    ""
                }
            ))),
        }
    }
}

/// A multimodal checkpoint's text model under the names of a text-only one: Gemma 3's
/// `language_model.model.*` (as published) or `model.language_model.*` (as transformers 4.57
/// saves it) become `model.*`, its head `lm_head.weight`; the vision tower and projector, which
/// a text prompt never reaches, are left out. Other checkpoints are returned as they are.
fn text_model_names(index: BTreeMap<String, Entry>) -> BTreeMap<String, Entry> {
    const PREFIXES: [(&str, &str); 3] = [
        ("language_model.model.", "model."),
        ("model.language_model.", "model."),
        ("language_model.lm_head.", "lm_head."),
    ];
    let multimodal = index
        .keys()
        .any(|n| PREFIXES.iter().any(|(p, _)| n.starts_with(p)));
    if !multimodal {
        return index;
    }
    index
        .into_iter()
        .filter_map(|(n, e)| {
            if let Some((p, to)) = PREFIXES.iter().find(|(p, _)| n.starts_with(p)) {
                return Some((format!("{to}{}", &n[p.len()..]), e));
            }
            let vision = [
                "vision_tower.",
                "multi_modal_projector.",
                "model.vision_tower.",
                "model.multi_modal_projector.",
            ];
            (!vision.iter().any(|v| n.starts_with(v))).then_some((n, e))
        })
        .collect()
}

/// The safetensors files of a directory, memory-mapped, with the tensor → file map.
pub(crate) struct HfTensors {
    dir: PathBuf,
    files: Vec<(PathBuf, Arc<Mmap>)>,
    /// Each tensor's file, dtype, shape and byte range there, from the headers read at open.
    index: BTreeMap<String, Entry>,
}

struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: std::ops::Range<usize>,
}

impl HfTensors {
    pub fn open(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let names: Vec<String> = if single.exists() {
            vec!["model.safetensors".into()]
        } else {
            let idx = dir.join("model.safetensors.index.json");
            let j = read_json_opt(&idx)?.ok_or_else(|| {
                LmError::format(
                    dir,
                    "no model.safetensors or model.safetensors.index.json in the model directory",
                )
            })?;
            let map = j
                .get("weight_map")
                .and_then(J::as_object)
                .ok_or_else(|| LmError::format(&idx, "missing 'weight_map'"))?;
            let mut v: Vec<String> = map
                .values()
                .filter_map(J::as_str)
                .map(str::to_owned)
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let mut files = Vec::new();
        let mut index = BTreeMap::new();
        for name in names {
            let p = dir.join(&name);
            let f = std::fs::File::open(&p).map_err(|e| LmError::io(&p, e))?;
            // SAFETY: the file is opened read-only and not modified by us while mapped.
            let mm = unsafe { Mmap::map(&f) }.map_err(|e| LmError::io(&p, e))?;
            let bad = |e: safetensors::SafeTensorError| {
                LmError::format(&p, format!("not a valid safetensors file: {e}"))
            };
            // deserialize validates every tensor's offsets against the file
            SafeTensors::deserialize(&mm).map_err(bad)?;
            let (header, meta) = SafeTensors::read_metadata(&mm).map_err(bad)?;
            let start = 8 + header;
            for (name, info) in meta.tensors() {
                let (a, b) = info.data_offsets;
                index.insert(
                    name,
                    Entry {
                        file: files.len(),
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        bytes: start + a..start + b,
                    },
                );
            }
            files.push((p, Arc::new(mm)));
        }
        Ok(HfTensors {
            dir: dir.into(),
            files,
            index: text_model_names(index),
        })
    }

    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }
}

impl TensorSource for HfTensors {
    fn path(&self) -> &Path {
        &self.dir
    }

    fn unused(&self, used: &std::collections::BTreeSet<String>) -> Option<String> {
        self.index
            .keys()
            // old checkpoints carry RoPE's frequencies as a buffer; we compute them
            .find(|n| !used.contains(*n) && !n.ends_with("rotary_emb.inv_freq"))
            .cloned()
    }

    fn shape(&self, name: &str) -> Result<Option<Vec<usize>>> {
        Ok(self.index.get(name).map(|e| e.shape.clone()))
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let Some(e) = self.index.get(name) else {
            return Err(LmError::format(
                &self.dir,
                format!("missing tensor '{name}'"),
            ));
        };
        let (p, mm) = &self.files[e.file];
        use candle_core::quantized::GgmlDType as G;
        let kind = match e.dtype {
            Dtype::F32 => G::F32,
            Dtype::BF16 => G::BF16,
            Dtype::F16 => G::F16,
            other => {
                return Err(LmError::format(
                    p,
                    format!("tensor '{name}' has dtype {other:?}, expected F32, BF16 or F16"),
                ))
            }
        };
        let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = mm.clone();
        let bytes = Bytes::new(owner, e.bytes.clone())
            .ok_or_else(|| LmError::format(p, format!("tensor '{name}' lies past the file")))?;
        Matrix::stored(rows, cols, kind, bytes, None)
            .map_err(|m| LmError::format(p, format!("tensor '{name}': {m}")))
    }

    fn read_into(&self, name: &str, dst: &mut [f32]) -> Result<()> {
        let Some(e) = self.index.get(name) else {
            return Err(LmError::format(
                &self.dir,
                format!("missing tensor '{name}'"),
            ));
        };
        let (p, mm) = &self.files[e.file];
        let kind = match e.dtype {
            Dtype::F32 => Float::F32,
            Dtype::BF16 => Float::BF16,
            Dtype::F16 => Float::F16,
            other => {
                return Err(LmError::format(
                    p,
                    format!("tensor '{name}' has dtype {other:?}, expected F32, BF16 or F16"),
                ))
            }
        };
        decode_floats(kind, &mm[e.bytes.clone()], dst)
            .map_err(|m| LmError::format(p, format!("tensor '{name}': {m}")))
    }
}
