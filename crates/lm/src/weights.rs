//! Weights in the layout our forward pass wants: row-major `[out, in]` matrices kept in their
//! stored type (see [`Matrix`]), with q|k|v and gate|up fused (as stacks of their parts, never
//! copied) so each block runs three products instead of five. Norm gains and biases are f32.

use crate::config::Config;
use crate::error::{LmError, Result};
use crate::matrix::Matrix;
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
    pub wqkv: Matrix,
    /// Fused q|k|v bias `[qkv_width]` (Qwen2).
    pub bqkv: Option<Vec<f32>>,
    /// Output projection `[d, heads*head_dim]`.
    pub wo: Matrix,
    /// Pre-MLP RMSNorm gain `[d]`.
    pub mlp_norm: Vec<f32>,
    /// Fused gate|up projection `[2*ff, d]`: rows 0..ff are gate, ff..2ff are up.
    pub w_gate_up: Matrix,
    /// Down projection `[d, ff]`.
    pub w_down: Matrix,
}

/// All weights of a decoder-only model.
#[derive(Debug, Clone)]
pub struct Weights {
    /// Token embeddings `[vocab, d]`.
    pub embed: Matrix,
    /// Decoder blocks.
    pub layers: Vec<LayerWeights>,
    /// Final RMSNorm gain `[d]`.
    pub final_norm: Vec<f32>,
    /// Output head `[vocab, d]`; `None` when tied to `embed`.
    pub lm_head: Option<Matrix>,
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
    pub fn head(&self) -> &Matrix {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Bytes the weights take (stored types: mapped or in memory).
    pub fn stored_bytes(&self) -> usize {
        let f = |v: &[f32]| v.len() * 4;
        self.embed.stored_bytes()
            + self.lm_head.as_ref().map_or(0, Matrix::stored_bytes)
            + f(&self.final_norm)
            + self
                .layers
                .iter()
                .map(|l| {
                    f(&l.attn_norm)
                        + f(&l.mlp_norm)
                        + l.bqkv.as_deref().map_or(0, f)
                        + [&l.wqkv, &l.wo, &l.w_gate_up, &l.w_down]
                            .iter()
                            .map(|m| m.stored_bytes())
                            .sum::<usize>()
                })
                .sum::<usize>()
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
    /// A weight matrix `[rows, cols]` (shape checked) in its stored type; by default decoded
    /// to f32.
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let mut v = vec![0.0f32; rows * cols];
        self.read_into(name, &mut v)?;
        Ok(Matrix::from_f32(rows, cols, v))
    }
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

    let mats = load_matrices(cfg, src, has_head)?;
    let mut w = Weights {
        embed: mats.embed,
        layers: biases
            .iter()
            .zip(mats.layers)
            .map(|(b, [wqkv, wo, w_gate_up, w_down])| LayerWeights {
                attn_norm: vec![0.0; d],
                wqkv,
                // absent parts of a partial bias stay zero
                bqkv: b.iter().any(|&x| x).then(|| vec![0.0; q_out + 2 * kv_out]),
                wo,
                mlp_norm: vec![0.0; d],
                w_gate_up,
                w_down,
            })
            .collect(),
        final_norm: vec![0.0; d],
        lm_head: mats.lm_head,
    };
    let mut jobs: Vec<(String, &mut [f32])> = Vec::with_capacity(nl * 6 + 1);
    for (i, (l, has)) in w.layers.iter_mut().zip(&biases).enumerate() {
        jobs.push((name(i, "input_layernorm.weight"), &mut l.attn_norm));
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
        jobs.push((name(i, "post_attention_layernorm.weight"), &mut l.mlp_norm));
    }
    jobs.push(("model.norm.weight".into(), &mut w.final_norm));
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

struct Matrices {
    embed: Matrix,
    layers: Vec<[Matrix; 4]>,
    lm_head: Option<Matrix>,
}

/// The weight matrices in their stored types (shapes checked by the caller), each checked to
/// hold finite values; q|k|v and gate|up stacked.
fn load_matrices(cfg: &Config, src: &dyn TensorSource, has_head: bool) -> Result<Matrices> {
    let (d, ff, hd, nl, v) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.head_dim,
        cfg.num_layers,
        cfg.vocab_size,
    );
    let (q_out, kv_out) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    let name = |i: usize, t: &str| format!("model.layers.{i}.{t}");
    let mut specs: Vec<(String, usize, usize)> = vec![("model.embed_tokens.weight".into(), v, d)];
    for i in 0..nl {
        specs.push((name(i, "self_attn.q_proj.weight"), q_out, d));
        specs.push((name(i, "self_attn.k_proj.weight"), kv_out, d));
        specs.push((name(i, "self_attn.v_proj.weight"), kv_out, d));
        specs.push((name(i, "self_attn.o_proj.weight"), d, q_out));
        specs.push((name(i, "mlp.gate_proj.weight"), ff, d));
        specs.push((name(i, "mlp.up_proj.weight"), ff, d));
        specs.push((name(i, "mlp.down_proj.weight"), d, ff));
    }
    if has_head {
        specs.push(("lm_head.weight".into(), v, d));
    }
    // Every matrix loads; the first failure in spec order is reported.
    let loaded: Vec<Result<Matrix>> = specs
        .par_iter()
        .map(|(n, r, c)| {
            let m = src.matrix(n, *r, *c)?;
            check_finite_matrix(src.path(), n, &m)?;
            Ok(m)
        })
        .collect();
    let mut it = loaded.into_iter();
    let mut next = || it.next().expect("one matrix per spec");
    let embed = next()?;
    let mut layers = Vec::with_capacity(nl);
    for _ in 0..nl {
        let (q, k, vv, o) = (next()?, next()?, next()?, next()?);
        let (g, u, dn) = (next()?, next()?, next()?);
        layers.push([
            Matrix::stack(vec![q, k, vv]),
            o,
            Matrix::stack(vec![g, u]),
            dn,
        ]);
    }
    let lm_head = if has_head { Some(next()?) } else { None };
    Ok(Matrices {
        embed,
        layers,
        lm_head,
    })
}

/// [`check_finite`] for a matrix, tile by tile so no f32 copy of it is ever whole.
fn check_finite_matrix(path: &Path, name: &str, m: &Matrix) -> Result<()> {
    if let Some(v) = m.as_f32() {
        return check_finite(path, name, v);
    }
    let rows = (1usize << 16) / m.cols().max(1) + 1;
    let mut buf = vec![0.0f32; rows * m.cols()];
    for lo in (0..m.rows()).step_by(rows) {
        let hi = (lo + rows).min(m.rows());
        let tile = &mut buf[..(hi - lo) * m.cols()];
        m.rows_into(lo, hi, tile);
        if let Some(i) = tile.iter().position(|x| !x.is_finite()) {
            return Err(LmError::format(
                path,
                format!(
                    "tensor '{name}': value {} at index {} is not finite, expected finite \
                     weights (corrupt file?)",
                    tile[i],
                    lo * m.cols() + i
                ),
            ));
        }
    }
    Ok(())
}
