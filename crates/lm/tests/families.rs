//! Every family against transformers, from the committed fixtures of
//! `testdata/families/make_fixtures.sh` (small random models of each family's shape, saved as
//! a Hugging Face directory and converted to GGUF by llama.cpp's converter): the chat
//! template's text, the token ids, the hidden states of every layer at every position, and 20
//! greedy tokens (KV-cached decoding past the sliding window), from both file kinds.

use hd_lm::{Model, Positions, PromptFormat, Request};
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};

fn dir(family: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/families")
        .join(family)
}

/// What transformers gave for one family.
struct Reference {
    texts: Vec<String>,
    prompts: Vec<String>,
    ids: Vec<Vec<u32>>,
    /// `[L+1, n, d]` per prompt.
    hidden: Vec<(Vec<usize>, Vec<f32>)>,
    generated: Vec<Vec<u32>>,
    /// llama.cpp's own token ids of each text (SentencePiece fixtures only).
    llama_cpp_ids: Option<Vec<Vec<u32>>>,
    json: serde_json::Value,
}

/// An int64 tensor of the reference file as token ids.
fn ints(st: &SafeTensors, k: &str) -> Vec<u32> {
    st.tensor(k)
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
        .collect()
}

fn reference(family: &str) -> Reference {
    let d = dir(family);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("ref.json")).unwrap()).unwrap();
    let strings = |k: &str| -> Vec<String> {
        json[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let bytes = std::fs::read(d.join("ref.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let ints = |k: &str| ints(&st, k);
    let prompts = strings("prompts");
    let n = prompts.len();
    Reference {
        texts: strings("texts"),
        ids: (0..n).map(|i| ints(&format!("ids.{i}"))).collect(),
        generated: (0..n).map(|i| ints(&format!("gen.{i}"))).collect(),
        llama_cpp_ids: st
            .names()
            .iter()
            .any(|k| k.starts_with("lcpp_ids."))
            .then(|| (0..n).map(|i| ints(&format!("lcpp_ids.{i}"))).collect()),
        hidden: (0..n)
            .map(|i| {
                let t = st.tensor(&format!("hidden.{i}")).unwrap();
                let v = t
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                (t.shape().to_vec(), v)
            })
            .collect(),
        prompts,
        json,
    }
}

/// The study's prompt format: Qwen3 without thinking (the fixtures' texts were made so).
fn format() -> PromptFormat {
    PromptFormat {
        enable_thinking: Some(false),
        ..Default::default()
    }
}

/// Largest `|ours − ref| / |ref|` over the rows (positions) of every layer; rows from
/// `skip_after` on are left out (see the Mistral GGUF).
fn worst_relative(
    model: &Model,
    ids: &[u32],
    (shape, want): &(Vec<usize>, Vec<f32>),
    upto: usize,
) -> f64 {
    let (nl, n, d) = (shape[0], shape[1], shape[2]);
    assert_eq!(nl, model.config.num_layers + 1);
    assert_eq!(n, ids.len());
    let req = Request {
        capture_layers: (0..nl).collect(),
        capture_positions: Positions::All,
        interventions: vec![],
        logits: false,
    };
    let out = model.forward().run(&[ids], &req).unwrap();
    let mut worst = 0.0f64;
    for (l, got) in &out.captured {
        for p in 0..upto.min(n) {
            let a = &got[p * d..(p + 1) * d];
            let b = &want[(l * n + p) * d..(l * n + p + 1) * d];
            let diff: f64 = a
                .iter()
                .zip(b)
                .map(|(&x, &y)| ((x - y) as f64).powi(2))
                .sum();
            let norm: f64 = b.iter().map(|&y| (y as f64).powi(2)).sum();
            worst = worst.max((diff / norm.max(1e-30)).sqrt());
        }
    }
    worst
}

fn check(family: &str) {
    let r = reference(family);
    for (kind, path) in [
        ("hf", dir(family).join("hf")),
        ("gguf", dir(family).join("model.gguf")),
    ] {
        let model = Model::load(&path).unwrap_or_else(|e| panic!("{family} {kind}: {e}"));
        // llama.cpp's converter writes Mistral as "llama" without its sliding window (8 in the
        // fixture), so its GGUF matches transformers only where the window has not cut in.
        let upto = match (family, kind) {
            ("mistral", "gguf") => 8,
            _ => usize::MAX,
        };
        let mut worst = 0.0f64;
        for (i, p) in r.prompts.iter().enumerate() {
            let what = format!("{family} {kind} prompt {i}");
            assert_eq!(
                model.render(p, &format()).unwrap(),
                r.texts[i],
                "{what}: template"
            );
            let ids = model.encode_prompt(p, &format()).unwrap();
            assert_eq!(ids, r.ids[i], "{what}: token ids");
            if let (Some(lc), "gguf") = (&r.llama_cpp_ids, kind) {
                assert_eq!(ids, lc[i], "{what}: token ids of llama.cpp");
            }
            worst = worst.max(worst_relative(&model, &ids, &r.hidden[i], upto));
            if upto == usize::MAX {
                let g = model.generate(&[ids], 20, &[]).unwrap().remove(0);
                // transformers stops at its EOS; we stop at any end-of-turn token as well
                let stop = &model.tokenizer.stop_ids;
                let want: Vec<u32> = r.generated[i]
                    .iter()
                    .copied()
                    .take_while(|t| !stop.contains(t))
                    .collect();
                assert_eq!(g.tokens, want, "{what}: greedy tokens");
            }
        }
        eprintln!("{family} {kind}: worst relative error of a hidden state {worst:.2e}");
        assert!(
            worst < 1e-5,
            "{family} {kind}: hidden states {worst:.2e} off transformers"
        );
    }
}

#[test]
fn mistral_with_sliding_window_matches_transformers() {
    check("mistral");
}

#[test]
fn qwen3_matches_transformers() {
    check("qwen3");
}

#[test]
fn gemma2_matches_transformers() {
    check("gemma2");
}

#[test]
fn gemma3_matches_transformers() {
    check("gemma3");
}

#[test]
fn phi3_matches_transformers() {
    check("phi3");
}

/// SentencePiece vocabularies (GGUF `tokenizer.ggml.model = llama`), as real Mistral files
/// carry: a space before every run of text, pieces merged by score, bytes for the rest.
#[test]
fn mistral_with_a_sentencepiece_vocabulary_matches_transformers_and_llama_cpp() {
    check("mistral-spm");
}

/// Gemma's SentencePiece files turn the space prefix off.
#[test]
fn gemma2_with_a_sentencepiece_vocabulary_matches_transformers_and_llama_cpp() {
    check("gemma2-spm");
}

/// Mistral's GGUF, which has no window, does differ past it: the window is what the HF
/// directory's states depend on (a Llama block that ignored it would fail the test above).
#[test]
fn mistral_window_changes_states_past_it() {
    let r = reference("mistral");
    let model = Model::load(&dir("mistral").join("model.gguf")).unwrap();
    let i = 1; // the longest prompt
    let err = worst_relative(&model, &r.ids[i], &r.hidden[i], usize::MAX);
    assert!(
        err > 1e-3,
        "no window, yet {err:.2e} from the windowed states"
    );
}

/// Gemma's templates have no system role: a system prompt is an error naming the template's
/// reason, as in transformers.
#[test]
fn gemma_templates_refuse_a_system_turn() {
    for family in ["gemma2", "gemma3"] {
        let r = reference(family);
        let model = Model::load(&dir(family).join("hf")).unwrap();
        let fmt = PromptFormat {
            system: Some("Be brief.".into()),
            ..format()
        };
        let got = model.render("Hi", &fmt);
        let hf = r.json["system"].as_str().unwrap();
        match family {
            "gemma2" => {
                let e = got.unwrap_err().to_string();
                assert!(hf.starts_with("refused"), "{hf}");
                assert!(e.contains("System role not supported"), "{e}");
            }
            // Gemma 3 folds the system text into the first user turn
            _ => assert_eq!(hf, "accepted"),
        }
    }
}

/// Qwen3's thinking switch: left undefined, the template lets the model think (no empty
/// think block), as transformers' default; `Some(false)` is what the fixtures' texts used.
#[test]
fn qwen3_thinking_switch_follows_the_template() {
    let r = reference("qwen3");
    let model = Model::load(&dir("qwen3").join("hf")).unwrap();
    let fmt = PromptFormat::default();
    let text = model.render(&r.prompts[0], &fmt).unwrap();
    assert_eq!(text, r.json["thinking_default_text"].as_str().unwrap());
    assert!(!text.contains("<think>"));
    assert!(r.texts[0].ends_with("<think>\n\n</think>\n\n"));
}

/// The thinking switch is part of a Qwen3 file's prompt format (dumps made with it on and off
/// must not pair); for a template without the switch nothing is recorded.
#[test]
fn thinking_is_recorded_only_where_the_template_reads_it() {
    let qwen = Model::load(&dir("qwen3").join("hf")).unwrap();
    let fmt = |t| PromptFormat {
        enable_thinking: t,
        ..PromptFormat::default()
    };
    let on = qwen.describe_format(&fmt(Some(true)));
    let off = qwen.describe_format(&fmt(Some(false)));
    assert_eq!(off.as_deref(), Some("thinking off"));
    assert_ne!(on, off);
    assert_ne!(qwen.describe_format(&fmt(None)), off);
    let mistral = Model::load(&dir("mistral").join("hf")).unwrap();
    assert_eq!(mistral.describe_format(&fmt(Some(true))), None);
}

/// A copy of a fixture's Hugging Face directory with `config.json` edited.
fn edited_hf(family: &str, tmp: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let src = dir(family).join("hf");
    let dst = tmp.join(family);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let mut j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dst.join("config.json")).unwrap()).unwrap();
    edit(&mut j);
    std::fs::write(dst.join("config.json"), j.to_string()).unwrap();
    dst
}

fn load_err(path: &Path) -> String {
    // the config alone is enough to refuse: nothing of the weights is read
    let a = Model::read_config(path).unwrap_err().to_string();
    let b = Model::load(path).unwrap_err().to_string();
    assert_eq!(a, b);
    assert_eq!(a.lines().count(), 1, "{a}");
    a
}

const SUPPORTED: &str = "supported: llama, mistral, qwen2, qwen3, gemma2, gemma3, phi3";

#[test]
fn an_unknown_architecture_is_named_with_the_supported_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = edited_hf("qwen3", tmp.path(), |j| j["model_type"] = "falcon".into());
    let e = load_err(&hf);
    assert!(
        e.contains("model_type 'falcon'") && e.contains(SUPPORTED),
        "{e}"
    );
    // GGUF: general.architecture "qwen3" patched to "qwen9" (same length)
    let mut b = std::fs::read(dir("qwen3").join("model.gguf")).unwrap();
    let key = b"general.architecture";
    let at = b.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    let v = at + 4 + 8; // value type (u32), string length (u64)
    assert_eq!(&b[v..v + 5], b"qwen3");
    b[v + 4] = b'9';
    let g = tmp.path().join("qwen9.gguf");
    std::fs::write(&g, b).unwrap();
    let e = load_err(&g);
    assert!(
        e.contains("architecture 'qwen9'") && e.contains("gemma3, phi3"),
        "{e}"
    );
}

