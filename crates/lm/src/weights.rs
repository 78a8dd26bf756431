//! Weights in the layout our forward pass wants: row-major `[out, in]` matrices kept in their
//! stored type (see [`Matrix`]), with q|k|v and gate|up fused (as stacks of their parts, never
//! copied) so each block runs three products instead of five. Norm gains and biases are f32.

use crate::config::{Arch, Config};
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
    /// The norms some families add (all `None` for Llama and Qwen2).
    pub extra: LayerNorms,
}

/// Norm gains beyond the Llama block's two, as multipliers (Gemma's `1 + w` already added).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerNorms {
    /// Per-head q RMSNorm gain `[head_dim]` (Qwen3, Gemma 3).
    pub q_norm: Option<Vec<f32>>,
    /// Per-head k RMSNorm gain `[head_dim]` (Qwen3, Gemma 3).
    pub k_norm: Option<Vec<f32>>,
    /// RMSNorm of the attention output before the residual add `[d]` (Gemma).
    pub post_attn_norm: Option<Vec<f32>>,
    /// RMSNorm of the MLP output before the residual add `[d]` (Gemma).
    pub post_mlp_norm: Option<Vec<f32>>,
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
                        + [
                            &l.extra.q_norm,
                            &l.extra.k_norm,
                            &l.extra.post_attn_norm,
                            &l.extra.post_mlp_norm,
                        ]
                        .iter()
                        .map(|n| n.as_deref().map_or(0, f))
                        .sum::<usize>()
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
    /// Whether Gemma norm gains are stored as `1 + w` (llama.cpp's converter adds the one;
    /// Hugging Face checkpoints hold `w`).
    fn gemma_norms_plus_one(&self) -> bool {
        false
    }
    /// The first tensor of the file that is not among `used` (Hugging Face names) and that
    /// the forward pass would therefore ignore; `None` when every one is used (or the source
    /// cannot list its tensors).
    fn unused(&self, used: &std::collections::BTreeSet<String>) -> Option<String> {
        let _ = used;
        None
    }
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

/// Random bytes in a weight decode to NaN or infinity, which turn every activation into NaN
/// and every answer into nothing, with exit 0. One pass over the decoded values, cheap next
/// to decoding them.
fn check_finite(path: &Path, name: &str, v: &[f32]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(not_finite(path, name, v[i], i)),
    }
}

/// The error for a weight that is not finite: `value` at flat `index` of tensor `name`.
fn not_finite(path: &Path, name: &str, value: f32, index: usize) -> LmError {
    LmError::format(
        path,
        format!(
            "tensor '{name}': value {value} at index {index} is not finite, expected finite \
             weights (corrupt file?)"
        ),
    )
}

/// Which norm gain of a block a vector tensor is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Attn,
    Mlp,
    Q,
    K,
    PostAttn,
    PostMlp,
}

/// The vector tensors of block `i`: Hugging Face name, length and slot.
fn layer_vectors(cfg: &Config, i: usize) -> Vec<(String, usize, Slot)> {
    let (d, hd) = (cfg.hidden_size, cfg.head_dim);
    let name = |t: &str| format!("model.layers.{i}.{t}");
    let f = &cfg.features;
    let mut v = vec![(name("input_layernorm.weight"), d, Slot::Attn)];
    if f.sandwich_norms {
        v.push((name("post_attention_layernorm.weight"), d, Slot::PostAttn));
        v.push((name("pre_feedforward_layernorm.weight"), d, Slot::Mlp));
        v.push((name("post_feedforward_layernorm.weight"), d, Slot::PostMlp));
    } else {
        v.push((name("post_attention_layernorm.weight"), d, Slot::Mlp));
    }
    if f.qk_norm {
        v.push((name("self_attn.q_norm.weight"), hd, Slot::Q));
        v.push((name("self_attn.k_norm.weight"), hd, Slot::K));
    }
    v
}

/// Whether the checkpoint holds q|k|v and gate|up fused (Phi-3).
fn fused(cfg: &Config) -> bool {
    cfg.arch == crate::config::Arch::Phi3
}

