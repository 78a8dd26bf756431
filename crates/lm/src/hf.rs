//! Hugging Face model directories: `config.json`, `model.safetensors` or a sharded index.

use crate::config::{Arch, Config, Llama3Scaling};
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
    let s = |k: &str| j.get(k).and_then(J::as_str);
    let u = |k: &str| -> Result<usize> {
        j.get(k)
            .and_then(J::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| LmError::format(&path, format!("missing or non-integer '{k}'")))
    };
    let f = |k: &str, def: f64| j.get(k).and_then(J::as_f64).unwrap_or(def);
    let model_type = s("model_type").unwrap_or("");
    let arch = match model_type {
        "llama" | "mistral" => Arch::Llama,
        "qwen2" => Arch::Qwen2,
        other => {
            let archs = j
                .get("architectures")
                .map(|a| a.to_string())
                .unwrap_or_default();
            return Err(LmError::Unsupported {
                path,
                what: format!("model_type '{other}' {archs} (supported: llama, mistral, qwen2)"),
            });
        }
    };
    let hidden_size = u("hidden_size")?;
    let num_heads = u("num_attention_heads")?;
    let num_kv_heads = u("num_key_value_heads").unwrap_or(num_heads);
    let head_dim = match j.get("head_dim").and_then(J::as_u64) {
        Some(h) => h as usize,
        // 0 heads is reported by validate(), not a division by zero here.
        None => hidden_size.checked_div(num_heads).unwrap_or(0),
    };
    let rope_scaling = match j.get("rope_scaling") {
        None | Some(J::Null) => None,
        Some(rs) => {
            let ty = rs
                .get("rope_type")
                .or_else(|| rs.get("type"))
                .and_then(J::as_str)
                .unwrap_or("");
            if ty != "llama3" {
                return Err(LmError::Unsupported {
                    path,
                    what: format!("rope_scaling type '{ty}' (supported: llama3)"),
                });
            }
            let g = |k: &str| rs.get(k).and_then(J::as_f64);
            Some(Llama3Scaling {
                factor: g("factor").unwrap_or(8.0),
                low_freq_factor: g("low_freq_factor").unwrap_or(1.0),
                high_freq_factor: g("high_freq_factor").unwrap_or(4.0),
                original_max_position_embeddings: g("original_max_position_embeddings")
                    .unwrap_or(8192.0) as usize,
            })
        }
    };
    let cfg = Config {
        arch,
        hidden_size,
        intermediate_size: u("intermediate_size")?,
        num_layers: u("num_hidden_layers")?,
        num_heads,
        num_kv_heads,
        head_dim,
        vocab_size: u("vocab_size")?,
        rms_norm_eps: f("rms_norm_eps", 1e-6),
        rope_theta: f("rope_theta", 10_000.0),
        rope_scaling,
        max_position_embeddings: u("max_position_embeddings").unwrap_or(4096),
        tie_word_embeddings: j
            .get("tie_word_embeddings")
            .and_then(J::as_bool)
            .unwrap_or(false),
    };
    cfg.validate().map_err(|m| LmError::format(&path, m))?;
    Ok(cfg)
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
            index,
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
