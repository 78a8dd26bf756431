//! The differentiable forward pass: the same decoder as `hd_lm::Forward`, written with candle
//! tensors and the fused ops of [`crate::ops`], so gradients flow back to LoRA adapters,
//! trainable weights, or a hidden state the caller starts from.
//!
//! Sequences are packed end to end (no padding), as in hd-lm; hidden-state indices follow
//! transformers' `output_hidden_states` (0 = embeddings, `i` = output of block `i−1`,
//! `L` = after the final norm).
//!
//! # For attribution
//! To get `∂(seed)/∂h_ℓ`, run the lower layers without gradients (or take `h_ℓ` from a dump),
//! wrap it in a [`candle_core::Var`], and start from it:
//!
//! ```no_run
//! # use hd_grad::diff::{DiffModel, DiffRequest, Packed};
//! # fn f(m: &DiffModel, ids: &[u32], c: &candle_core::Tensor) -> hd_grad::Result<()> {
//! let l = 10;
//! let batch = Packed::new(&[ids]);
//! let h = m.forward(&batch, &DiffRequest { capture: vec![l], ..Default::default() })?;
//! let h_l = candle_core::Var::from_tensor(&h.hidden[0].1)?;
//! let out = m.forward(&batch, &DiffRequest {
//!     capture: vec![20],
//!     start: Some((l, h_l.as_tensor().clone())),
//!     ..Default::default()
//! })?;
//! // seed: the projection of the last position of h_20 on a direction c ([d, 1])
//! let h20 = &out.hidden[0].1;
//! let seed = h20.narrow(0, ids.len() - 1, 1)?.matmul(c)?.sum_all()?;
//! let grads = seed.backward()?;
//! let g = grads.get(h_l.as_tensor()); // ∂seed/∂h_10, [n_tokens, d]
//! # let _ = g; Ok(()) }
//! ```

use crate::error::{GradError, Result};
use crate::ops::{self, AttnSpec, Rules, Span, Weight};
use crate::rng::SplitMix64;
use candle_core::{DType, Device, Tensor, Var};
use hd_lm::{Config, Weights};
use std::ops::Range;

/// A projection that can carry an adapter (the fused matrices of hd-lm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Module {
    /// Fused q|k|v projection.
    Qkv,
    /// Attention output projection.
    O,
    /// Fused gate|up projection.
    GateUp,
    /// MLP down projection.
    Down,
}

impl Module {
    /// All modules, in block order.
    pub const ALL: [Module; 4] = [Module::Qkv, Module::O, Module::GateUp, Module::Down];

    /// Name used in flags, checkpoints and metadata.
    pub fn name(self) -> &'static str {
        match self {
            Module::Qkv => "qkv",
            Module::O => "o",
            Module::GateUp => "gate_up",
            Module::Down => "down",
        }
    }

    /// Parses a [`Module::name`].
    pub fn parse(s: &str) -> Option<Module> {
        Module::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// A low-rank update `ΔW = scale · B·A` of one projection.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// `[r, in]`.
    pub a: Var,
    /// `[out, r]`, zero at the start.
    pub b: Var,
    /// `alpha / r`.
    pub scale: f64,
}

/// Parameters of one decoder block, as candle tensors (a trainable one is a [`Var`]'s tensor).
#[derive(Debug, Clone)]
pub struct Layer {
    /// Pre-attention RMSNorm gain `[d]`.
    pub attn_norm: Tensor,
    /// Fused q|k|v `[qkv_width, d]`.
    pub wqkv: Weight,
    /// Fused q|k|v bias `[qkv_width]` (Qwen2).
    pub bqkv: Option<Tensor>,
    /// `[d, nh·hd]`.
    pub wo: Weight,
    /// Pre-MLP RMSNorm gain `[d]`.
    pub mlp_norm: Tensor,
    /// Fused gate|up `[2·ff, d]`.
    pub w_gate_up: Weight,
    /// `[d, ff]`.
    pub w_down: Weight,
    /// Per-head q and k RMSNorm gains `[head_dim]` (Qwen3), applied before RoPE; not trained.
    pub qk_norm: Option<(Tensor, Tensor)>,
    /// Gemma's norms of the attention and MLP outputs `[d]` (as multipliers); not trained.
    pub post_norms: Option<(Tensor, Tensor)>,
    /// Adapters by module.
    pub adapters: Vec<(Module, Adapter)>,
}