/// Config fields that change the computation and that we do not run are refused by name.
#[test]
fn config_fields_we_do_not_run_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "mistral",
            Box::new(|j| {
                j["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0})
            }),
            "rope_scaling type 'yarn'",
        ),
        (
            "qwen3",
            Box::new(|j| j["hidden_act"] = "gelu".into()),
            "hidden_act \"gelu\"",
        ),
        (
            "phi3",
            Box::new(|j| j["partial_rotary_factor"] = 0.5.into()),
            "partial_rotary_factor 0.5",
        ),
        (
            "gemma3",
            Box::new(|j| j["use_bidirectional_attention"] = true.into()),
            "use_bidirectional_attention",
        ),
        (
            "qwen3",
            Box::new(|j| j["attn_logit_softcapping"] = 30.0.into()),
            "'attn_logit_softcapping' in a qwen3 config",
        ),
        (
            "gemma2",
            Box::new(|j| j["layer_types"] = serde_json::json!(vec!["chunked_attention"; 4])),
            "layer type \"chunked_attention\"",
        ),
    ];
    for (i, (family, edit, want)) in cases.into_iter().enumerate() {
        let d = edited_hf(family, &tmp.path().join(i.to_string()), edit);
        let e = load_err(&d);
        assert!(e.contains(want), "{family}: {e}");
    }
}

