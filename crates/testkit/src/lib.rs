//! Tiny seeded models for tests (of this crate and of the tools built on it): a few blocks
//! of width 32 with random weights, a byte-level tokenizer and a ChatML template, so a whole
//! train → export → reload cycle runs in well under a second; and what the tests of several
//! crates share: [`cli`] (run a tool's binary), [`fuzz`] (mutation testing of readers with a
//! counting allocator), [`gguf`] (byte patches of a GGUF file), [`lxt`] (the lxt reference
//! files).

pub mod cli;
pub mod fuzz;
pub mod gguf;
pub mod lxt;

use hd_lm::{Arch, Config, Weights};
use hd_rng::SplitMix64;

/// A 3-block config of width 32 (4 heads, 2 kv heads) and the given vocabulary.
pub fn tiny_config(arch: Arch, vocab: usize, tie: bool) -> Config {
    Config {
        arch,
        hidden_size: 32,
        intermediate_size: 48,
        num_layers: 3,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        vocab_size: vocab,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        rope_scaling: None,
        max_position_embeddings: 256,
        tie_word_embeddings: tie,
        features: Default::default(),
    }
}

/// Seeded weights: uniform values, norm gains near 1, biases for Qwen2, an untied head when
/// the config says so.
pub fn tiny_weights(cfg: &Config, seed: u64) -> Weights {
    let mut rng = SplitMix64::new(seed);
    Weights::from_fn(cfg, |name| {
        let (d, ff, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim);
        let (q, kv) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
        let field = name.rsplit('.').nth(1).unwrap_or("");
        let is_bias = name.ends_with(".bias");
        let (shape, scale, offset): (Vec<usize>, f32, f32) = match field {
            "embed_tokens" => (vec![cfg.vocab_size, d], 1.0, 0.0),
            "lm_head" if !cfg.tie_word_embeddings => (vec![cfg.vocab_size, d], 0.3, 0.0),
            "lm_head" => return None,
            "input_layernorm" | "post_attention_layernorm" | "norm" => (vec![d], 0.2, 1.0),
            // Qwen3's per-head norms, when the config has them
            "q_norm" | "k_norm" => (vec![hd], 0.2, 1.0),
            // Gemma's sandwich norms (stored as w of 1 + w), when the config has them
            "pre_feedforward_layernorm" | "post_feedforward_layernorm" => (vec![d], 0.2, 0.0),
            "q_proj" if is_bias => (vec![q], 0.3, 0.0),
            "k_proj" | "v_proj" if is_bias && cfg.arch == Arch::Qwen2 => (vec![kv], 0.3, 0.0),
            "k_proj" | "v_proj" if is_bias => return None,
            "q_proj" => (vec![q, d], 0.35, 0.0),
            "k_proj" | "v_proj" => (vec![kv, d], 0.35, 0.0),
            "o_proj" => (vec![d, q], 0.3, 0.0),
            "gate_proj" | "up_proj" => (vec![ff, d], 0.3, 0.0),
            "down_proj" => (vec![d, ff], 0.25, 0.0),
            _ => return None,
        };
        if is_bias && cfg.arch != Arch::Qwen2 {
            return None;
        }
        let n = shape.iter().product();
        let v = (0..n)
            .map(|_| offset + scale * (rng.next_f64() * 2.0 - 1.0) as f32)
            .collect();
        Some((shape, v))
    })
    .expect("tiny weights are complete")
}

/// The chat template of the tiny fixture: ChatML with a default system message, as SmolLM2's.
pub const TINY_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are tiny.<|im_end|>\n' }}{% endif %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Special tokens of the tiny tokenizer, ids 0, 1, 2; bytes follow at 3..259.
pub const TINY_SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Vocabulary of the tiny tokenizer (3 specials, 256 bytes, 1 unused id).
pub const TINY_VOCAB: usize = 260;

