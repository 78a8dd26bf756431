//! Weights in the layout our forward pass wants: f32, row-major `[out, in]`, with q|k|v and
//! gate|up fused so each block runs three large GEMMs instead of five.

use crate::config::Config;
use crate::error::{LmError, Result};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

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
    /// `get` returns shape and row-major f32 data, or `None` when absent. It is called once per
    /// name, in a fixed order (seeded fixtures rely on that).
    pub fn from_fn(
        cfg: &Config,
        get: impl FnMut(&str) -> Option<(Vec<usize>, Vec<f32>)> + Send,
    ) -> Result<Self> {
        type Loaded = HashMap<String, Option<(Vec<usize>, Vec<f32>)>>;
        struct FnSource<F>(Mutex<(F, Loaded)>, std::path::PathBuf);
        impl<F: FnMut(&str) -> Option<(Vec<usize>, Vec<f32>)> + Send> TensorSource for FnSource<F> {
            fn path(&self) -> &Path {
                &self.1
            }
            fn shape(&self, name: &str) -> Result<Option<Vec<usize>>> {
                let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
                let (f, loaded) = &mut *g;
                let t = loaded.entry(name.into()).or_insert_with(|| f(name));
                Ok(t.as_ref().map(|(s, _)| s.clone()))
            }
            fn read_into(&self, name: &str, dst: &mut [f32]) -> Result<()> {
                let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
                match g.1.get(name) {
                    Some(Some((_, data))) if data.len() == dst.len() => {
                        dst.copy_from_slice(data);
                        Ok(())
                    }
                    _ => Err(LmError::format(
                        &self.1,
                        format!("tensor '{name}': data does not match its shape"),
                    )),
                }
            }
        }
        load_weights(
            cfg,
            &FnSource(Mutex::new((get, HashMap::new())), "<tensors>".into()),
        )
    }

    /// The output head (the embedding matrix when tied).
    pub fn head(&self) -> &[f32] {
        self.lm_head.as_deref().unwrap_or(&self.embed)
    }
}

/// Plain little-endian float encodings that GGUF and safetensors files share.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Float {
    F32,
    F16,
    BF16,
}

