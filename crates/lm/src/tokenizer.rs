//! Tokenizers: `tokenizer.json` for Hugging Face directories, or a byte-level BPE rebuilt from
//! GGUF `tokenizer.ggml.*` metadata with the pre-tokenizer llama.cpp picks from
//! `tokenizer.ggml.pre`.

use crate::error::{LmError, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::{json, Map, Value as J};
use std::path::Path;

/// The regex Qwen2 (and `tokenizer.ggml.pre = qwen2`) splits text with before BPE.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's split regex (`llama-bpe`): digits in groups of up to three.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Token strings that end an assistant turn in the chat formats we know.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<|end|>",
    "</s>",
];

/// A tokenizer plus the special ids generation and templating need.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Beginning-of-sequence token text, for chat templates.
    pub bos_token: Option<String>,
    /// End-of-sequence token text, for chat templates.
    pub eos_token: Option<String>,
    /// Ids that stop generation: EOS plus any end-of-turn token of the vocabulary.
    pub stop_ids: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab", &self.inner.get_vocab_size(true))
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("stop_ids", &self.stop_ids)
            .finish()
    }
}

impl Tokenizer {
    /// Encodes text. `add_special` adds BOS/EOS the way the model's post-processor says
    /// (what `tokenizer(text)` does in transformers); chat-templated text is encoded without.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, add_special)
            .map_err(|e| LmError::Input(format!("tokenizer: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids to text, dropping special tokens when asked.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| LmError::Input(format!("tokenizer: {e}")))
    }

    /// The text of one token as it reads (byte-level markers decoded).
    pub fn token_text(&self, id: u32) -> String {
        self.inner.decode(&[id], false).unwrap_or_default()
    }

    /// Id of an exact token string, if it is in the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The wrapped `tokenizers` object.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    fn finish(
        inner: tokenizers::Tokenizer,
        bos_token: Option<String>,
        eos_token: Option<String>,
        mut stop_ids: Vec<u32>,
    ) -> Self {
        for t in END_OF_TURN {
            if let Some(id) = inner.token_to_id(t) {
                stop_ids.push(id);
            }
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();
        Tokenizer {
            inner,
            bos_token,
            eos_token,
            stop_ids,
        }
    }

    /// Loads `tokenizer.json` plus `tokenizer_config.json` / `generation_config.json` specials.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let tj = dir.join("tokenizer.json");
        if !tj.exists() {
            return Err(LmError::format(
                dir,
                "no tokenizer.json in the model directory",
            ));
        }
        let inner = tokenizers::Tokenizer::from_file(&tj)
            .map_err(|e| LmError::format(&tj, format!("not a valid tokenizer.json: {e}")))?;
        let cfg = read_json_opt(&dir.join("tokenizer_config.json"))?;
        let tok_str = |key: &str| -> Option<String> {
            match cfg.as_ref()?.get(key)? {
                J::String(s) => Some(s.clone()),
                J::Object(o) => o.get("content")?.as_str().map(str::to_owned),
                _ => None,
            }
        };
        let bos_token = tok_str("bos_token");
        let eos_token = tok_str("eos_token");
        let mut stop = Vec::new();
        if let Some(id) = eos_token.as_deref().and_then(|t| inner.token_to_id(t)) {
            stop.push(id);
        }
        if let Some(gen) = read_json_opt(&dir.join("generation_config.json"))? {
            match gen.get("eos_token_id") {
                Some(J::Number(n)) => stop.extend(n.as_u64().map(|x| x as u32)),
                Some(J::Array(a)) => {
                    stop.extend(a.iter().filter_map(|x| x.as_u64().map(|x| x as u32)))
                }
                _ => {}
            }
        }
        Ok(Self::finish(inner, bos_token, eos_token, stop))
    }

    /// Rebuilds the tokenizer of a GGUF file from its metadata.
    pub fn from_gguf(content: &Content, path: &Path) -> Result<Self> {
        let md = &content.metadata;
        let model = match md.get("tokenizer.ggml.model") {
            Some(Value::String(s)) => s.as_str(),
            _ => {
                return Err(LmError::format(
                    path,
                    "missing metadata 'tokenizer.ggml.model'",
                ))
            }
        };
        if model != "gpt2" {
            return Err(LmError::Unsupported {
                path: path.into(),
                what: format!(
                    "tokenizer.ggml.model '{model}' (supported: gpt2 byte-level BPE; for \
                     SentencePiece models use the Hugging Face directory with tokenizer.json)"
                ),
            });
        }
        let pre = match md.get("tokenizer.ggml.pre") {
            Some(Value::String(s)) => s.clone(),
            _ => "default".to_string(),
        };
        let strings = |key: &str| -> Result<Vec<String>> {
            match md.get(key) {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        _ => Err(LmError::format(
                            path,
                            format!("metadata '{key}' holds a non-string"),
                        )),
                    })
                    .collect(),
                _ => Err(LmError::format(path, format!("missing metadata '{key}'"))),
            }
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges = strings("tokenizer.ggml.merges")?;
        let types: Vec<i64> = match md.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.to_i32().map(i64::from).unwrap_or(1))
                .collect(),
            _ => vec![1; tokens.len()],
        };
        let id_of = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        let bos_id = id_of("tokenizer.ggml.bos_token_id");
        let eos_id = id_of("tokenizer.ggml.eos_token_id");
        let add_bos = matches!(
            md.get("tokenizer.ggml.add_bos_token"),
            Some(Value::Bool(true))
        );

        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
        let (pre_tokenizer, ignore_merges) = match pre.as_str() {
            "smollm" => (
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
                false,
            ),
            "qwen2" => (
                json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]}),
                false,
            ),
            "llama-bpe" | "llama3" => (
                json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]}),
                true,
            ),
            "gpt-2" | "gpt2" | "default" => (byte_level(true), false),
            other => {
                return Err(LmError::Unsupported {
                    path: path.into(),
                    what: format!(
                        "tokenizer.ggml.pre '{other}' (supported: smollm, qwen2, llama-bpe, gpt-2)"
                    ),
                })
            }
        };
        let mut vocab = Map::new();
        for (i, t) in tokens.iter().enumerate() {
            vocab.insert(t.clone(), J::from(i as u64));
        }
        // Control (3) and user-defined (4) tokens are matched verbatim in text, before BPE,
        // as both llama.cpp and transformers do.
        let added: Vec<J> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (_, &ty))| ty == 3 || ty == 4)
            .map(|(i, (t, &ty))| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": ty == 3})
            })
            .collect();
        let post = match (add_bos, bos_id) {
            (true, Some(b)) => {
                let bt = tokens.get(b as usize).cloned().unwrap_or_default();
                json!({"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": bt, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [{"SpecialToken": {"id": bt, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                {"Sequence": {"id": "B", "type_id": 1}}],
                       "special_tokens": {bt.clone(): {"id": bt, "ids": [b], "tokens": [bt]}}})
            }
            _ => J::Null,
        };
        let spec = json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": added, "normalizer": null,
            "pre_tokenizer": pre_tokenizer, "post_processor": post,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                      "continuing_subword_prefix": null, "end_of_word_suffix": null,
                      "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
                      "vocab": vocab, "merges": merges}
        });
        let inner: tokenizers::Tokenizer = serde_json::from_value(spec).map_err(|e| {
            LmError::format(path, format!("cannot build tokenizer from metadata: {e}"))
        })?;
        let name = |id: Option<u32>| id.and_then(|i| tokens.get(i as usize).cloned());
        Ok(Self::finish(
            inner,
            name(bos_id),
            name(eos_id),
            eos_id.into_iter().collect(),
        ))
    }
}

pub(crate) fn read_json_opt(path: &Path) -> Result<Option<J>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| LmError::format(path, format!("invalid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LmError::io(path, e)),
    }
}