impl Layer {
    fn weight(&self, m: Module) -> &Weight {
        match m {
            Module::Qkv => &self.wqkv,
            Module::O => &self.wo,
            Module::GateUp => &self.w_gate_up,
            Module::Down => &self.w_down,
        }
    }

    fn weight_mut(&mut self, m: Module) -> &mut Weight {
        match m {
            Module::Qkv => &mut self.wqkv,
            Module::O => &mut self.wo,
            Module::GateUp => &mut self.w_gate_up,
            Module::Down => &mut self.w_down,
        }
    }

    fn proj(&self, m: Module, x: &Tensor) -> Result<Tensor> {
        Ok(match self.adapters.iter().find(|(k, _)| *k == m) {
            Some((_, ad)) => ops::lora_linear_w(
                x,
                self.weight(m),
                ad.a.as_tensor(),
                ad.b.as_tensor(),
                ad.scale,
            )?,
            None => ops::linear_w(x, self.weight(m))?,
        })
    }
}

/// What to train: adapters on some projections, or the weights themselves.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// LoRA adapters.
    Lora {
        /// Rank r.
        rank: usize,
        /// Scale numerator: ΔW = (alpha / r)·B·A.
        alpha: f64,
        /// Projections that get an adapter.
        modules: Vec<Module>,
    },
    /// Every projection and norm gain of the trained blocks, and the final norm. The
    /// embedding (tied to the output head in the default model) stays frozen.
    Full,
}

/// The decoder with candle tensors.
#[derive(Debug, Clone)]
pub struct DiffModel {
    /// Hyper-parameters.
    pub config: Config,
    /// Token embeddings `[vocab, d]`.
    pub embed: Weight,
    /// Untied output head `[vocab, d]`.
    pub lm_head: Option<Weight>,
    /// Final RMSNorm gain.
    pub final_norm: Tensor,
    /// Blocks.
    pub layers: Vec<Layer>,
    trainable: Vec<(String, Var)>,
}

/// Token sequences packed end to end for one forward call, optionally computing a prefix
/// they all share only once.
#[derive(Debug, Clone)]
pub struct Packed {
    /// Token of each packed row.
    pub tokens: Vec<u32>,
    /// Attention spans (a shared prefix first when there is one).
    pub spans: Vec<Span>,
    /// Rows of the shared prefix (0 when none).
    pub prefix: usize,
    starts: Vec<usize>,
}

impl Packed {
    /// Sequences back to back, each on its own: row `r` of sequence `i` is
    /// `offsets[i] + r`.
    pub fn new(seqs: &[&[u32]]) -> Self {
        Self::build(seqs, 0)
    }

    /// Like [`Packed::new`], but the longest prefix common to all sequences (at most
    /// `max_prefix` tokens, and leaving every sequence at least one row of its own) is packed
    /// once at the start, and every sequence attends to it. The result is the same as
    /// [`Packed::new`] up to rounding, for less work.
    pub fn with_shared_prefix(seqs: &[&[u32]], max_prefix: usize) -> Self {
        let mut p = seqs
            .iter()
            .map(|s| s.len().saturating_sub(1))
            .min()
            .unwrap_or(0);
        p = p.min(max_prefix);
        if let Some(first) = seqs.first() {
            for s in &seqs[1..] {
                p = p.min(
                    first
                        .iter()
                        .zip(s.iter())
                        .take_while(|(a, b)| a == b)
                        .count(),
                );
            }
        }
        if seqs.len() < 2 {
            p = 0;
        }
        Self::build(seqs, p)
    }

    fn build(seqs: &[&[u32]], prefix: usize) -> Self {
        let mut tokens = Vec::new();
        let mut spans = Vec::new();
        if prefix > 0 {
            tokens.extend_from_slice(&seqs[0][..prefix]);
            spans.push(Span {
                start: 0,
                len: prefix,
                pos0: 0,
                ctx: None,
            });
        }
        let mut starts = Vec::with_capacity(seqs.len());
        for s in seqs {
            starts.push(tokens.len());
            tokens.extend_from_slice(&s[prefix..]);
            spans.push(Span {
                start: starts.last().copied().unwrap_or(0),
                len: s.len() - prefix,
                pos0: prefix,
                ctx: (prefix > 0).then_some(0),
            });
        }
        Packed {
            tokens,
            spans,
            prefix,
            starts,
        }
    }

