//! A corrupt model is an error at load (never NaN activations with exit 0), and no
//! reader of hd-lm (GGUF, config.json, chat template) panics or allocates far beyond its
//! input on thousands of seeded mutations of valid files.

use std::path::PathBuf;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use hd_lm::{ChatTemplate, Message, Model};

use hd_testkit::fuzz::{fuzz, no_error_backtraces, Counting, Xorshift};

#[global_allocator]
static A: Counting = Counting;

// ---------------------------------------------------------------------------------------
// A tiny but complete GGUF model (F32, byte-level tokenizer of single characters).

const VOCAB: usize = 16;

fn tiny_gguf() -> Vec<u8> {
    let (d, ff, heads, kv, layers) = (8usize, 16usize, 2u32, 1u32, 2u32);
    let hd = d / heads as usize;
    let mut rng = Xorshift(7);
    let mut t = |rows: usize, cols: usize| {
        let data: Vec<f32> = (0..rows * cols)
            .map(|_| (rng.below(2000) as f32 - 1000.0) / 4000.0)
            .collect();
        let shape: Vec<usize> = if rows == 1 {
            vec![cols]
        } else {
            vec![rows, cols]
        };
        let x = Tensor::from_vec(data, shape, &Device::Cpu).unwrap();
        QTensor::quantize(&x, GgmlDType::F32).unwrap()
    };
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), t(VOCAB, d)),
        ("output_norm.weight".into(), t(1, d)),
    ];
    for i in 0..layers {
        let q = heads as usize * hd;
        let k = kv as usize * hd;
        for (name, r, c) in [
            ("attn_norm.weight", 1, d),
            ("attn_q.weight", q, d),
            ("attn_k.weight", k, d),
            ("attn_v.weight", k, d),
            ("attn_output.weight", d, q),
            ("ffn_norm.weight", 1, d),
            ("ffn_gate.weight", ff, d),
            ("ffn_up.weight", ff, d),
            ("ffn_down.weight", d, ff),
        ] {
            tensors.push((format!("blk.{i}.{name}"), t(r, c)));
        }
    }
    let tokens: Vec<Value> = [
        "<|endoftext|>",
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
        "g",
        "h",
        "i",
        "j",
        "k",
        "l",
        "m",
        "n",
        "ab",
    ]
    .iter()
    .map(|s| Value::String(s.to_string()))
    .collect();
    assert_eq!(tokens.len(), VOCAB);
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.embedding_length", Value::U32(d as u32)),
        ("llama.feed_forward_length", Value::U32(ff as u32)),
        ("llama.block_count", Value::U32(layers)),
        ("llama.attention.head_count", Value::U32(heads)),
        ("llama.attention.head_count_kv", Value::U32(kv)),
        ("llama.context_length", Value::U32(64)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        (
            "tokenizer.ggml.merges",
            Value::Array(vec![Value::String("a b".into())]),
        ),
        ("tokenizer.ggml.eos_token_id", Value::U32(0)),
        (
            "tokenizer.chat_template",
            Value::String(TEMPLATE.to_string()),
        ),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md_refs, &t_refs).unwrap();
    out.into_inner()
}

const TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Where the metadata and tensor infos end (mutations favour them).
fn header_len(b: &[u8]) -> usize {
    let c = gguf_file::Content::read(&mut std::io::Cursor::new(b)).unwrap();
    c.tensor_data_offset as usize
}

/// `attention.head_count = 0` divided by zero in the GGUF config reader.
#[test]
fn zero_heads_is_an_error_not_a_panic() {
    no_error_backtraces();
    let dir = tempfile::tempdir().unwrap();
    let good = tiny_gguf();
    let p = dir.path().join("m.gguf");
    std::fs::write(&p, &good).unwrap();
    Model::load(&p).unwrap();
    let bad = patch_metadata_u32(&good, "llama.attention.head_count", 0);
    std::fs::write(&p, &bad).unwrap();
    let e = std::panic::catch_unwind(|| Model::load(&p).err().map(|e| e.to_string()))
        .expect("no panic")
        .expect("an error");
    assert!(
        e.contains("m.gguf") && e.contains("num_attention_heads 0"),
        "{e}"
    );
}

/// Thousands of mutations of a valid GGUF model, loaded in full.
#[test]
fn gguf_reader_never_panics_on_mutations() {
    no_error_backtraces();
    let dir = tempfile::tempdir().unwrap();
    let good = tiny_gguf();
    let hot = header_len(&good);
    let p = dir.path().join("m.gguf");
    fuzz("gguf", &good, hot, 3000, 64, 1 << 20, |b| {
        std::fs::write(&p, b).unwrap();
        Model::load(&p).is_ok()
    });
}