/// A tensor the forward pass would skip (here an o_proj bias) is refused, naming it.
#[test]
fn a_tensor_we_would_ignore_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = edited_hf("qwen3", tmp.path(), |_| {});
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let bias = vec![0u8; 64 * 4];
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
    views.push((
        "model.layers.1.self_attn.o_proj.bias".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![64], &bias).unwrap(),
    ));
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(d.join("model.safetensors"), out).unwrap();
    let e = Model::load(&d).unwrap_err().to_string();
    assert!(
        e.contains("tensor 'model.layers.1.self_attn.o_proj.bias'"),
        "{e}"
    );
}

/// A key a config leaves out means transformers' default for the family (a config saved as a
/// diff from the defaults); one that is there, even as null, means what it says.
#[test]
fn absent_keys_take_the_family_defaults_of_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let strip = |j: &mut serde_json::Value| {
        let o = j.as_object_mut().unwrap();
        for k in [
            "attn_logit_softcapping",
            "final_logit_softcapping",
            "sliding_window",
            "layer_types",
            "query_pre_attn_scalar",
        ] {
            o.remove(k);
        }
    };
    let d = edited_hf("gemma2", &tmp.path().join("a"), strip);
    let f = Model::read_config(&d).unwrap().features;
    assert_eq!(f.attn_softcap, Some(50.0));
    assert_eq!(f.final_softcap, Some(30.0));
    assert_eq!(f.sliding_window, Some(4096));
    assert_eq!(f.query_pre_attn_scalar, Some(256.0));
    assert_eq!(f.sliding_layers, vec![true, false, true, false]);
    let d = edited_hf("gemma2", &tmp.path().join("b"), |j| {
        j["attn_logit_softcapping"] = serde_json::Value::Null;
        j["final_logit_softcapping"] = serde_json::Value::Null;
    });
    let f = Model::read_config(&d).unwrap().features;
    assert_eq!((f.attn_softcap, f.final_softcap), (None, None));
    // Mistral: the window is 4096 unless the config says null (v0.3)
    let d = edited_hf("mistral", &tmp.path().join("c"), |j| {
        j.as_object_mut().unwrap().remove("sliding_window");
    });
    assert_eq!(
        Model::read_config(&d).unwrap().features.sliding_window,
        Some(4096)
    );
    let d = edited_hf("mistral", &tmp.path().join("d"), |j| {
        j["sliding_window"] = serde_json::Value::Null;
    });
    assert_eq!(
        Model::read_config(&d).unwrap().features.sliding_window,
        None
    );
}