    /// Packed rows.
    pub fn n_rows(&self) -> usize {
        self.tokens.len()
    }

    /// Number of sequences.
    pub fn n_seqs(&self) -> usize {
        self.starts.len()
    }

    /// The packed row holding position `pos` of sequence `seq`.
    pub fn row(&self, seq: usize, pos: usize) -> usize {
        if pos < self.prefix {
            pos
        } else {
            self.starts[seq] + pos - self.prefix
        }
    }
}

/// What a differentiable forward call returns.
#[derive(Debug, Clone, Default)]
pub struct DiffRequest {
    /// Hidden-state indices to return (HF numbering), all packed rows `[n_rows, d]`.
    pub capture: Vec<usize>,
    /// Packed rows at which to compute logits (`None`: no logits).
    pub logit_rows: Option<Vec<usize>>,
    /// Start at hidden-state index `ℓ < L` from the given states `[n_tokens, d]` instead of
    /// the embeddings; blocks below `ℓ` are not run. `ℓ = 0` starts from given embeddings.
    pub start: Option<(usize, Tensor)>,
    /// The backward pass the ops compute: exact (training) or AttnLRP (attribution).
    pub rules: Rules,
}

/// Result of [`DiffModel::forward`].
#[derive(Debug, Clone)]
pub struct DiffOutput {
    /// `(index, states [n_tokens, d])` in the order of [`DiffRequest::capture`].
    pub hidden: Vec<(usize, Tensor)>,
    /// `[rows, vocab]` for [`DiffRequest::logit_rows`].
    pub logits: Option<Tensor>,
}

fn cpu() -> Device {
    Device::Cpu
}

fn t(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
    Ok(Tensor::from_vec(data, shape, &cpu())?)
}

/// A weight as an hd-lm matrix (a stored one shared, a tensor copied).
fn weight_matrix(w: &Weight) -> Result<hd_lm::Matrix> {
    let (r, c) = w.dims2()?;
    Ok(match w {
        Weight::Stored(m) => m.clone(),
        Weight::Tensor(t) => hd_lm::Matrix::from_f32(r, c, to_vec(t)?),
    })
}

/// The f32 data of a tensor, row-major.
pub fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

