//! Weights in the layout our forward pass wants: f32, row-major `[out, in]`, with q|k|v and
//! gate|up fused so each block runs three large GEMMs instead of five.

use crate::config::Config;
use crate::error::{LmError, Result};
use std::path::Path;

/// One decoder block.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// Pre-attention RMSNorm gain `[d]`.
    pub attn_norm: Vec<f32>,
    /// Fused q|k|v projection `[qkv_width, d]` in Hugging Face row order (rotate-half RoPE).
    pub wqkv: Vec<f32>,
    /// Fused q|k|v bias `[qkv_width]` (Qwen2).
    pub bqkv: Option<Vec<f32>>,
    /// Output projection `[d, heads*head_dim]`.
    pub wo: Vec<f32>,
    /// Pre-MLP RMSNorm gain `[d]`.
    pub mlp_norm: Vec<f32>,
    /// Fused gate|up projection `[2*ff, d]`: rows 0..ff are gate, ff..2ff are up.
    pub w_gate_up: Vec<f32>,
    /// Down projection `[d, ff]`.
    pub w_down: Vec<f32>,
}

/// All weights of a decoder-only model.
#[derive(Debug, Clone)]
pub struct Weights {
    /// Token embeddings `[vocab, d]`.
    pub embed: Vec<f32>,
    /// Decoder blocks.
    pub layers: Vec<LayerWeights>,
    /// Final RMSNorm gain `[d]`.
    pub final_norm: Vec<f32>,
    /// Output head `[vocab, d]`; `None` when tied to `embed`.
    pub lm_head: Option<Vec<f32>>,
}

impl Weights {
    /// Builds weights from tensors looked up by Hugging Face name (`model.layers.0.mlp.up_proj.weight`);
    /// `get` returns shape and row-major f32 data, or `None` when absent.
    pub fn from_fn(
        cfg: &Config,
        get: impl FnMut(&str) -> Option<(Vec<usize>, Vec<f32>)>,
    ) -> Result<Self> {
        struct FnSource<F>(F, std::path::PathBuf);
        impl<F: FnMut(&str) -> Option<(Vec<usize>, Vec<f32>)>> TensorSource for FnSource<F> {
            fn path(&self) -> &Path {
                &self.1
            }
            fn load(&mut self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
                Ok((self.0)(name))
            }
        }
        load_weights(cfg, &mut FnSource(get, "<tensors>".into()))
    }

    /// The output head (the embedding matrix when tied).
    pub fn head(&self) -> &[f32] {
        self.lm_head.as_deref().unwrap_or(&self.embed)
    }
}

/// Where raw tensors come from; names are Hugging Face names (`model.layers.3.mlp.up_proj.weight`).
pub(crate) trait TensorSource {
    /// The file this source reads, for error messages.
    fn path(&self) -> &Path;
    /// Shape and f32 data of a tensor, or `None` when absent.
    fn load(&mut self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>>;
}

fn need(src: &mut dyn TensorSource, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    match src.load(name)? {
        Some((s, data)) => {
            if s != shape {
                return Err(LmError::format(
                    src.path(),
                    format!("tensor '{name}' has shape {s:?}, expected {shape:?}"),
                ));
            }
            Ok(data)
        }
        None => Err(LmError::format(
            src.path(),
            format!("missing tensor '{name}'"),
        )),
    }
}

fn maybe(src: &mut dyn TensorSource, name: &str, shape: &[usize]) -> Result<Option<Vec<f32>>> {
    match src.load(name)? {
        Some((s, data)) if s == shape => Ok(Some(data)),
        Some((s, _)) => Err(LmError::format(
            src.path(),
            format!("tensor '{name}' has shape {s:?}, expected {shape:?}"),
        )),
        None => Ok(None),
    }
}

/// Loads every tensor by its Hugging Face name and fuses the projections.
pub(crate) fn load_weights(cfg: &Config, src: &mut dyn TensorSource) -> Result<Weights> {
    let (d, ff, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
    let (q_out, kv_out) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    let embed = need(src, "model.embed_tokens.weight", &[cfg.vocab_size, d])?;
    let mut layers = Vec::with_capacity(cfg.num_layers);
    for i in 0..cfg.num_layers {
        let p = format!("model.layers.{i}");
        let attn_norm = need(src, &format!("{p}.input_layernorm.weight"), &[d])?;
        let q = need(src, &format!("{p}.self_attn.q_proj.weight"), &[q_out, d])?;
        let k = need(src, &format!("{p}.self_attn.k_proj.weight"), &[kv_out, d])?;
        let v = need(src, &format!("{p}.self_attn.v_proj.weight"), &[kv_out, d])?;
        let wqkv = [q, k, v].concat();
        let bias = |src: &mut dyn TensorSource, n: &str, len: usize| {
            maybe(src, &format!("{p}.self_attn.{n}.bias"), &[len])
        };
        let (bq, bk, bv) = (
            bias(src, "q_proj", q_out)?,
            bias(src, "k_proj", kv_out)?,
            bias(src, "v_proj", kv_out)?,
        );
        let bqkv = match (bq, bk, bv) {
            (None, None, None) => None,
            (bq, bk, bv) => Some(
                [
                    bq.unwrap_or_else(|| vec![0.0; q_out]),
                    bk.unwrap_or_else(|| vec![0.0; kv_out]),
                    bv.unwrap_or_else(|| vec![0.0; kv_out]),
                ]
                .concat(),
            ),
        };
        let wo = need(src, &format!("{p}.self_attn.o_proj.weight"), &[d, q_out])?;
        let mlp_norm = need(src, &format!("{p}.post_attention_layernorm.weight"), &[d])?;
        let gate = need(src, &format!("{p}.mlp.gate_proj.weight"), &[ff, d])?;
        let up = need(src, &format!("{p}.mlp.up_proj.weight"), &[ff, d])?;
        let w_gate_up = [gate, up].concat();
        let w_down = need(src, &format!("{p}.mlp.down_proj.weight"), &[d, ff])?;
        layers.push(LayerWeights {
            attn_norm,
            wqkv,
            bqkv,
            wo,
            mlp_norm,
            w_gate_up,
            w_down,
        });
    }
    let final_norm = need(src, "model.norm.weight", &[d])?;
    let lm_head = if cfg.tie_word_embeddings {
        None
    } else {
        // Some checkpoints say untied but ship no head; transformers then ties them.
        maybe(src, "lm_head.weight", &[cfg.vocab_size, d])?
    };
    Ok(Weights {
        embed,
        layers,
        final_norm,
        lm_head,
    })
}