/// Mutations of a Hugging Face config.json.
#[test]
fn config_json_never_panics_on_mutations() {
    no_error_backtraces();
    let dir = tempfile::tempdir().unwrap();
    let good = br#"{"model_type": "llama", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": true, "head_dim": 4, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}"#;
    let p = dir.path().join("config.json");
    std::fs::write(&p, good).unwrap();
    Model::read_config(dir.path()).unwrap();
    fuzz("config.json", good, good.len(), 3000, 64, 1 << 20, |b| {
        std::fs::write(&p, b).unwrap();
        Model::read_config(dir.path()).is_ok()
    });
}

/// Mutations of a chat template, parsed and rendered.
#[test]
fn chat_template_never_panics_on_mutations() {
    no_error_backtraces();
    let msgs = [Message {
        role: "user".into(),
        content: "hi".into(),
    }];
    fuzz(
        "chat template",
        TEMPLATE.as_bytes(),
        TEMPLATE.len(),
        3000,
        64,
        1 << 20,
        |b| {
            let Ok(s) = std::str::from_utf8(b) else {
                return false;
            };
            ChatTemplate::new(s.to_string())
                .and_then(|t| t.render(&msgs, true, Some("<s>"), Some("</s>")))
                .is_ok()
        },
    );
}

// ---------------------------------------------------------------------------------------
// The real model, corrupted in the ways the issue found.

fn real_model() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        return Some(p);
    }
    // In CI a missing model is a broken setup, not a reason to pass.
    assert!(
        std::env::var_os("CI").is_none(),
        "{} not found and CI is set: run `make setup`",
        p.display()
    );
    eprintln!("SKIPPED: {} not found (run `make setup`)", p.display());
    None
}