impl DiffModel {
    /// Takes hd-lm's weights (moved, not copied).
    pub fn new(config: Config, w: Weights) -> Result<Self> {
        let mut extra = config.features.names();
        // implemented here; anything else is refused
        let done = [
            hd_lm::config::QK_NORMS,
            hd_lm::config::SLIDING_WINDOW,
            hd_lm::config::SANDWICH_NORMS,
            hd_lm::config::GELU_TANH,
            hd_lm::config::EMBED_SCALE,
            hd_lm::config::QUERY_SCALAR,
            hd_lm::config::ROPE_LOCAL,
            hd_lm::config::ROPE_LINEAR,
            "attn_logit_softcapping",
            "final_logit_softcapping",
            "longrope rope_scaling",
        ];
        extra.retain(|n| !done.contains(n));
        if !extra.is_empty() {
            // A second forward pass that skipped them would give gradients of another model.
            return Err(GradError::Input(format!(
                "the differentiable forward pass runs the Llama, Qwen2/3, Mistral, Phi-3 and \
                 Gemma 2/3 blocks; this {} model uses {}, which it does not implement",
                config.arch.name(),
                extra.join(", ")
            )));
        }
        let (d, ff) = (config.hidden_size, config.intermediate_size);
        let qkv = config.qkv_width();
        let q = config.num_heads * config.head_dim;
        let mat = |m: hd_lm::Matrix, shape: [usize; 2]| -> Result<Weight> {
            if [m.rows(), m.cols()] != shape {
                return Err(GradError::Input(format!(
                    "weight has shape [{}, {}], expected {shape:?}",
                    m.rows(),
                    m.cols()
                )));
            }
            Ok(Weight::from_matrix(m)?)
        };
        let embed = mat(w.embed, [config.vocab_size, d])?;
        let lm_head = w
            .lm_head
            .map(|h| mat(h, [config.vocab_size, d]))
            .transpose()?;
        let final_norm = t(w.final_norm, &[d])?;
        let mut layers = Vec::with_capacity(w.layers.len());
        let hd = config.head_dim;
        for l in w.layers {
            let qk_norm = match (l.extra.q_norm, l.extra.k_norm) {
                (Some(qn), Some(kn)) => Some((t(qn, &[hd])?, t(kn, &[hd])?)),
                _ => None,
            };
            let post_norms = match (l.extra.post_attn_norm, l.extra.post_mlp_norm) {
                (Some(a), Some(m)) => Some((t(a, &[d])?, t(m, &[d])?)),
                _ => None,
            };
            layers.push(Layer {
                attn_norm: t(l.attn_norm, &[d])?,
                wqkv: mat(l.wqkv, [qkv, d])?,
                bqkv: l.bqkv.map(|b| t(b, &[qkv])).transpose()?,
                wo: mat(l.wo, [d, q])?,
                mlp_norm: t(l.mlp_norm, &[d])?,
                w_gate_up: mat(l.w_gate_up, [2 * ff, d])?,
                w_down: mat(l.w_down, [d, ff])?,
                qk_norm,
                post_norms,
                adapters: Vec::new(),
            });
        }
        Ok(DiffModel {
            config,
            embed,
            lm_head,
            final_norm,
            layers,
            trainable: Vec::new(),
        })
    }

    /// Makes blocks `layers` trainable by `method`; LoRA `A` matrices are drawn from
    /// U(−1/√in, 1/√in) with a generator derived from `seed`, `B` starts at zero (so the
    /// model is unchanged until the first step).
    pub fn make_trainable(
        &mut self,
        method: &Method,
        layers: Range<usize>,
        seed: u64,
    ) -> Result<()> {
        if layers.end > self.layers.len() || layers.start >= layers.end {
            return Err(GradError::Input(format!(
                "trained layers {}..{} out of range for a model of {} blocks",
                layers.start,
                layers.end,
                self.layers.len()
            )));
        }
        match method {
            Method::Lora {
                rank,
                alpha,
                modules,
            } => {
                if *rank == 0 {
                    return Err(GradError::Input("LoRA rank must be at least 1".into()));
                }
                for li in layers {
                    for &m in modules {
                        let (out, inp) = self.layers[li].weight(m).dims2()?;
                        let mut rng = SplitMix64::derive(&[seed, li as u64, m as u64, 0x10_4A]);
                        let bound = 1.0 / (inp as f64).sqrt();
                        let a: Vec<f32> = (0..rank * inp)
                            .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                            .collect();
                        let a = Var::from_vec(a, (*rank, inp), &cpu())?;
                        let b = Var::zeros((out, *rank), DType::F32, &cpu())?;
                        self.trainable
                            .push((format!("layers.{li}.{}.lora_a", m.name()), a.clone()));
                        self.trainable
                            .push((format!("layers.{li}.{}.lora_b", m.name()), b.clone()));
                        self.layers[li].adapters.push((
                            m,
                            Adapter {
                                a,
                                b,
                                scale: alpha / *rank as f64,
                            },
                        ));
                    }
                }
            }
            Method::Full => {
                let mut make = |name: String, slot: &mut Tensor| -> Result<()> {
                    let v = Var::from_tensor(slot)?;
                    *slot = v.as_tensor().clone();
                    self.trainable.push((name, v));
                    Ok(())
                };
                for li in layers {
                    let l = &mut self.layers[li];
                    make(format!("layers.{li}.attn_norm"), &mut l.attn_norm)?;
                    for m in Module::ALL {
                        // A stored (quantised) weight is trained as an f32 copy.
                        let mut t = l.weight(m).to_tensor()?;
                        make(format!("layers.{li}.{}", m.name()), &mut t)?;
                        *l.weight_mut(m) = Weight::Tensor(t);
                    }
                    if let Some(b) = l.bqkv.as_mut() {
                        make(format!("layers.{li}.bqkv"), b)?;
                    }
                    make(format!("layers.{li}.mlp_norm"), &mut l.mlp_norm)?;
                }
                make("final_norm".into(), &mut self.final_norm)?;
            }
        }
        Ok(())
    }