/// Loads every tensor by its Hugging Face name, fusing q|k|v and gate|up: all shapes are
/// checked first, then the tensors are decoded in parallel into their final buffers.
pub(crate) fn load_weights(cfg: &Config, src: &dyn TensorSource) -> Result<Weights> {
    let Shapes { biases, has_head } = check_shapes(cfg, src)?;
    let mats = load_matrices(cfg, src, has_head)?;
    let mut w = Weights {
        embed: mats.embed,
        layers: biases
            .iter()
            .zip(mats.layers)
            .enumerate()
            .map(|(i, (&b, mats))| unread_layer(cfg, i, b, mats))
            .collect(),
        final_norm: vec![0.0; cfg.hidden_size],
        lm_head: mats.lm_head,
    };
    let mut jobs: Vec<(String, &mut [f32])> = Vec::with_capacity(cfg.num_layers * 8 + 1);
    for (i, (l, &has)) in w.layers.iter_mut().zip(&biases).enumerate() {
        layer_vector_jobs(cfg, i, l, has, &mut jobs);
    }
    jobs.push(("model.norm.weight".into(), &mut w.final_norm));
    read_vectors(cfg, src, jobs)?;
    Ok(w)
}

/// What the shape check found that loading needs: which of q|k|v carry a bias in each block,
/// and whether an untied output head is stored.
struct Shapes {
    biases: Vec<[bool; 3]>,
    has_head: bool,
}

/// Checks tensor shapes against the config, remembering the names the forward pass uses.
struct ShapeCheck<'s> {
    src: &'s dyn TensorSource,
    used: std::collections::BTreeSet<String>,
}

impl ShapeCheck<'_> {
    /// [`check`], recording `name` as used when present.
    fn check(&mut self, name: &str, shape: &[usize], required: bool) -> Result<bool> {
        let found = check(self.src, name, shape, required)?;
        if found {
            self.used.insert(name.to_string());
        }
        Ok(found)
    }
}

/// Checks every tensor's shape, and refuses a file holding a tensor the forward pass would
/// ignore.
fn check_shapes(cfg: &Config, src: &dyn TensorSource) -> Result<Shapes> {
    let d = cfg.hidden_size;
    let mut c = ShapeCheck {
        src,
        used: Default::default(),
    };
    c.check("model.embed_tokens.weight", &[cfg.vocab_size, d], true)?;
    let biases = (0..cfg.num_layers)
        .map(|i| check_block(&mut c, cfg, i))
        .collect::<Result<Vec<_>>>()?;
    c.check("model.norm.weight", &[d], true)?;
    // Some checkpoints say untied but ship no head; transformers then ties them.
    let has_head =
        !cfg.tie_word_embeddings && c.check("lm_head.weight", &[cfg.vocab_size, d], false)?;
    if cfg.tie_word_embeddings {
        // a head stored beside tied embeddings is replaced by them, as transformers does
        c.used.insert("lm_head.weight".to_string());
    }
    if let Some(n) = src.unused(&c.used) {
        // A tensor we would skip (an o_proj or MLP bias, a norm of another family) means
        // the model computes something we do not.
        return Err(LmError::Unsupported {
            path: src.path().into(),
            what: format!(
                "tensor '{n}', which the {} forward pass does not use (the checkpoint is not \
                 the family its config names, or has options we do not run)",
                cfg.arch.name()
            ),
        });
    }
    Ok(Shapes { biases, has_head })
}

