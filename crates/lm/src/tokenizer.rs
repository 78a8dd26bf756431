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

    /// Rebuilds the tokenizer of a GGUF file from its metadata: byte-level BPE (`gpt2`, with
    /// the pre-tokenizer llama.cpp picks from `tokenizer.ggml.pre`) or SentencePiece (`llama`:
    /// Llama 2, Mistral, Gemma, Phi-3).
    pub fn from_gguf(content: &Content, path: &Path) -> Result<Self> {
        let v = GgufVocab::read(&content.metadata, path)?;
        let (model, normalizer, pre_tokenizer, decoder) = match v.model.as_str() {
            "gpt2" => {
                let (pre, ignore_merges) = byte_level_pre(&v.pre, path)?;
                let merges = v.merges.clone().ok_or_else(|| {
                    LmError::format(path, "missing metadata 'tokenizer.ggml.merges'")
                })?;
                (
                    bpe_model(&v, J::from(merges), ignore_merges, false),
                    J::Null,
                    pre,
                    json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true}),
                )
            }
            "llama" => spm_parts(&v, path)?,
            other => {
                return Err(LmError::Unsupported {
                    path: path.into(),
                    what: format!(
                        "tokenizer.ggml.model '{other}' (supported: gpt2 byte-level BPE, \
                         llama SentencePiece)"
                    ),
                })
            }
        };
        let spec = json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": v.added_tokens(), "normalizer": normalizer,
            "pre_tokenizer": pre_tokenizer, "post_processor": v.bos_post_processor(),
            "decoder": decoder, "model": model
        });
        let inner: tokenizers::Tokenizer = serde_json::from_value(spec).map_err(|e| {
            LmError::format(path, format!("cannot build tokenizer from metadata: {e}"))
        })?;
        let name = |id: Option<u32>| id.and_then(|i| v.tokens.get(i as usize).cloned());
        Ok(Self::finish(
            inner,
            name(v.bos_id),
            name(v.eos_id),
            v.eos_id.into_iter().collect(),
        ))
    }
}

/// The `tokenizer.ggml.*` metadata of a GGUF file.
struct GgufVocab {
    model: String,
    pre: String,
    tokens: Vec<String>,
    /// llama.cpp's token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    /// 6 byte.
    types: Vec<i64>,
    scores: Vec<f32>,
    merges: Option<Vec<String>>,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    unk_id: Option<u32>,
    add_bos: bool,
    /// SentencePiece's dummy prefix: a space before every run of text (llama.cpp's default
    /// for SentencePiece vocabularies; Gemma's files turn it off).
    add_space_prefix: bool,
}

impl GgufVocab {
    fn read(md: &std::collections::HashMap<String, Value>, path: &Path) -> Result<Self> {
        let string = |key: &str| match md.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let model = string("tokenizer.ggml.model")
            .ok_or_else(|| LmError::format(path, "missing metadata 'tokenizer.ggml.model'"))?;
        let array = |key: &str| match md.get(key) {
            Some(Value::Array(a)) => Some(a),
            _ => None,
        };
        let strings = |key: &str| -> Result<Option<Vec<String>>> {
            array(key)
                .map(|a| {
                    a.iter()
                        .map(|v| match v {
                            Value::String(s) => Ok(s.clone()),
                            _ => Err(LmError::format(
                                path,
                                format!("metadata '{key}' holds a non-string"),
                            )),
                        })
                        .collect()
                })
                .transpose()
        };
        let tokens = strings("tokenizer.ggml.tokens")?
            .ok_or_else(|| LmError::format(path, "missing metadata 'tokenizer.ggml.tokens'"))?;
        let types: Vec<i64> = array("tokenizer.ggml.token_type").map_or_else(
            || vec![1; tokens.len()],
            |a| {
                a.iter()
                    .map(|v| v.to_i32().map(i64::from).unwrap_or(1))
                    .collect()
            },
        );
        let scores: Vec<f32> = array("tokenizer.ggml.scores").map_or_else(Vec::new, |a| {
            a.iter().map(|v| v.to_f32().unwrap_or(0.0)).collect()
        });
        let id_of = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        let flag = |key: &str, default: bool| match md.get(key) {
            Some(Value::Bool(b)) => *b,
            _ => default,
        };
        let spm = model == "llama";
        Ok(GgufVocab {
            pre: string("tokenizer.ggml.pre").unwrap_or_else(|| "default".to_string()),
            merges: strings("tokenizer.ggml.merges")?,
            bos_id: id_of("tokenizer.ggml.bos_token_id"),
            eos_id: id_of("tokenizer.ggml.eos_token_id"),
            unk_id: id_of("tokenizer.ggml.unknown_token_id"),
            // llama.cpp's defaults when a key is absent
            add_bos: flag("tokenizer.ggml.add_bos_token", spm),
            add_space_prefix: flag("tokenizer.ggml.add_space_prefix", spm),
            model,
            tokens,
            types,
            scores,
        })
    }