    /// The trainable parameters, by name, in a fixed order.
    pub fn trainable(&self) -> &[(String, Var)] {
        &self.trainable
    }

    /// The output head (the embedding when tied).
    pub fn head(&self) -> &Weight {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Runs the decoder on packed sequences. See [`DiffRequest`].
    pub fn forward(&self, packed: &Packed, req: &DiffRequest) -> Result<DiffOutput> {
        let nl = self.config.num_layers;
        let start = self.check_request(packed, req)?;
        let mut h = match &req.start {
            Some((_, h)) => h.clone(),
            None => self.embed_tokens(packed)?,
        };
        let wants_final = req.logit_rows.is_some() || req.capture.contains(&nl);
        let end = if wants_final {
            nl
        } else {
            req.capture
                .iter()
                .copied()
                .max()
                .unwrap_or(start)
                .max(start)
        };
        let spec = AttnSpec::new(
            packed.spans.clone(),
            self.config.num_heads,
            self.config.num_kv_heads,
            self.config.head_dim,
            &self.config.inv_freq(),
        )?
        .with_scale(self.config.attn_scale())
        .with_softcap(self.config.features.attn_softcap);
        let spec = match &self.config.features.longrope {
            Some(lr) => spec.with_rope_factor(lr.attention_factor as f32),
            None => spec,
        };
        let mut hidden: Vec<(usize, Tensor)> = Vec::new();
        let mut keep = |i: usize, h: &Tensor| {
            if req.capture.contains(&i) && i < nl {
                hidden.push((i, h.clone()));
            }
        };
        keep(start, &h);
        let f = &self.config.features;
        let sliding = if self.config.local_rope() {
            // Gemma 3's sliding layers rotate with their own base
            AttnSpec::new(
                packed.spans.clone(),
                self.config.num_heads,
                self.config.num_kv_heads,
                self.config.head_dim,
                &self.config.inv_freq_of(true),
            )?
            .with_scale(self.config.attn_scale())
            .with_softcap(self.config.features.attn_softcap)
            .with_window(f.sliding_window)
        } else {
            spec.with_window(f.sliding_window)
        };
        for li in start..end {
            let spec = if self.config.features.is_sliding(li) {
                &sliding
            } else {
                &spec
            };
            h = self.block(li, &h, spec, req.rules)?;
            keep(li + 1, &h);
        }
        let logits = if wants_final {
            self.finish(&h, req, &mut hidden)?
        } else {
            None
        };
        // Capture order as requested.
        let mut ordered = Vec::with_capacity(req.capture.len());
        for &c in &req.capture {
            if let Some((_, t)) = hidden.iter().find(|(i, _)| *i == c) {
                ordered.push((c, t.clone()));
            }
        }
        Ok(DiffOutput {
            hidden: ordered,
            logits,
        })
    }

    /// Checks a request against the batch and the model; returns the start layer.
    fn check_request(&self, packed: &Packed, req: &DiffRequest) -> Result<usize> {
        let cfg = &self.config;
        let nl = cfg.num_layers;
        let n = packed.n_rows();
        if packed.n_seqs() == 0 || packed.spans.iter().any(|s| s.len == 0) {
            return Err(GradError::Input(
                "forward: empty batch or empty sequence".into(),
            ));
        }
        if let Some(&c) = req.capture.iter().find(|&&c| c > nl) {
            return Err(GradError::Input(format!("layer {c} out of range 0..={nl}")));
        }
        let start = req.start.as_ref().map_or(0, |(l, _)| *l);
        if start >= nl {
            return Err(GradError::Input(format!(
                "start layer {start} out of range 0..{nl}"
            )));
        }
        if let Some(&c) = req.capture.iter().find(|&&c| c < start) {
            return Err(GradError::Input(format!(
                "cannot capture layer {c} below the start layer {start}"
            )));
        }
        if let Some(&r) = req.logit_rows.iter().flatten().find(|&&r| r >= n) {
            return Err(GradError::Input(format!(
                "logit row {r} out of range for {n} tokens"
            )));
        }
        if let Some((_, h)) = &req.start {
            if h.dims() != [n, cfg.hidden_size] {
                return Err(GradError::Input(format!(
                    "start states have shape {:?}, expected [{n}, {}]",
                    h.dims(),
                    cfg.hidden_size
                )));
            }
        }
        Ok(start)
    }

    /// The token embeddings of the packed rows `[n_rows, d]`, token ids checked against the
    /// vocabulary.
    pub fn embed_tokens(&self, packed: &Packed) -> Result<Tensor> {
        let h = self.embed_rows(packed)?;
        Ok(match self.config.features.embed_scale {
            // Gemma: hd-lm's (and transformers') state 0 is the scaled embedding
            Some(s) => h.affine(s as f64, 0.0)?,
            None => h,
        })
    }

    fn embed_rows(&self, packed: &Packed) -> Result<Tensor> {
        let vocab = self.config.vocab_size;
        if let Some(&bad) = packed.tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(GradError::Input(format!(
                "token id {bad} out of range for vocabulary of {vocab}"
            )));
        }
        match &self.embed {
            Weight::Tensor(e) => {
                let ids = Tensor::from_vec(packed.tokens.clone(), packed.n_rows(), &cpu())?;
                Ok(e.index_select(&ids, 0)?)
            }
            Weight::Stored(e) => {
                let d = e.cols();
                let mut h = vec![0.0f32; packed.n_rows() * d];
                for (o, &tok) in h.chunks_exact_mut(d.max(1)).zip(&packed.tokens) {
                    e.row_into(tok as usize, o);
                }
                t(h, &[packed.n_rows(), d])
            }
        }
    }

