//! Model hyper-parameters, read from a GGUF file's metadata or a Hugging Face `config.json`.

use serde::Serialize;

/// Decoder families we run. All are pre-norm RMSNorm / RoPE / gated-MLP decoders; what sets
/// one apart from the Llama block is spelled out in its [`Features`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Llama 2/3, SmolLM.
    Llama,
    /// Qwen2 / Qwen2.5: biases on the q, k and v projections.
    Qwen2,
    /// Qwen3: per-head RMSNorm of q and k, no biases.
    Qwen3,
    /// Mistral: the Llama block, with a sliding attention window where the config sets one.
    Mistral,
    /// Gemma 2: scaled embeddings, (1 + w) norms, sandwich norms, GeGLU, soft-capping,
    /// alternating sliding and global layers.
    Gemma2,
    /// Gemma 3 (text): Gemma 2 without soft-capping, with q/k norms and local/global RoPE bases.
    Gemma3,
    /// Phi-3 / 3.5: fused q|k|v and gate|up in the checkpoint.
    Phi3,
}

/// Every family, in the order error messages list them.
pub const ARCHS: [Arch; 7] = [
    Arch::Llama,
    Arch::Mistral,
    Arch::Qwen2,
    Arch::Qwen3,
    Arch::Gemma2,
    Arch::Gemma3,
    Arch::Phi3,
];

impl Arch {
    /// Name as used by GGUF `general.architecture` and HF `model_type` (Gemma 3's text model
    /// is `gemma3_text` in transformers).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Mistral => "mistral",
            Arch::Gemma2 => "gemma2",
            Arch::Gemma3 => "gemma3",
            Arch::Phi3 => "phi3",
        }
    }

    /// The supported names, for "supported: ..." in error messages.
    pub fn supported() -> String {
        ARCHS.map(Arch::name).join(", ")
    }
}

/// The MLP's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Act {
    /// SiLU (SwiGLU): Llama, Qwen, Mistral, Phi-3.
    #[default]
    Silu,
    /// GELU with the tanh approximation (GeGLU): Gemma.
    GeluTanh,
}

/// What a family adds to the Llama block. `Features::default()` is the Llama block itself;
/// every field that is not at its default changes the computation, and hd-grad refuses the
/// ones it does not implement.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Features {
    /// Sliding attention window (keys at distance `< window` from the query are seen), for
    /// the layers `sliding_layers` marks.
    pub sliding_window: Option<usize>,
    /// Per layer, whether it uses the sliding window (empty: every layer does when
    /// `sliding_window` is set).
    pub sliding_layers: Vec<bool>,
    /// RMSNorm of each q and k head (gains `q_norm`, `k_norm` of `[head_dim]`) before RoPE.
    pub qk_norm: bool,
    /// Norms after attention and after the MLP as well as before them (Gemma's sandwich).
    pub sandwich_norms: bool,
    /// Gate activation.
    pub act: Act,
    /// Factor on the token embeddings (Gemma: √d, rounded to f32).
    pub embed_scale: Option<f32>,
    /// Attention scores are scaled by `query_pre_attn_scalar^-0.5` instead of `head_dim^-0.5`.
    pub query_pre_attn_scalar: Option<f64>,
    /// `cap·tanh(s/cap)` on the scaled attention scores.
    pub attn_softcap: Option<f32>,
    /// `cap·tanh(z/cap)` on the logits.
    pub final_softcap: Option<f32>,
    /// RoPE base of the sliding layers (Gemma 3's local base), when it differs.
    pub rope_local_theta: Option<f64>,
    /// Linear RoPE scaling of the global layers (positions divided by the factor).
    pub rope_linear_factor: Option<f64>,
    /// Phi-3's longrope (`su`) scaling with its short factors (sequences up to the original
    /// context; longer ones are refused).
    pub longrope: Option<LongRope>,
}

/// Phi-3 longrope scaling, short factors only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LongRope {
    /// One factor per rotated pair (length head_dim/2): frequencies are divided by them.
    pub short_factor: Vec<f64>,
    /// Factor on cos and sin.
    pub attention_factor: f64,
    /// Context length the short factors serve; longer sequences are refused.
    pub original_max_position_embeddings: usize,
}

/// [`Features::names`]' name of the q/k norms.
pub const QK_NORMS: &str = "q/k norms";
/// [`Features::names`]' name of the sliding window.
pub const SLIDING_WINDOW: &str = "sliding_window";
/// [`Features::names`]' name of Gemma's post-norms.
pub const SANDWICH_NORMS: &str = "sandwich norms";
/// [`Features::names`]' name of the GeGLU gate.
pub const GELU_TANH: &str = "gelu_pytorch_tanh activation";
/// [`Features::names`]' name of the embedding scale.
pub const EMBED_SCALE: &str = "embedding scale";
/// [`Features::names`]' name of Gemma's query scaling.
pub const QUERY_SCALAR: &str = "query_pre_attn_scalar";
/// [`Features::names`]' name of Gemma 3's local RoPE base.
pub const ROPE_LOCAL: &str = "rope_local_base_freq";
/// [`Features::names`]' name of linear RoPE scaling.
pub const ROPE_LINEAR: &str = "linear rope_scaling";

