//! The model runtime of hidden-dims: Llama, Mistral, Qwen2/3, Gemma 2/3 and Phi-3 decoders from
//! a GGUF file or a Hugging Face directory, their tokenizer and chat template, and a fast packed
//! forward pass with hooks.
//!
//! # Layers
//! Hidden-state indices follow transformers' `output_hidden_states`: 0 is the embedding output,
//! `i` in `1..L` the output of block `i−1`, and `L` the state after the final norm.
//!
//! # Speed
//! Prompts are packed, not padded; projections run as faer GEMMs over all tokens of a batch;
//! logits are only computed at last positions and only when asked; blocks deeper than the
//! deepest requested layer are skipped.
//!
//! # From another crate
//! What it offers an outside user: [`Model::load`] (a `.gguf` file or a Hugging Face
//! directory of a model of one of those families), [`Model::encode_prompt`] (the chat template applied as
//! transformers applies it), [`Forward`] (hidden states at any layers, next-token logits,
//! residual-stream edits, a [`Hook`] for anything else) and [`generate`] (greedy batched
//! decoding with a KV cache). The residual stream of layer 10 at a prompt's last token
//! (`examples/dump-layer` in the repository is the whole program):
//!
//! ```no_run
//! use hd_lm::{Model, Positions, PromptFormat, Request};
//! # fn main() -> hd_lm::Result<()> {
//! let model = Model::load("model.gguf".as_ref())?;
//! let ids = model.encode_prompt("What is the capital of France?", &PromptFormat::default())?;
//! let request = Request {
//!     capture_layers: vec![10],
//!     capture_positions: Positions::Last,
//!     interventions: Vec::new(),
//!     logits: false,
//! };
//! let out = model.forward().run(&[ids.as_slice()], &request)?;
//! let (_layer, states) = &out.captured[0]; // [1, d]
//! # let _ = states; Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod config;
mod error;
pub mod forward;
pub mod generate;
mod gguf;
pub mod guard;
mod hf;
pub mod kernels;
pub mod matrix;
pub mod memory;
mod qdot;
pub mod template;
pub mod tokenizer;
pub mod weights;

pub use config::{Arch, Config};
pub use error::{LmError, Result, NO_CHAT_TEMPLATE};
pub use forward::{
    common_prefix_len, Forward, Hook, Intervention, InterventionOp, KvCache, NoHook, Output,
    Positions, Prefix, Request, RowPos, SHARED,
};
pub use guard::UserTemplate;
pub use matrix::{Compute, Matrix};
pub use template::{ChatTemplate, Message};
pub use tokenizer::Tokenizer;
pub use weights::Weights;

use std::path::{Path, PathBuf};

/// How a prompt becomes token ids.
#[derive(Debug, Clone, Default)]
pub struct PromptFormat {
    /// An optional system message.
    pub system: Option<String>,
    /// Skip the chat template: encode the raw text (with BOS when the tokenizer adds one).
    pub no_template: bool,
    /// The template's `enable_thinking` (Qwen3): `None` leaves it undefined, as transformers'
    /// `apply_chat_template` does by default (Qwen3 then thinks first).
    pub enable_thinking: Option<bool>,
    /// A template the prompt is written into first (the guard's moderation prompt); its
    /// output is the user turn.
    pub user_template: Option<UserTemplate>,
}