    /// Control (3) and user-defined (4) tokens are matched verbatim in text, before the
    /// model (and before SentencePiece's normalizer), as both llama.cpp and transformers do.
    fn added_tokens(&self) -> Vec<J> {
        self.tokens
            .iter()
            .zip(&self.types)
            .enumerate()
            .filter(|(_, (_, &ty))| ty == 3 || ty == 4)
            .map(|(i, (t, &ty))| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                       "rstrip": false, "normalized": false, "special": ty == 3})
            })
            .collect()
    }

    /// BOS before the text when the file says to add it (`tokenizer(text)` in transformers).
    fn bos_post_processor(&self) -> J {
        match (self.add_bos, self.bos_id) {
            (true, Some(b)) => {
                let bt = self.tokens.get(b as usize).cloned().unwrap_or_default();
                json!({"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": bt, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [{"SpecialToken": {"id": bt, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                {"Sequence": {"id": "B", "type_id": 1}}],
                       "special_tokens": {bt.clone(): {"id": bt, "ids": [b], "tokens": [bt]}}})
            }
            _ => J::Null,
        }
    }
}

/// The pre-tokenizer llama.cpp runs for `tokenizer.ggml.pre`, and whether BPE skips merging
/// words that are whole tokens (Llama 3).
fn byte_level_pre(pre: &str, path: &Path) -> Result<(J, bool)> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |re: &str| json!({"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false});
    Ok(match pre {
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
    })
}

fn bpe_model(v: &GgufVocab, merges: J, ignore_merges: bool, spm: bool) -> J {
    let mut vocab = Map::new();
    for (i, t) in v.tokens.iter().enumerate() {
        vocab.insert(t.clone(), J::from(i as u64));
    }
    let unk = spm
        .then(|| v.unk_id.and_then(|u| v.tokens.get(u as usize).cloned()))
        .flatten();
    json!({"type": "BPE", "dropout": null, "unk_token": unk,
           "continuing_subword_prefix": null, "end_of_word_suffix": null,
           "fuse_unk": spm, "byte_fallback": spm, "ignore_merges": ignore_merges,
           "vocab": vocab, "merges": merges})
}

/// A SentencePiece vocabulary as transformers' converter writes it for a slow Llama or Gemma
/// tokenizer, which is what llama.cpp computes: spaces as `▁` (with a `▁` before every run of
/// text between special tokens when the file asks for the dummy prefix), pieces merged
/// best-score first, characters outside the vocabulary as byte tokens.
fn spm_parts(v: &GgufVocab, path: &Path) -> Result<(J, J, J, J)> {
    if v.scores.len() != v.tokens.len() {
        return Err(LmError::format(
            path,
            format!(
                "metadata 'tokenizer.ggml.scores' holds {} scores for {} tokens",
                v.scores.len(),
                v.tokens.len()
            ),
        ));
    }
    let mut normalizers = Vec::new();
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if v.add_space_prefix {
        normalizers.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    normalizers.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}));
    Ok((
        bpe_model(v, J::from(spm_merges(v)), false, true),
        json!({"type": "Sequence", "normalizers": normalizers}),
        J::Null,
        json!({"type": "Sequence", "decoders": decoders}),
    ))
}