/// GPT-2's byte-to-character map of byte-level BPE.
fn byte_chars() -> Vec<char> {
    let printable: Vec<u32> = ('!' as u32..='~' as u32)
        .chain('¡' as u32..='¬' as u32)
        .chain('®' as u32..='ÿ' as u32)
        .collect();
    let mut chars = vec!['\0'; 256];
    let mut extra = 0;
    for b in 0..256u32 {
        if printable.contains(&b) {
            chars[b as usize] = char::from_u32(b).expect("valid");
        } else {
            chars[b as usize] = char::from_u32(256 + extra).expect("valid");
            extra += 1;
        }
    }
    chars
}

/// `tokenizer.json` of a byte-level BPE without merges: every byte is a token.
pub fn tiny_tokenizer_json() -> serde_json::Value {
    use serde_json::json;
    let mut vocab = serde_json::Map::new();
    for (i, s) in TINY_SPECIALS.iter().enumerate() {
        vocab.insert(s.to_string(), json!(i));
    }
    for (b, c) in byte_chars().into_iter().enumerate() {
        vocab.insert(c.to_string(), json!(b + 3));
    }
    let added: Vec<serde_json::Value> = TINY_SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    })
}

/// Writes a complete tiny Hugging Face model directory (config, weights, byte-level
/// tokenizer, ChatML template) that `hd_lm::Model::load` and `transformers` both read.
pub fn write_tiny_model(
    dir: &std::path::Path,
    arch: Arch,
    tie: bool,
    seed: u64,
) -> hd_train::Result<()> {
    use hd_train::TrainError;
    std::fs::create_dir_all(dir).map_err(|error| TrainError::Io {
        path: dir.into(),
        action: "cannot create",
        error,
    })?;
    let tj = serde_json::to_string(&tiny_tokenizer_json()).expect("serialisable");
    hd_formats::atomic::write_atomic(&dir.join("tokenizer.json"), |w| w.write_all(tj.as_bytes()))?;
    let tc = serde_json::json!({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": TINY_TEMPLATE});
    hd_formats::atomic::write_atomic(&dir.join("tokenizer_config.json"), |w| {
        w.write_all(tc.to_string().as_bytes())
    })?;
    let tok = hd_lm::Tokenizer::from_hf_dir(dir)?;
    let template = hd_lm::ChatTemplate::new(TINY_TEMPLATE.to_string())?;
    let cfg = tiny_config(arch, TINY_VOCAB, tie);
    let w = tiny_weights(&cfg, seed);
    hd_train::export::write_model_files(
        dir,
        &hd_train::export::ExportParts {
            config: &cfg,
            tokenizer: &tok,
            template: Some(&template),
            source_dir: None,
            metadata: Default::default(),
        },
        w,
    )
}

/// The workspace root (where `testdata/` and `models/` are).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The default model of `make setup`, from the workspace root. Missing: `None` with a
/// SKIPPED line, or a panic when the `CI` variable is set (a broken setup must not pass).
pub fn default_model() -> Option<std::path::PathBuf> {
    let root = repo_root();
    present_or_skip(
        &root.join("models/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "run `make setup`",
    )
}

/// `path` when it exists; otherwise `None` with a SKIPPED line, or a panic under `CI`.
pub fn present_or_skip(path: &std::path::Path, hint: &str) -> Option<std::path::PathBuf> {
    if path.exists() {
        return Some(path.to_path_buf());
    }
    if std::env::var_os("CI").is_some() {
        panic!("{} not found under CI ({hint})", path.display());
    }
    eprintln!("SKIPPED: {} not found ({hint})", path.display());
    None
}

/// The Python of the transformers oracle (`make oracle`): `HD_ORACLE_PYTHON` or
/// `~/.cache/hd-oracle/bin/python`. Missing: `None` with a SKIPPED line naming why (also
/// under CI: the oracle is a large download that may fail).
pub fn oracle_python() -> Option<std::path::PathBuf> {
    let p = match std::env::var_os("HD_ORACLE_PYTHON") {
        Some(p) => std::path::PathBuf::from(p),
        None => {
            std::path::PathBuf::from(std::env::var_os("HOME")?).join(".cache/hd-oracle/bin/python")
        }
    };
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: no transformers oracle at {} (run `make oracle`)",
            p.display()
        );
        None
    }
}