impl Features {
    /// Whether layer `li` attends through the sliding window.
    pub fn is_sliding(&self, li: usize) -> bool {
        self.sliding_window.is_some() && self.sliding_layers.get(li).copied().unwrap_or(true)
    }

    /// The window of layer `li`, when it has one.
    pub fn window(&self, li: usize) -> Option<usize> {
        self.sliding_window.filter(|_| self.is_sliding(li))
    }

    /// Names of the fields that differ from the Llama block (what a second implementation of
    /// the forward pass must support or refuse).
    pub fn names(&self) -> Vec<&'static str> {
        let d = Features::default();
        let mut v = Vec::new();
        let mut add = |on: bool, n: &'static str| {
            if on {
                v.push(n)
            }
        };
        add(self.sliding_window.is_some(), SLIDING_WINDOW);
        add(self.qk_norm, QK_NORMS);
        add(self.sandwich_norms, SANDWICH_NORMS);
        add(self.act != d.act, GELU_TANH);
        add(self.embed_scale.is_some(), EMBED_SCALE);
        add(self.query_pre_attn_scalar.is_some(), QUERY_SCALAR);
        add(self.attn_softcap.is_some(), "attn_logit_softcapping");
        add(self.final_softcap.is_some(), "final_logit_softcapping");
        add(self.rope_local_theta.is_some(), ROPE_LOCAL);
        add(self.rope_linear_factor.is_some(), ROPE_LINEAR);
        add(self.longrope.is_some(), "longrope rope_scaling");
        v
    }
}

/// Llama 3.x frequency-dependent RoPE scaling (`rope_type: llama3`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Llama3Scaling {
    /// Overall wavelength stretch for low frequencies.
    pub factor: f64,
    /// Wavelength threshold factor below which frequencies are scaled.
    pub low_freq_factor: f64,
    /// Wavelength threshold factor above which frequencies are kept.
    pub high_freq_factor: f64,
    /// Context length the base model was trained for.
    pub original_max_position_embeddings: usize,
}

/// Everything the forward pass needs to know about the architecture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Decoder family.
    pub arch: Arch,
    /// Residual width d.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Number of decoder blocks L.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (GQA when smaller than `num_heads`).
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// Vocabulary size (rows of the embedding matrix).
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base.
    pub rope_theta: f64,
    /// Optional Llama 3 RoPE scaling.
    pub rope_scaling: Option<Llama3Scaling>,
    /// Maximum context length.
    pub max_position_embeddings: usize,
    /// Whether the output head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    /// What the family adds to the Llama block.
    pub features: Features,
}