/// BPE merges equivalent to SentencePiece's (and llama.cpp's) scoring: every split of a
/// normal token into two tokens, ranked by the merged token's score, best first. llama.cpp
/// merges the best-scoring adjacent pair whose join is a token; a BPE over these merges does
/// the same (differing only where one token has two splits at once in one word, which then
/// resolve by rank rather than position).
fn spm_merges(v: &GgufVocab) -> Vec<J> {
    let id: std::collections::HashMap<&str, usize> = v
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    // (score of the merged token, its id, the split's byte offset)
    let mut found: Vec<(f32, usize, usize)> = Vec::new();
    for (i, t) in v.tokens.iter().enumerate() {
        if v.types.get(i).copied().unwrap_or(1) != 1 {
            continue;
        }
        for (k, _) in t.char_indices().skip(1) {
            if id.contains_key(&t[..k]) && id.contains_key(&t[k..]) {
                found.push((v.scores[i], i, k));
            }
        }
    }
    found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    found
        .into_iter()
        .map(|(_, i, k)| {
            let t = &v.tokens[i];
            json!([&t[..k], &t[k..]])
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::VersionedMagic;

    fn content(model: &str, tokens: &[&str], scores: usize) -> Content {
        let strings =
            |v: &[&str]| Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect());
        let mut metadata = std::collections::HashMap::new();
        metadata.insert(
            "tokenizer.ggml.model".to_string(),
            Value::String(model.into()),
        );
        metadata.insert("tokenizer.ggml.tokens".to_string(), strings(tokens));
        metadata.insert(
            "tokenizer.ggml.scores".to_string(),
            Value::Array((0..scores).map(|i| Value::F32(-(i as f32))).collect()),
        );
        metadata.insert("tokenizer.ggml.merges".to_string(), strings(&[]));
        Content {
            magic: VersionedMagic::GgufV3,
            metadata,
            tensor_infos: Default::default(),
            tensor_data_offset: 0,
        }
    }

    #[test]
    fn an_unknown_tokenizer_model_is_named_with_the_supported_ones() {
        let e = Tokenizer::from_gguf(&content("bert", &["a"], 1), Path::new("m.gguf"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m.gguf") && e.contains("'bert'") && e.contains("llama SentencePiece"),
            "{e}"
        );
    }

    #[test]
    fn sentencepiece_scores_must_cover_the_vocabulary() {
        let e = Tokenizer::from_gguf(
            &content("llama", &["<unk>", "a", "b"], 2),
            Path::new("m.gguf"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("tokenizer.ggml.scores") && e.contains("2 scores for 3 tokens"),
            "{e}"
        );
    }

    /// Pieces merge best score first: with "ab" scoring above "bc", "abc" splits as ab|c.
    #[test]
    fn sentencepiece_pieces_merge_best_score_first() {
        let tokens = ["<unk>", "\u{2581}", "a", "b", "c", "ab", "bc"];
        let mut c = content("llama", &tokens, tokens.len());
        c.metadata.insert(
            "tokenizer.ggml.scores".to_string(),
            Value::Array(
                [0.0f32, -1.0, -2.0, -3.0, -4.0, -0.5, -0.6]
                    .map(Value::F32)
                    .to_vec(),
            ),
        );
        c.metadata.insert(
            "tokenizer.ggml.add_space_prefix".to_string(),
            Value::Bool(false),
        );
        let t = Tokenizer::from_gguf(&c, Path::new("m.gguf")).unwrap();
        assert_eq!(t.encode("abc", false).unwrap(), vec![5, 4]);
        assert_eq!(t.encode("bcab", false).unwrap(), vec![6, 5]);
    }
}