    /// The final norm (captured when asked) and the logits at the requested rows.
    fn finish(
        &self,
        h: &Tensor,
        req: &DiffRequest,
        hidden: &mut Vec<(usize, Tensor)>,
    ) -> Result<Option<Tensor>> {
        let (nl, eps) = (self.config.num_layers, self.config.rms_norm_eps);
        if req.capture.contains(&nl) {
            hidden.push((nl, ops::rms_norm_with(h, &self.final_norm, eps, req.rules)?));
        }
        let Some(rows) = &req.logit_rows else {
            return Ok(None);
        };
        let idx = Tensor::from_vec(
            rows.iter().map(|&r| r as u32).collect::<Vec<u32>>(),
            rows.len(),
            &cpu(),
        )?;
        let hn = ops::rms_norm_with(&h.index_select(&idx, 0)?, &self.final_norm, eps, req.rules)?;
        let logits = ops::linear_w(&hn, self.head())?;
        Ok(Some(match self.config.features.final_softcap {
            // Gemma 2: c·tanh(logits / c), through candle's tanh and its gradient
            Some(c) => logits
                .affine(1.0 / c as f64, 0.0)?
                .tanh()?
                .affine(c as f64, 0.0)?,
            None => logits,
        }))
    }

    fn block(&self, li: usize, h: &Tensor, spec: &AttnSpec, rules: Rules) -> Result<Tensor> {
        let cfg = &self.config;
        let l = &self.layers[li];
        let x = ops::rms_norm_with(h, &l.attn_norm, cfg.rms_norm_eps, rules)?;
        let mut qkv = l.proj(Module::Qkv, &x)?;
        if let Some(b) = &l.bqkv {
            qkv = qkv.broadcast_add(b)?;
        }
        if let Some((qn, kn)) = &l.qk_norm {
            qkv = self.qk_norm(&qkv, qn, kn, rules)?;
        }
        if cfg.features.attn_softcap.is_some() && rules != Rules::Exact {
            // lxt has no rule for a soft-capped softmax; a plain gradient would pass for one
            return Err(GradError::Input(
                "AttnLRP rules for soft-capped attention (Gemma 2) are not implemented".into(),
            ));
        }
        let att = ops::attention_with(&qkv, spec, rules)?;
        let eps = cfg.rms_norm_eps;
        let post = |x: Tensor, g: Option<&Tensor>| -> Result<Tensor> {
            Ok(match g {
                Some(g) => ops::rms_norm_with(&x, g, eps, rules)?,
                None => x,
            })
        };
        let pn = l.post_norms.as_ref();
        let h = ops::add(h, &post(l.proj(Module::O, &att)?, pn.map(|p| &p.0))?)?;
        let x = ops::rms_norm_with(&h, &l.mlp_norm, eps, rules)?;
        let gu = l.proj(Module::GateUp, &x)?;
        // SwiGLU or GeGLU, each with its AttnLRP rules (lxt's gated_mlp_forward)
        let act = ops::gated_mul_with(&gu, cfg.intermediate_size, cfg.features.act, rules)?;
        Ok(ops::add(
            &h,
            &post(l.proj(Module::Down, &act)?, pn.map(|p| &p.1))?,
        )?)
    }

