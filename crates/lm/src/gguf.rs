//! GGUF files (llama.cpp): config from metadata, tensors dequantized to f32 by candle, and the
//! tokenizer and chat template from `tokenizer.*` metadata.

use crate::config::{Arch, Config, Llama3Scaling};
use crate::error::{LmError, Result};
use crate::weights::TensorSource;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::Device;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

pub(crate) struct Gguf {
    pub path: PathBuf,
    pub content: Content,
    reader: BufReader<File>,
    arch: Arch,
    heads: (usize, usize),
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| LmError::io(path, e))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| {
            LmError::format(
                path,
                format!("not a readable GGUF file: {}", crate::error::candle_msg(&e)),
            )
        })?;
        let arch_name = get_str(&content, path, "general.architecture")?;
        let arch = match arch_name.as_str() {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => {
                return Err(LmError::Unsupported {
                    path: path.into(),
                    what: format!("architecture '{other}' (supported: llama, qwen2)"),
                })
            }
        };
        Ok(Gguf {
            path: path.into(),
            content,
            reader,
            arch,
            heads: (0, 0),
        })
    }

    pub fn config(&mut self) -> Result<Config> {
        let a = self.arch.name();
        let c = &self.content;
        let p = &self.path;
        let u = |k: &str| get_usize(c, p, &format!("{a}.{k}"));
        let hidden_size = u("embedding_length")?;
        let num_heads = u("attention.head_count")?;
        let num_kv_heads = match c.metadata.get(&format!("{a}.attention.head_count_kv")) {
            Some(_) => u("attention.head_count_kv")?,
            None => num_heads,
        };
        let head_dim = match c.metadata.get(&format!("{a}.attention.key_length")) {
            Some(_) => u("attention.key_length")?,
            None => hidden_size / num_heads,
        };
        let embd = self
            .content
            .tensor_infos
            .get("token_embd.weight")
            .ok_or_else(|| LmError::format(p, "missing tensor 'token_embd.weight'"))?;
        let vocab_size = embd.shape.dims()[0];
        let f = |k: &str, default: f64| -> Result<f64> {
            match c.metadata.get(&format!("{a}.{k}")) {
                Some(v) => v
                    .to_f64()
                    .or_else(|_| v.to_f32().map(f64::from))
                    .map_err(|e| {
                        LmError::format(
                            p,
                            format!("metadata '{a}.{k}': {}", crate::error::candle_msg(&e)),
                        )
                    }),
                None => Ok(default),
            }
        };
        let rope_theta = f("rope.freq_base", 10_000.0)?;
        let rms_norm_eps = f("attention.layer_norm_rms_epsilon", 1e-6)?;
        let max_position_embeddings = u("context_length").unwrap_or(4096);
        // llama.cpp stores Llama 3 scaling as a precomputed `rope_freqs` tensor; we take the
        // scaling parameters from metadata when they are there and reject the tensor otherwise
        // rather than silently ignoring it.
        let rope_scaling = if self.content.tensor_infos.contains_key("rope_freqs.weight") {
            let factor = f("rope.scaling.factor", 0.0)?;
            if factor <= 0.0 {
                return Err(LmError::Unsupported {
                    path: p.clone(),
                    what: "rope_freqs tensor without rope.scaling.factor metadata".into(),
                });
            }
            Some(Llama3Scaling {
                factor,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: f("rope.scaling.original_context_length", 8192.0)?
                    as usize,
            })
        } else {
            None
        };
        let tie_word_embeddings = !self.content.tensor_infos.contains_key("output.weight");
        let cfg = Config {
            arch: self.arch,
            hidden_size,
            intermediate_size: u("feed_forward_length")?,
            num_layers: u("block_count")?,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size,
            rms_norm_eps,
            rope_theta,
            rope_scaling,
            max_position_embeddings,
            tie_word_embeddings,
        };
        cfg.validate().map_err(|m| LmError::format(p, m))?;
        self.heads = (num_heads, num_kv_heads);
        Ok(cfg)
    }

    fn gguf_name(hf: &str) -> Option<String> {
        let map = |s: &str| -> Option<&'static str> {
            Some(match s {
                "input_layernorm.weight" => "attn_norm.weight",
                "self_attn.q_proj.weight" => "attn_q.weight",
                "self_attn.k_proj.weight" => "attn_k.weight",
                "self_attn.v_proj.weight" => "attn_v.weight",
                "self_attn.q_proj.bias" => "attn_q.bias",
                "self_attn.k_proj.bias" => "attn_k.bias",
                "self_attn.v_proj.bias" => "attn_v.bias",
                "self_attn.o_proj.weight" => "attn_output.weight",
                "post_attention_layernorm.weight" => "ffn_norm.weight",
                "mlp.gate_proj.weight" => "ffn_gate.weight",
                "mlp.up_proj.weight" => "ffn_up.weight",
                "mlp.down_proj.weight" => "ffn_down.weight",
                _ => return None,
            })
        };
        match hf {
            "model.embed_tokens.weight" => Some("token_embd.weight".into()),
            "model.norm.weight" => Some("output_norm.weight".into()),
            "lm_head.weight" => Some("output.weight".into()),
            _ => {
                let rest = hf.strip_prefix("model.layers.")?;
                let (i, tail) = rest.split_once('.')?;
                Some(format!("blk.{i}.{}", map(tail)?))
            }
        }
    }
}