/// Checks block `i`'s tensors; returns which of q|k|v carry a bias.
///
/// The order of these checks is the order `Weights::from_fn` draws seeded tensors in: the
/// Llama block's stays as it always was, each family's extras come after it.
fn check_block(c: &mut ShapeCheck<'_>, cfg: &Config, i: usize) -> Result<[bool; 3]> {
    let (d, ff, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
    let (q_out, kv_out) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    let name = |t: &str| format!("model.layers.{i}.{t}");
    let vectors = layer_vectors(cfg, i);
    let post_attn = |v: &&(String, usize, Slot)| v.0.ends_with("post_attention_layernorm.weight");
    c.check(&vectors[0].0, &[d], true)?;
    // attention
    if fused(cfg) {
        c.check(
            &name("self_attn.qkv_proj.weight"),
            &[q_out + 2 * kv_out, d],
            true,
        )?;
    } else {
        c.check(&name("self_attn.q_proj.weight"), &[q_out, d], true)?;
        c.check(&name("self_attn.k_proj.weight"), &[kv_out, d], true)?;
        c.check(&name("self_attn.v_proj.weight"), &[kv_out, d], true)?;
    }
    let biases = [
        c.check(&name("self_attn.q_proj.bias"), &[q_out], false)?,
        c.check(&name("self_attn.k_proj.bias"), &[kv_out], false)?,
        c.check(&name("self_attn.v_proj.bias"), &[kv_out], false)?,
    ];
    c.check(&name("self_attn.o_proj.weight"), &[d, q_out], true)?;
    for (n, len, _) in vectors[1..].iter().filter(post_attn) {
        c.check(n, &[*len], true)?;
    }
    // MLP
    if fused(cfg) {
        c.check(&name("mlp.gate_up_proj.weight"), &[2 * ff, d], true)?;
    } else {
        c.check(&name("mlp.gate_proj.weight"), &[ff, d], true)?;
        c.check(&name("mlp.up_proj.weight"), &[ff, d], true)?;
    }
    c.check(&name("mlp.down_proj.weight"), &[d, ff], true)?;
    // the family's norms
    for (n, len, _) in vectors[1..].iter().filter(|v| !post_attn(v)) {
        c.check(n, &[*len], true)?;
    }
    Ok(biases)
}

/// Block `i` with its matrices loaded and its norm gains and bias (where `biases` says one is
/// stored) zero, to be read in place by [`read_vectors`].
fn unread_layer(cfg: &Config, i: usize, biases: [bool; 3], mats: [Matrix; 4]) -> LayerWeights {
    let d = cfg.hidden_size;
    let qkv_out = (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim;
    let [wqkv, wo, w_gate_up, w_down] = mats;
    let vecs = layer_vectors(cfg, i);
    let has = |slot: Slot| vecs.iter().find(|v| v.2 == slot).map(|v| vec![0.0; v.1]);
    LayerWeights {
        attn_norm: vec![0.0; d],
        wqkv,
        // absent parts of a partial bias stay zero
        bqkv: biases.iter().any(|&x| x).then(|| vec![0.0; qkv_out]),
        wo,
        mlp_norm: vec![0.0; d],
        w_gate_up,
        w_down,
        extra: LayerNorms {
            q_norm: has(Slot::Q),
            k_norm: has(Slot::K),
            post_attn_norm: has(Slot::PostAttn),
            post_mlp_norm: has(Slot::PostMlp),
        },
    }
}

/// Adds to `jobs` the vector tensors of block `i` (norm gains, and the q|k|v bias parts that
/// `has` says are stored), each with its place in `l`.
fn layer_vector_jobs<'w>(
    cfg: &Config,
    i: usize,
    l: &'w mut LayerWeights,
    has: [bool; 3],
    jobs: &mut Vec<(String, &'w mut [f32])>,
) {
    let (q_out, kv_out) = (
        cfg.num_heads * cfg.head_dim,
        cfg.num_kv_heads * cfg.head_dim,
    );
    let LayerWeights {
        attn_norm,
        mlp_norm,
        extra,
        bqkv,
        ..
    } = l;
    let LayerNorms {
        q_norm,
        k_norm,
        post_attn_norm,
        post_mlp_norm,
    } = extra;
    let mut slots: Vec<(Slot, &mut [f32])> = vec![
        (Slot::Attn, attn_norm.as_mut_slice()),
        (Slot::Mlp, mlp_norm.as_mut_slice()),
    ];
    for (slot, v) in [
        (Slot::Q, q_norm),
        (Slot::K, k_norm),
        (Slot::PostAttn, post_attn_norm),
        (Slot::PostMlp, post_mlp_norm),
    ] {
        if let Some(v) = v {
            slots.push((slot, v.as_mut_slice()));
        }
    }
    for (n, _, slot) in layer_vectors(cfg, i) {
        let at = slots
            .iter()
            .position(|s| s.0 == slot)
            .expect("slot made above");
        jobs.push((n, slots.swap_remove(at).1));
    }
    if let Some(b) = bqkv {
        let (q, kv) = b.split_at_mut(q_out);
        let (k, v) = kv.split_at_mut(kv_out);
        for ((part, dst), present) in ["q_proj", "k_proj", "v_proj"]
            .into_iter()
            .zip([q, k, v])
            .zip(has)
        {
            if present {
                jobs.push((format!("model.layers.{i}.self_attn.{part}.bias"), dst));
            }
        }
    }
}

/// Reads the vector tensors of `jobs` in parallel into their places, each checked finite
/// (Gemma's norm gains become `1 + w` where the file holds `w`).
fn read_vectors(
    cfg: &Config,
    src: &dyn TensorSource,
    jobs: Vec<(String, &mut [f32])>,
) -> Result<()> {
    let plus_one = matches!(cfg.arch, Arch::Gemma2 | Arch::Gemma3) && !src.gemma_norms_plus_one();
    // Every job runs; the first failure in job order is reported, so the message does not
    // depend on which thread failed first.
    let done: Vec<Result<()>> = jobs
        .into_par_iter()
        .map(|(n, dst)| {
            src.read_into(&n, dst)?;
            check_finite(src.path(), &n, dst)?;
            if plus_one && n.ends_with("norm.weight") {
                // transformers' Gemma RMSNorm multiplies by (1 + w), computed in f32.
                dst.iter_mut().for_each(|x| *x += 1.0);
            }
            Ok(())
        })
        .collect();
    done.into_iter().collect()
}

struct Matrices {
    embed: Matrix,
    layers: Vec<[Matrix; 4]>,
    lm_head: Option<Matrix>,
}

/// The weight matrices in their stored types (shapes checked by the caller), each checked to
/// hold finite values; q|k|v and gate|up stacked (or taken fused from the checkpoint).
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
    let fused = fused(cfg);
    for i in 0..nl {
        if fused {
            specs.push((name(i, "self_attn.qkv_proj.weight"), q_out + 2 * kv_out, d));
        } else {
            specs.push((name(i, "self_attn.q_proj.weight"), q_out, d));
            specs.push((name(i, "self_attn.k_proj.weight"), kv_out, d));
            specs.push((name(i, "self_attn.v_proj.weight"), kv_out, d));
        }
        specs.push((name(i, "self_attn.o_proj.weight"), d, q_out));
        if fused {
            specs.push((name(i, "mlp.gate_up_proj.weight"), 2 * ff, d));
        } else {
            specs.push((name(i, "mlp.gate_proj.weight"), ff, d));
            specs.push((name(i, "mlp.up_proj.weight"), ff, d));
        }
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
        let qkv = if fused {
            next()?
        } else {
            let (q, k, vv) = (next()?, next()?, next()?);
            Matrix::stack(vec![q, k, vv])
        };
        let o = next()?;
        let gu = if fused {
            next()?
        } else {
            let (g, u) = (next()?, next()?);
            Matrix::stack(vec![g, u])
        };
        let dn = next()?;
        layers.push([qkv, o, gu, dn]);
    }
    let lm_head = if has_head { Some(next()?) } else { None };
    Ok(Matrices {
        embed,
        layers,
        lm_head,
    })
}

/// [`check_finite`] for a matrix, tile by tile so no f32 copy of it is ever whole; tiles across
/// the thread pool (dequantising every weight of an 8B model is seconds of a load), the first
/// bad value reported.
fn check_finite_matrix(path: &Path, name: &str, m: &Matrix) -> Result<()> {
    if let Some(v) = m.as_f32() {
        return check_finite(path, name, v);
    }
    let rows = (1usize << 16) / m.cols().max(1) + 1;
    let bad = (0..m.rows().div_ceil(rows))
        .into_par_iter()
        .find_map_first(|i| {
            let (lo, hi) = (i * rows, ((i + 1) * rows).min(m.rows()));
            let mut tile = vec![0.0f32; (hi - lo) * m.cols()];
            m.rows_into(lo, hi, &mut tile);
            let at = tile.iter().position(|x| !x.is_finite())?;
            Some((tile[at], lo * m.cols() + at))
        });
    match bad {
        Some((value, index)) => Err(not_finite(path, name, value, index)),
        None => Ok(()),
    }
}