/// Decodes `bytes` of `kind` into `out`, which must hold exactly as many values.
pub(crate) fn decode_floats(
    kind: Float,
    bytes: &[u8],
    out: &mut [f32],
) -> std::result::Result<(), String> {
    let width = match kind {
        Float::F32 => 4,
        Float::F16 | Float::BF16 => 2,
    };
    if bytes.len() != out.len() * width {
        return Err(format!(
            "{} bytes do not hold {} values",
            bytes.len(),
            out.len()
        ));
    }
    let pairs = out.iter_mut().zip(bytes.chunks_exact(width));
    match kind {
        Float::F32 => pairs.for_each(|(o, c)| *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        Float::F16 => pairs.for_each(|(o, c)| *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        Float::BF16 => {
            pairs.for_each(|(o, c)| *o = half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
        }
    }
    Ok(())
}

/// Where raw tensors come from; names are Hugging Face names (`model.layers.3.mlp.up_proj.weight`).
/// Shared across threads: tensors are decoded in parallel, each straight into its place in
/// the fused buffers.
pub(crate) trait TensorSource: Sync {
    /// The file this source reads, for error messages.
    fn path(&self) -> &Path;
    /// Shape of a tensor (row-major), or `None` when absent.
    fn shape(&self, name: &str) -> Result<Option<Vec<usize>>>;
    /// Writes a tensor, whose shape was checked, as row-major f32 into `dst`.
    fn read_into(&self, name: &str, dst: &mut [f32]) -> Result<()>;
}

/// Whether `name` is present with `shape`; a shape mismatch, or absence when `required`,
/// is an error naming the tensor.
fn check(src: &dyn TensorSource, name: &str, shape: &[usize], required: bool) -> Result<bool> {
    match src.shape(name)? {
        Some(s) if s == shape => Ok(true),
        Some(s) => Err(LmError::format(
            src.path(),
            format!("tensor '{name}' has shape {s:?}, expected {shape:?}"),
        )),
        None if required => Err(LmError::format(
            src.path(),
            format!("missing tensor '{name}'"),
        )),
        None => Ok(false),
    }
}

/// Loads every tensor by its Hugging Face name, fusing q|k|v and gate|up: all shapes are
/// checked first, then the tensors are decoded in parallel into their final buffers.
/// Random bytes in a weight decode to NaN or infinity, which turn every activation into NaN
/// and every answer into nothing, with exit 0. One pass over the decoded values, cheap next
/// to decoding them.
fn check_finite(path: &Path, name: &str, v: &[f32]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(LmError::format(
            path,
            format!(
                "tensor '{name}': value {} at index {i} is not finite, expected finite weights \
                 (corrupt file?)",
                v[i]
            ),
        )),
    }
}

pub(crate) fn load_weights(cfg: &Config, src: &dyn TensorSource) -> Result<Weights> {
    let (d, ff, hd, nl) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.head_dim,
        cfg.num_layers,
    );
    let (q_out, kv_out) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    let name = |i: usize, t: &str| format!("model.layers.{i}.{t}");
    check(src, "model.embed_tokens.weight", &[cfg.vocab_size, d], true)?;
    let mut biases = Vec::with_capacity(nl);
    for i in 0..nl {
        check(src, &name(i, "input_layernorm.weight"), &[d], true)?;
        check(src, &name(i, "self_attn.q_proj.weight"), &[q_out, d], true)?;
        check(src, &name(i, "self_attn.k_proj.weight"), &[kv_out, d], true)?;
        check(src, &name(i, "self_attn.v_proj.weight"), &[kv_out, d], true)?;
        biases.push([
            check(src, &name(i, "self_attn.q_proj.bias"), &[q_out], false)?,
            check(src, &name(i, "self_attn.k_proj.bias"), &[kv_out], false)?,
            check(src, &name(i, "self_attn.v_proj.bias"), &[kv_out], false)?,
        ]);
        check(src, &name(i, "self_attn.o_proj.weight"), &[d, q_out], true)?;
        check(src, &name(i, "post_attention_layernorm.weight"), &[d], true)?;
        check(src, &name(i, "mlp.gate_proj.weight"), &[ff, d], true)?;
        check(src, &name(i, "mlp.up_proj.weight"), &[ff, d], true)?;
        check(src, &name(i, "mlp.down_proj.weight"), &[d, ff], true)?;
    }
    check(src, "model.norm.weight", &[d], true)?;
    // Some checkpoints say untied but ship no head; transformers then ties them.
    let has_head =
        !cfg.tie_word_embeddings && check(src, "lm_head.weight", &[cfg.vocab_size, d], false)?;

    let mut w = Weights {
        embed: vec![0.0; cfg.vocab_size * d],
        layers: biases
            .iter()
            .map(|b| LayerWeights {
                attn_norm: vec![0.0; d],
                wqkv: vec![0.0; (q_out + 2 * kv_out) * d],
                // absent parts of a partial bias stay zero
                bqkv: b.iter().any(|&x| x).then(|| vec![0.0; q_out + 2 * kv_out]),
                wo: vec![0.0; d * q_out],
                mlp_norm: vec![0.0; d],
                w_gate_up: vec![0.0; 2 * ff * d],
                w_down: vec![0.0; d * ff],
            })
            .collect(),
        final_norm: vec![0.0; d],
        lm_head: has_head.then(|| vec![0.0; cfg.vocab_size * d]),
    };
    let mut jobs: Vec<(String, &mut [f32])> = Vec::with_capacity(nl * 12 + 3);
    jobs.push(("model.embed_tokens.weight".into(), &mut w.embed));
    for (i, (l, has)) in w.layers.iter_mut().zip(&biases).enumerate() {
        jobs.push((name(i, "input_layernorm.weight"), &mut l.attn_norm));
        let (q, kv) = l.wqkv.split_at_mut(q_out * d);
        let (k, v) = kv.split_at_mut(kv_out * d);
        jobs.push((name(i, "self_attn.q_proj.weight"), q));
        jobs.push((name(i, "self_attn.k_proj.weight"), k));
        jobs.push((name(i, "self_attn.v_proj.weight"), v));
        if let Some(b) = &mut l.bqkv {
            let (q, kv) = b.split_at_mut(q_out);
            let (k, v) = kv.split_at_mut(kv_out);
            for ((part, dst), &present) in ["q_proj", "k_proj", "v_proj"]
                .into_iter()
                .zip([q, k, v])
                .zip(has)
            {
                if present {
                    jobs.push((name(i, &format!("self_attn.{part}.bias")), dst));
                }
            }
        }
        jobs.push((name(i, "self_attn.o_proj.weight"), &mut l.wo));
        jobs.push((name(i, "post_attention_layernorm.weight"), &mut l.mlp_norm));
        let (gate, up) = l.w_gate_up.split_at_mut(ff * d);
        jobs.push((name(i, "mlp.gate_proj.weight"), gate));
        jobs.push((name(i, "mlp.up_proj.weight"), up));
        jobs.push((name(i, "mlp.down_proj.weight"), &mut l.w_down));
    }
    jobs.push(("model.norm.weight".into(), &mut w.final_norm));
    if let Some(h) = &mut w.lm_head {
        jobs.push(("lm_head.weight".into(), h));
    }
    // Largest first, so the embedding matrix does not start last on an otherwise idle pool.
    jobs.sort_by_key(|(_, dst)| std::cmp::Reverse(dst.len()));
    // Every job runs; the first failure in job order is reported, so the message does not
    // depend on which thread failed first.
    let done: Vec<Result<()>> = jobs
        .into_par_iter()
        .map(|(n, dst)| {
            src.read_into(&n, dst)?;
            check_finite(src.path(), &n, dst)
        })
        .collect();
    done.into_iter().collect::<Result<()>>()?;
    Ok(w)
}