/// A multimodal Gemma 3 directory (4B and up: `model_type gemma3`, the text model's config
/// in `text_config` saved as a diff from the defaults, its tensors under
/// `language_model.model.`, a vision tower beside them) runs its text model: the fixture's
/// text model wrapped so gives transformers' states (transformers' multimodal class gives the
/// text model's states bit for bit on a text prompt; checked when the wrapping was written).
#[test]
fn a_multimodal_gemma3_directory_runs_its_text_model() {
    let tmp = tempfile::tempdir().unwrap();
    let d = edited_hf("gemma3", tmp.path(), |j| {
        let mut text = j.clone();
        let o = text.as_object_mut().unwrap();
        // left out as transformers leaves out defaults
        for k in [
            "rms_norm_eps",
            "rope_theta",
            "rope_local_base_freq",
            "tie_word_embeddings",
        ] {
            o.remove(k);
        }
        *j = serde_json::json!({
            "model_type": "gemma3",
            "architectures": ["Gemma3ForConditionalGeneration"],
            "text_config": text,
            "vision_config": {"model_type": "siglip_vision_model"},
        });
    });
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let probe = vec![0u8; 16 * 4];
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (format!("language_model.{n}"), v))
        .collect();
    views.push((
        "vision_tower.vision_model.post_layernorm.weight".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![16], &probe).unwrap(),
    ));
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(d.join("model.safetensors"), out).unwrap();
    let model = Model::load(&d).unwrap();
    assert_eq!(model.config.arch, hd_lm::Arch::Gemma3);
    let r = reference("gemma3");
    for (i, p) in r.prompts.iter().enumerate() {
        let ids = model.encode_prompt(p, &format()).unwrap();
        assert_eq!(ids, r.ids[i]);
        let e = worst_relative(&model, &ids, &r.hidden[i], usize::MAX);
        assert!(e < 1e-5, "prompt {i}: {e:.2e}");
    }
}

/// Text outside the SentencePiece fixtures' vocabulary (accents, emoji, CJK, runs of spaces,
/// tabs, newlines, special tokens inside text): the GGUF vocabulary gives llama.cpp's ids (which
/// are transformers' too), and decodes back as transformers does.
#[test]
fn sentencepiece_vocabularies_fall_back_to_bytes_as_llama_cpp_does() {
    for family in ["mistral-spm", "gemma2-spm"] {
        let r = reference(family);
        let bytes = std::fs::read(dir(family).join("ref.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let ints = |k: &str| ints(&st, k);
        let model = Model::load(&dir(family).join("model.gguf")).unwrap();
        let texts = r.json["extra_texts"].as_array().unwrap();
        let decoded = r.json["extra_decoded"].as_array().unwrap();
        for (i, t) in texts.iter().enumerate() {
            let t = t.as_str().unwrap();
            let ids = model.tokenizer.encode(t, false).unwrap();
            assert_eq!(ids, ints(&format!("lcpp_extra.{i}")), "{family}: {t:?}");
            assert_eq!(ids, ints(&format!("hf_extra.{i}")), "{family}: {t:?}");
            let bytes = ids.iter().any(|&id| {
                let piece = model.tokenizer.inner().id_to_token(id).unwrap_or_default();
                piece.starts_with("<0x")
            });
            assert!(
                bytes || i != 0,
                "{family}: the first text needs byte tokens"
            );
            assert_eq!(
                model.tokenizer.decode(&ids, true).unwrap(),
                decoded[i].as_str().unwrap(),
                "{family}: decoding {t:?}"
            );
        }
    }
}