impl TensorSource for Gguf {
    fn path(&self) -> &Path {
        &self.path
    }

    fn load(&mut self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        let Some(gname) = Self::gguf_name(name) else {
            return Ok(None);
        };
        if !self.content.tensor_infos.contains_key(&gname) {
            return Ok(None);
        }
        let err = |e: candle_core::Error| {
            LmError::format(
                &self.path,
                format!("tensor '{gname}': {}", crate::error::candle_msg(&e)),
            )
        };
        let q = self
            .content
            .tensor(&mut self.reader, &gname, &Device::Cpu)
            .map_err(err)?;
        let t = q.dequantize(&Device::Cpu).map_err(err)?;
        let shape = t.dims().to_vec();
        let mut data = t
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(err)?;
        // convert_hf_to_gguf.py permutes Llama q/k rows for llama.cpp's interleaved RoPE;
        // undo it so one rotate-half RoPE (Hugging Face's) serves every source.
        if self.arch == Arch::Llama {
            let heads = if gname.ends_with("attn_q.weight") || gname.ends_with("attn_q.bias") {
                Some(self.heads.0)
            } else if gname.ends_with("attn_k.weight") || gname.ends_with("attn_k.bias") {
                Some(self.heads.1)
            } else {
                None
            };
            if let Some(h) = heads {
                data = unpermute_rows(&data, h, shape[0] / h, data.len() / shape[0]);
            }
        }
        Ok(Some((shape, data)))
    }
}

/// Inverse of llama.cpp's `permute`: GGUF row `h*hd + 2i + j` is HF row `h*hd + j*hd/2 + i`.
pub(crate) fn unpermute_rows(w: &[f32], heads: usize, hd: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; w.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let src = (h * hd + 2 * i + j) * cols;
                let dst = (h * hd + j * (hd / 2) + i) * cols;
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

pub(crate) fn get_str(c: &Content, path: &Path, key: &str) -> Result<String> {
    match c.metadata.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(LmError::format(
            path,
            format!(
                "metadata '{key}' has type {:?}, expected a string",
                v.value_type()
            ),
        )),
        None => Err(LmError::format(path, format!("missing metadata '{key}'"))),
    }
}

pub(crate) fn get_usize(c: &Content, path: &Path, key: &str) -> Result<usize> {
    let v = c
        .metadata
        .get(key)
        .ok_or_else(|| LmError::format(path, format!("missing metadata '{key}'")))?;
    let n = match v {
        Value::U8(x) => *x as i128,
        Value::I8(x) => *x as i128,
        Value::U16(x) => *x as i128,
        Value::I16(x) => *x as i128,
        Value::U32(x) => *x as i128,
        Value::I32(x) => *x as i128,
        Value::U64(x) => *x as i128,
        Value::I64(x) => *x as i128,
        _ => -1,
    };
    usize::try_from(n).map_err(|_| {
        LmError::format(
            path,
            format!("metadata '{key}' is {v:?}, expected a non-negative integer"),
        )
    })
}