/// The offset of the value of metadata `key` (a length-prefixed key, then a u32 type).
fn metadata_value_at(b: &[u8], key: &str) -> usize {
    let mut pat = (key.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(key.as_bytes());
    let i = b
        .windows(pat.len())
        .position(|w| w == pat)
        .unwrap_or_else(|| panic!("no metadata {key}"));
    i + pat.len() + 4
}

fn patch_metadata_u32(b: &[u8], key: &str, v: u32) -> Vec<u8> {
    let mut out = b.to_vec();
    let at = metadata_value_at(b, key);
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
    out
}

fn patch_metadata_f32(b: &[u8], key: &str, v: f32) -> Vec<u8> {
    let mut out = b.to_vec();
    let at = metadata_value_at(b, key);
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
    out
}

/// Byte range of a tensor's data, and the offset of its info's `offset` field.
fn tensor_at(b: &[u8], name: &str) -> (std::ops::Range<usize>, usize) {
    let c = gguf_file::Content::read(&mut std::io::Cursor::new(b)).unwrap();
    let info = &c.tensor_infos[name];
    let start = (c.tensor_data_offset + info.offset) as usize;
    let n = info.shape.elem_count() / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
    let mut pat = (name.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(name.as_bytes());
    let i = b.windows(pat.len()).position(|w| w == pat).unwrap() + pat.len();
    let n_dims = u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
    let offset_field = i + 4 + 8 * n_dims + 4;
    (start..start + n, offset_field)
}

/// Each corruption is a load error naming the file and what is wrong.
#[test]
fn corrupt_model_is_a_load_error() {
    no_error_backtraces();
    let Some(path) = real_model() else { return };
    let good = std::fs::read(&path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (norm, _) = tensor_at(&good, "blk.3.attn_norm.weight");
    let (_, q_offset_field) = tensor_at(&good, "blk.3.attn_q.weight");
    let k_offset = {
        let c = gguf_file::Content::read(&mut std::io::Cursor::new(&good)).unwrap();
        c.tensor_infos["blk.3.attn_k.weight"].offset
    };
    type Patch = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Patch, &[&str])> = vec![
        (
            "random bytes in a tensor",
            Box::new(move |b: &mut Vec<u8>| {
                for x in &mut b[norm.clone()] {
                    *x = 0xff;
                }
            }),
            &[
                "tensor 'model.layers.3.input_layernorm.weight'",
                "not finite",
            ],
        ),
        (
            "rope.freq_base NaN",
            Box::new(|b: &mut Vec<u8>| {
                *b = patch_metadata_f32(b, "llama.rope.freq_base", f32::NAN);
            }),
            &["rope_theta", "NaN"],
        ),
        (
            "negative rms epsilon",
            Box::new(|b: &mut Vec<u8>| {
                *b = patch_metadata_f32(b, "llama.attention.layer_norm_rms_epsilon", -1e-5);
            }),
            &["rms_norm_eps is -0.0000099"],
        ),
        (
            "head_count 0",
            Box::new(|b: &mut Vec<u8>| {
                *b = patch_metadata_u32(b, "llama.attention.head_count", 0);
            }),
            &["num_attention_heads 0"],
        ),
        (
            "overlapping tensors",
            Box::new(move |b: &mut Vec<u8>| {
                b[q_offset_field..q_offset_field + 8].copy_from_slice(&k_offset.to_le_bytes());
            }),
            &["overlap", "blk.3.attn_"],
        ),
    ];
    for (name, patch, needles) in cases {
        let mut b = good.clone();
        patch(&mut b);
        let p = dir.path().join("bad.gguf");
        std::fs::write(&p, &b).unwrap();
        let e = match Model::load(&p) {
            Ok(_) => panic!("{name}: loaded"),
            Err(e) => e.to_string(),
        };
        assert!(e.starts_with(&p.display().to_string()), "{name}: {e}");
        for n in needles {
            assert!(e.contains(n), "{name}: {e:?} lacks {n:?}");
        }
    }
}

/// A broken chat template names the model file.
#[test]
fn broken_template_names_the_model() {
    no_error_backtraces();
    let dir = tempfile::tempdir().unwrap();
    let good = tiny_gguf();
    let mut bad = good.clone();
    // `{% for` with its `%}` replaced: a syntax error of the same length.
    let at = bad.windows(5).position(|w| w == b"{% fo").unwrap();
    bad[at + 1] = b'{';
    let p = dir.path().join("tmpl.gguf");
    std::fs::write(&p, &bad).unwrap();
    let e = Model::load(&p).expect_err("an error").to_string();
    assert!(e.starts_with(&p.display().to_string()), "{e}");
    assert!(e.contains("chat_template"), "{e}");
}

/// A tiny Hugging Face directory: config.json, a 16-token tokenizer.json and
/// model.safetensors (F32, the same shapes as the GGUF above). Returns the weights' bytes.
fn write_tiny_hf(dir: &std::path::Path) -> Vec<u8> {
    let (d, ff, q, kv, layers) = (8usize, 16usize, 8usize, 4usize, 2usize);
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"model_type": "llama", "hidden_size": {d}, "intermediate_size": {ff}, "num_hidden_layers": {layers}, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": {VOCAB}, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": true}}"#
        ),
    )
    .unwrap();
    let vocab: serde_json::Map<String, serde_json::Value> = "abcdefghijklmnop"
        .chars()
        .enumerate()
        .map(|(i, c)| (c.to_string(), serde_json::json!(i)))
        .collect();
    let tj = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    });
    std::fs::write(dir.join("tokenizer.json"), tj.to_string()).unwrap();
    let mut rng = Xorshift(11);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>| {
        let n: usize = shape.iter().product();
        let bytes: Vec<u8> = (0..n)
            .flat_map(|_| ((rng.below(2000) as f32 - 1000.0) / 4000.0).to_le_bytes())
            .collect();
        tensors.push((name, shape, bytes));
    };
    add("model.embed_tokens.weight".into(), vec![VOCAB, d]);
    add("model.norm.weight".into(), vec![d]);
    for i in 0..layers {
        let p = |t: &str| format!("model.layers.{i}.{t}");
        add(p("input_layernorm.weight"), vec![d]);
        add(p("self_attn.q_proj.weight"), vec![q, d]);
        add(p("self_attn.k_proj.weight"), vec![kv, d]);
        add(p("self_attn.v_proj.weight"), vec![kv, d]);
        add(p("self_attn.o_proj.weight"), vec![d, q]);
        add(p("post_attention_layernorm.weight"), vec![d]);
        add(p("mlp.gate_proj.weight"), vec![ff, d]);
        add(p("mlp.up_proj.weight"), vec![ff, d]);
        add(p("mlp.down_proj.weight"), vec![d, ff]);
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, b)| {
            let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .unwrap();
            (n.clone(), v)
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), &bytes).unwrap();
    bytes
}

/// Mutations of a Hugging Face model's safetensors weights, loaded in full.
#[test]
fn hf_safetensors_loader_never_panics_on_mutations() {
    no_error_backtraces();
    let dir = tempfile::tempdir().unwrap();
    let good = write_tiny_hf(dir.path());
    let header = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let p = dir.path().join("model.safetensors");
    fuzz("hf safetensors", &good, header, 2000, 64, 1 << 20, |b| {
        std::fs::write(&p, b).unwrap();
        Model::load(p.parent().unwrap()).is_ok()
    });
}