impl PromptFormat {
    /// How prompts become text where that is not the model's chat template alone (`no
    /// template`, the system prompt's hash, the user template's name and hash, joined by
    /// `; `); `None` for the default. Files that record different descriptions hold states
    /// of different texts and must not be paired.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.no_template {
            parts.push("no template".to_string());
        }
        if let Some(s) = &self.system {
            let hex: String = <sha2::Sha256 as sha2::Digest>::digest(s.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            parts.push(format!("system prompt sha256:{hex}"));
        }
        if let Some(t) = &self.user_template {
            parts.push(t.describe());
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// A loaded model: config, weights, tokenizer and chat template.
pub struct Model {
    /// Hyper-parameters.
    pub config: Config,
    /// Weights, in their stored types.
    pub weights: Weights,
    /// How the forward pass multiplies stored weights (default `Exact`).
    pub compute: Compute,
    /// Tokenizer.
    pub tokenizer: Tokenizer,
    /// Chat template, when the model ships one.
    pub template: Option<ChatTemplate>,
    /// Where the model was loaded from.
    pub path: PathBuf,
    /// The files holding the weights (for content hashing).
    pub weight_files: Vec<PathBuf>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("path", &self.path)
            .field("config", &self.config)
            .finish()
    }
}

impl Model {
    /// [`PromptFormat::describe`] plus the thinking switch where this model's template reads
    /// it: two files of a Qwen3 model dumped with thinking on and off hold states of different
    /// texts. For other templates the switch changes nothing and is not recorded.
    pub fn describe_format(&self, fmt: &PromptFormat) -> Option<String> {
        let reads_it = !fmt.no_template
            && self
                .template
                .as_ref()
                .is_some_and(ChatTemplate::uses_thinking);
        let thinking = reads_it.then_some(match fmt.enable_thinking {
            Some(true) => "thinking on",
            Some(false) => "thinking off",
            None => "thinking as the template's default",
        });
        let parts: Vec<String> = fmt
            .describe()
            .into_iter()
            .chain(thinking.map(String::from))
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Loads a `.gguf` file or a Hugging Face directory.
    pub fn load(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| LmError::io(path, e))?;
        if meta.is_dir() {
            Self::load_hf(path)
        } else {
            Self::load_gguf(path)
        }
    }

    /// The hyper-parameters of a `.gguf` file or Hugging Face directory, without loading the
    /// weights: enough to check a command line (`--layers`, context length) before a load
    /// that takes seconds.
    pub fn read_config(path: &Path) -> Result<Config> {
        let meta = std::fs::metadata(path).map_err(|e| LmError::io(path, e))?;
        if meta.is_dir() {
            hf::config(path)
        } else {
            gguf::Gguf::open(path)?.config()
        }
    }

    fn load_gguf(path: &Path) -> Result<Self> {
        let mut g = gguf::Gguf::open(path)?;
        let config = g.config()?;
        let tokenizer = Tokenizer::from_gguf(&g.content, path)?;
        let template = match g.content.metadata.get("tokenizer.chat_template") {
            Some(candle_core::quantized::gguf_file::Value::String(s)) => Some(
                ChatTemplate::new(s.clone())
                    .map_err(|e| in_file(path, "tokenizer.chat_template", e))?,
            ),
            _ => None,
        };
        // The weights stay in the mapped file; every forward reads all of them.
        let size = std::fs::metadata(path)
            .map_err(|e| LmError::io(path, e))?
            .len();
        memory::check_fits(path, size, "its weights (mapped from the file)")?;
        let weights = weights::load_weights(&config, &g)?;
        Ok(Model {
            config,
            weights,
            compute: Compute::Exact,
            tokenizer,
            template,
            path: path.into(),
            weight_files: vec![path.into()],
        })
    }

    fn load_hf(dir: &Path) -> Result<Self> {
        let config = hf::config(dir)?;
        let tokenizer = Tokenizer::from_hf_dir(dir)?;
        let template = hf_template(dir).map_err(|e| in_file(dir, "chat template", e))?;
        let src = hf::HfTensors::open(dir)?;
        let weight_files: Vec<PathBuf> = src.files().map(Path::to_path_buf).collect();
        let mut size = 0;
        for f in &weight_files {
            size += std::fs::metadata(f).map_err(|e| LmError::io(f, e))?.len();
        }
        memory::check_fits(dir, size, "its weights (mapped from the safetensors files)")?;
        let weights = weights::load_weights(&config, &src)?;
        Ok(Model {
            config,
            weights,
            compute: Compute::Exact,
            tokenizer,
            template,
            path: dir.into(),
            weight_files,
        })
    }

    /// Builds a model from parts (tests, exported checkpoints).
    pub fn from_parts(
        config: Config,
        weights: Weights,
        tokenizer: Tokenizer,
        template: Option<ChatTemplate>,
    ) -> Self {
        Model {
            config,
            weights,
            compute: Compute::Exact,
            tokenizer,
            template,
            path: PathBuf::new(),
            weight_files: Vec::new(),
        }
    }

    /// The forward pass over this model's weights.
    pub fn forward(&self) -> Forward<'_> {
        Forward {
            cfg: &self.config,
            w: &self.weights,
            compute: self.compute,
        }
    }

    /// The text the model sees for a user prompt (written into the user template when there
    /// is one, then chat-templated unless `no_template`).
    pub fn render(&self, prompt: &str, fmt: &PromptFormat) -> Result<String> {
        let prompt = match &fmt.user_template {
            Some(t) => &t.render(prompt)?,
            None => prompt,
        };
        if fmt.no_template {
            return Ok(prompt.to_string());
        }
        let tmpl = self
            .template
            .as_ref()
            .ok_or_else(|| LmError::NoChatTemplate {
                path: self.path.clone(),
            })?;
        let mut msgs = Vec::new();
        if let Some(s) = &fmt.system {
            msgs.push(Message {
                role: "system".into(),
                content: s.clone(),
            });
        }
        msgs.push(Message {
            role: "user".into(),
            content: prompt.into(),
        });
        tmpl.render_with(
            &msgs,
            true,
            self.tokenizer.bos_token.as_deref(),
            self.tokenizer.eos_token.as_deref(),
            fmt.enable_thinking,
        )
        .map_err(|e| in_file(&self.path, "chat template", e))
    }

    /// Token ids of a prompt, exactly as transformers' `apply_chat_template(..., tokenize=True)`.
    pub fn encode_prompt(&self, prompt: &str, fmt: &PromptFormat) -> Result<Vec<u32>> {
        let text = self.render(prompt, fmt)?;
        self.tokenizer.encode(&text, fmt.no_template)
    }
}

/// A template error names the model it came from (the user sees only the model path).
fn in_file(path: &Path, what: &str, e: LmError) -> LmError {
    match e {
        LmError::Template(m) => LmError::format(path, format!("{what}: {m}")),
        other => other,
    }
}

fn hf_template(dir: &Path) -> Result<Option<ChatTemplate>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        let s = std::fs::read_to_string(&jinja).map_err(|e| LmError::io(&jinja, e))?;
        return ChatTemplate::new(s).map(Some);
    }
    let tc = dir.join("tokenizer_config.json");
    if let Some(j) = tokenizer::read_json_opt(&tc)? {
        match j.get("chat_template") {
            Some(serde_json::Value::String(s)) => return ChatTemplate::new(s.clone()).map(Some),
            Some(serde_json::Value::Array(a)) => {
                // Named templates: take "default".
                for t in a {
                    if t.get("name").and_then(|n| n.as_str()) == Some("default") {
                        if let Some(s) = t.get("template").and_then(|s| s.as_str()) {
                            return ChatTemplate::new(s.to_string()).map(Some);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // a multimodal model's processor may keep its template only in chat_template.json
    let processor = dir.join("chat_template.json");
    if let Some(j) = tokenizer::read_json_opt(&processor)? {
        if let Some(s) = j.get("chat_template").and_then(|s| s.as_str()) {
            return ChatTemplate::new(s.to_string()).map(Some);
        }
    }
    Ok(None)
}