    /// RMSNorm of every q and k head of `qkv` `[n, qkv_width]` (before the attention op's
    /// RoPE, as transformers' Qwen3), through the same differentiable norm as the residual's.
    fn qk_norm(&self, qkv: &Tensor, qn: &Tensor, kn: &Tensor, rules: Rules) -> Result<Tensor> {
        let cfg = &self.config;
        let (n, hd, eps) = (qkv.dims2()?.0, cfg.head_dim, cfg.rms_norm_eps);
        let (nq, nk) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
        let heads = |x: Tensor, g: &Tensor, w: usize| -> Result<Tensor> {
            let x = x.contiguous()?.reshape((n * w / hd, hd))?;
            Ok(ops::rms_norm_with(&x, g, eps, rules)?.reshape((n, w))?)
        };
        let q = heads(qkv.narrow(1, 0, nq)?, qn, nq)?;
        let k = heads(qkv.narrow(1, nq, nk)?, kn, nk)?;
        let v = qkv.narrow(1, nq + nk, nk)?;
        Ok(Tensor::cat(&[&q, &k, &v], 1)?)
    }

    /// hd-lm weights with every adapter merged in (`W + scale·B·A`) and trained weights
    /// taken as they are now.
    pub fn merged_weights(&self) -> Result<Weights> {
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let merged = |m: Module| -> Result<hd_lm::Matrix> {
                let w = l.weight(m);
                let (out, inp) = w.dims2()?;
                if let (Weight::Stored(s), false) = (w, l.adapters.iter().any(|(k, _)| *k == m)) {
                    return Ok(s.clone());
                }
                let mut v = w.to_f32()?;
                for (k, ad) in &l.adapters {
                    if *k == m {
                        let r = ad.a.dims2()?.0;
                        let ba = ops::matmul_nn(
                            &to_vec(ad.b.as_tensor())?,
                            out,
                            r,
                            &to_vec(ad.a.as_tensor())?,
                            inp,
                        );
                        for (x, d) in v.iter_mut().zip(ba) {
                            *x += (ad.scale * d as f64) as f32;
                        }
                    }
                }
                Ok(hd_lm::Matrix::from_f32(out, inp, v))
            };
            layers.push(hd_lm::weights::LayerWeights {
                attn_norm: to_vec(&l.attn_norm)?,
                wqkv: merged(Module::Qkv)?,
                bqkv: l.bqkv.as_ref().map(to_vec).transpose()?,
                wo: merged(Module::O)?,
                mlp_norm: to_vec(&l.mlp_norm)?,
                w_gate_up: merged(Module::GateUp)?,
                w_down: merged(Module::Down)?,
                extra: hd_lm::weights::LayerNorms {
                    q_norm: l.qk_norm.as_ref().map(|(q, _)| to_vec(q)).transpose()?,
                    k_norm: l.qk_norm.as_ref().map(|(_, k)| to_vec(k)).transpose()?,
                    post_attn_norm: l.post_norms.as_ref().map(|(a, _)| to_vec(a)).transpose()?,
                    post_mlp_norm: l.post_norms.as_ref().map(|(_, m)| to_vec(m)).transpose()?,
                },
            });
        }
        Ok(Weights {
            embed: weight_matrix(&self.embed)?,
            layers,
            final_norm: to_vec(&self.final_norm)?,
            lm_head: self.lm_head.as_ref().map(weight_matrix).transpose()?,
        })
    }
}