impl Config {
    /// Width of the fused q|k|v projection output.
    pub fn qkv_width(&self) -> usize {
        (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
    }

    /// Inverse frequencies of RoPE (length head_dim/2), with Llama 3 scaling applied.
    pub fn inv_freq(&self) -> Vec<f64> {
        self.inv_freq_of(false)
    }

    /// Attention scale on q·k: `head_dim^-0.5`, or `query_pre_attn_scalar^-0.5` (Gemma).
    pub fn attn_scale(&self) -> f32 {
        match self.features.query_pre_attn_scalar {
            Some(s) => s.powf(-0.5) as f32,
            None => 1.0 / (self.head_dim as f32).sqrt(),
        }
    }

    /// Whether RoPE differs between sliding and global layers (Gemma 3).
    pub fn local_rope(&self) -> bool {
        self.features.rope_local_theta.is_some()
    }

    /// Inverse frequencies of RoPE for a sliding (`local`) or global layer.
    pub fn inv_freq_of(&self, local: bool) -> Vec<f64> {
        let hd = self.head_dim;
        let theta = match self.features.rope_local_theta {
            Some(t) if local => t,
            _ => self.rope_theta,
        };
        let base: Vec<f64> = (0..hd / 2)
            .map(|i| 1.0 / theta.powf((2 * i) as f64 / hd as f64))
            .collect();
        if local && self.features.rope_local_theta.is_some() {
            // Gemma 3's local RoPE is unscaled.
            return base;
        }
        if let Some(f) = self.features.rope_linear_factor {
            return base.into_iter().map(|x| x / f).collect();
        }
        if let Some(lr) = &self.features.longrope {
            return base
                .into_iter()
                .zip(&lr.short_factor)
                .map(|(x, s)| x / s)
                .collect();
        }
        let Some(s) = self.rope_scaling else {
            return base;
        };
        // Same piecewise rule as transformers' `_compute_llama3_parameters`.
        let old = s.original_max_position_embeddings as f64;
        let low_wavelen = old / s.low_freq_factor;
        let high_wavelen = old / s.high_freq_factor;
        base.into_iter()
            .map(|f| {
                let wavelen = 2.0 * std::f64::consts::PI / f;
                if wavelen < high_wavelen {
                    f
                } else if wavelen > low_wavelen {
                    f / s.factor
                } else {
                    let smooth = (old / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    (1.0 - smooth) * f / s.factor + smooth * f
                }
            })
            .collect()
    }

    fn validate_features(&self) -> Result<(), String> {
        let f = &self.features;
        if f.sliding_window == Some(0) {
            return Err("sliding_window is 0, expected a positive window".into());
        }
        if !f.sliding_layers.is_empty() && f.sliding_layers.len() != self.num_layers {
            return Err(format!(
                "{} layer types for {} layers",
                f.sliding_layers.len(),
                self.num_layers
            ));
        }
        let pos = |x: Option<f64>| x.is_none_or(|x| x.is_finite() && x > 0.0);
        for (k, v) in [
            ("query_pre_attn_scalar", f.query_pre_attn_scalar),
            ("attn_logit_softcapping", f.attn_softcap.map(f64::from)),
            ("final_logit_softcapping", f.final_softcap.map(f64::from)),
            ("rope_local_base_freq", f.rope_local_theta),
            ("rope_scaling.factor", f.rope_linear_factor),
        ] {
            if !pos(v) {
                return Err(format!("{k} is {v:?}, expected a positive number"));
            }
        }
        if let Some(lr) = &f.longrope {
            if lr.short_factor.len() != self.head_dim / 2
                || !lr.short_factor.iter().all(|&x| x.is_finite() && x > 0.0)
            {
                return Err(format!(
                    "rope_scaling short factors: expected {} positive numbers",
                    self.head_dim / 2
                ));
            }
        }
        Ok(())
    }

    fn qkv_width_checked(&self) -> Option<usize> {
        self.num_kv_heads
            .checked_mul(2)?
            .checked_add(self.num_heads)?
            .checked_mul(self.head_dim)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.num_heads == 0
            || self.num_kv_heads == 0
            || !self.num_heads.is_multiple_of(self.num_kv_heads)
        {
            return Err(format!(
                "num_attention_heads {} must be a positive multiple of num_key_value_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) || self.head_dim == 0 {
            return Err(format!(
                "head_dim {} must be even and positive",
                self.head_dim
            ));
        }
        if self.hidden_size == 0
            || self.num_layers == 0
            || self.vocab_size == 0
            || self.intermediate_size == 0
        {
            return Err(format!(
                "hidden_size {}, num_hidden_layers {}, vocab_size {} and intermediate_size {} \
                 must all be positive",
                self.hidden_size, self.num_layers, self.vocab_size, self.intermediate_size
            ));
        }
        // A NaN or negative epsilon or RoPE base gives NaN activations with exit 0; catch it
        // here, naming the key, rather than as garbage downstream.
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return Err(format!(
                "rms_norm_eps is {}, expected a small positive number (like 1e-5)",
                self.rms_norm_eps
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return Err(format!(
                "rope_theta (rope.freq_base) is {}, expected a finite number above 1 (like 10000)",
                self.rope_theta
            ));
        }
        if let Some(r) = self.rope_scaling {
            let ok = |x: f64| x.is_finite() && x > 0.0;
            if !(ok(r.factor)
                && ok(r.low_freq_factor)
                && ok(r.high_freq_factor)
                && r.low_freq_factor < r.high_freq_factor
                && r.original_max_position_embeddings > 0)
            {
                return Err(format!(
                    "rope_scaling {r:?}: expected positive finite factors with \
                     low_freq_factor < high_freq_factor and a positive original context"
                ));
            }
        }
        self.validate_features()?;
        if self.max_position_embeddings == 0 {
            return Err("max_position_embeddings (context_length) is 0, expected positive".into());
        }
        // Buffer sizes are products of these; they must not wrap.
        let sizes = [
            self.qkv_width_checked()
                .map(|w| w.checked_mul(self.hidden_size)),
            Some(self.vocab_size.checked_mul(self.hidden_size)),
            Some(
                self.intermediate_size
                    .checked_mul(self.hidden_size)
                    .and_then(|x| x.checked_mul(3)),
            ),
        ];
        if sizes.iter().any(|s| s.flatten().is_none()) {
            return Err("the weight shapes these sizes imply overflow the address space".into());
        }
        Ok(())
    }
}
