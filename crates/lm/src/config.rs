//! Model hyper-parameters, read from a GGUF file's metadata or a Hugging Face `config.json`.

use serde::Serialize;

/// Decoder families we run. Both are pre-norm RMSNorm / RoPE / SwiGLU decoders; Qwen2 adds
/// biases on the q, k and v projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Llama 2/3, SmolLM, Mistral-style GQA.
    Llama,
    /// Qwen2 / Qwen2.5.
    Qwen2,
}

impl Arch {
    /// Name as used by GGUF `general.architecture` and HF `model_type`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
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
}

impl Config {
    /// Width of the fused q|k|v projection output.
    pub fn qkv_width(&self) -> usize {
        (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
    }

    /// Inverse frequencies of RoPE (length head_dim/2), with Llama 3 scaling applied.
    pub fn inv_freq(&self) -> Vec<f64> {
        let hd = self.head_dim;
        let base: Vec<f64> = (0..hd / 2)
            .map(|i| 1.0 / self.rope_theta.powf((2 * i) as f64 / hd as f64))
            .collect();
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

    fn qkv_width_checked(&self) -> Option<usize> {
        self.num_kv_heads
            .checked_mul(2)?
            .checked_add(self.num_heads)?
            .checked_mul(self.head_dim)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.num_heads % self.num_kv_heads != 0
        {
            return Err(format!(
                "num_attention_heads {} must be a positive multiple of num_key_value_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim % 2 != 0 || self.head_dim == 0 {
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
