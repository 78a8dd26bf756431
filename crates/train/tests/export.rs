//! The Hugging Face export: hd-lm reloads it exactly, and transformers (where the oracle
//! environment exists) computes the same hidden states from it.

use hd_grad::diff::{DiffModel, Method, Module};
use hd_lm::{Arch, Model, Positions, PromptFormat, Request};
use hd_testkit::{write_tiny_model, TINY_VOCAB};
use hd_train::export::{write_model_files, ExportParts, Staging};
use std::path::{Path, PathBuf};
use std::process::Command;

fn prompts() -> Vec<&'static str> {
    vec!["Hello there", "How do I bake bread?", "x"]
}

/// Last-position hidden states of every layer from hd-lm, `[layer][prompt][d]`.
fn ours(m: &Model, prompts: &[&str]) -> (Vec<Vec<u32>>, Vec<Vec<Vec<f32>>>) {
    let ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| m.encode_prompt(p, &PromptFormat::default()).unwrap())
        .collect();
    let l = m.config.num_layers;
    let d = m.config.hidden_size;
    let refs: Vec<&[u32]> = ids.iter().map(|s| s.as_slice()).collect();
    let out = m
        .forward()
        .run(
            &refs,
            &Request {
                capture_layers: (0..=l).collect(),
                capture_positions: Positions::Last,
                interventions: vec![],
                logits: false,
            },
        )
        .unwrap();
    let states = out
        .captured
        .iter()
        .map(|(_, v)| v.chunks(d).map(|c| c.to_vec()).collect())
        .collect();
    (ids, states)
}

const HF_SCRIPT: &str = r#"
import sys, json, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
d, prompts = sys.argv[1], json.loads(sys.argv[2])
tok = AutoTokenizer.from_pretrained(d)
m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
out = {"ids": [], "hidden": []}
with torch.no_grad():
    for p in prompts:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=True, add_generation_prompt=True)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        h = m.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        out["ids"].append(list(map(int, ids)))
        out["hidden"].append([x[0, -1].tolist() for x in h])
print(json.dumps(out))
"#;

/// Runs transformers on an exported directory: token ids and last-position hidden states.
fn transformers(py: &Path, dir: &Path, prompts: &[&str]) -> (Vec<Vec<u32>>, Vec<Vec<Vec<f32>>>) {
    let out = Command::new(py)
        .arg("-c")
        .arg(HF_SCRIPT)
        .arg(dir)
        .arg(serde_json::to_string(prompts).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "transformers failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids = serde_json::from_value(j["ids"].clone()).unwrap();
    let hidden: Vec<Vec<Vec<f32>>> = serde_json::from_value(j["hidden"].clone()).unwrap();
    // [prompt][layer][d] -> [layer][prompt][d]
    let nl = hidden[0].len();
    let by_layer = (0..nl)
        .map(|l| hidden.iter().map(|p| p[l].clone()).collect())
        .collect();
    (ids, by_layer)
}

fn max_abs_diff(a: &[Vec<Vec<f32>>], b: &[Vec<Vec<f32>>]) -> f32 {
    let mut worst = 0.0f32;
    for (la, lb) in a.iter().zip(b) {
        for (pa, pb) in la.iter().zip(lb) {
            for (x, y) in pa.iter().zip(pb) {
                worst = worst.max((x - y).abs());
            }
        }
    }
    worst
}

/// A tiny model with trained-looking (non-zero) adapters, merged and exported.
fn export_adapted(src: &Path, out: &Path) -> Model {
    let m = Model::load(src).unwrap();
    let mut dm = DiffModel::new(m.config.clone(), m.weights.clone()).unwrap();
    dm.make_trainable(
        &Method::Lora {
            rank: 2,
            alpha: 2.0,
            modules: Module::ALL.to_vec(),
        },
        1..m.config.num_layers,
        3,
    )
    .unwrap();
    for (i, (_, v)) in dm.trainable().iter().enumerate() {
        let n = v.elem_count();
        let vals: Vec<f32> = (0..n)
            .map(|k| ((k * 7 + i * 13) % 11) as f32 * 0.02 - 0.1)
            .collect();
        v.set(&candle_core::Tensor::from_vec(vals, v.dims(), &candle_core::Device::Cpu).unwrap())
            .unwrap();
    }
    let merged = dm.merged_weights().unwrap();
    let staging = Staging::new(out).unwrap();
    write_model_files(
        staging.path(),
        &ExportParts {
            config: &m.config,
            tokenizer: &m.tokenizer,
            template: m.template.as_ref(),
            source_dir: Some(src),
            metadata: Default::default(),
        },
        merged.clone(),
    )
    .unwrap();
    staging.commit().unwrap();
    Model::from_parts(m.config, merged, m.tokenizer, m.template)
}

#[test]
fn tiny_export_reloads_exactly() {
    for (arch, tie) in [(Arch::Llama, true), (Arch::Qwen2, false)] {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write_tiny_model(&src, arch, tie, 5).unwrap();
        let out = tmp.path().join("out");
        let want = export_adapted(&src, &out);
        let got = Model::load(&out).unwrap();
        assert_eq!(got.config, want.config);
        assert_eq!(got.config.vocab_size, TINY_VOCAB);
        assert_eq!(got.weights.embed, want.weights.embed);
        assert_eq!(got.weights.lm_head, want.weights.lm_head);
        for (a, b) in got.weights.layers.iter().zip(&want.weights.layers) {
            assert_eq!(a.wqkv, b.wqkv);
            assert_eq!(a.bqkv, b.bqkv);
            assert_eq!(a.wo, b.wo);
            assert_eq!(a.w_gate_up, b.w_gate_up);
            assert_eq!(a.w_down, b.w_down);
            assert_eq!(a.attn_norm, b.attn_norm);
            assert_eq!(a.mlp_norm, b.mlp_norm);
        }
        assert_eq!(got.tokenizer.stop_ids, want.tokenizer.stop_ids);
        for p in prompts() {
            let f = PromptFormat::default();
            assert_eq!(got.render(p, &f).unwrap(), want.render(p, &f).unwrap());
            assert_eq!(
                got.encode_prompt(p, &f).unwrap(),
                want.encode_prompt(p, &f).unwrap()
            );
        }
        // Nothing else left beside the export.
        let names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}

#[test]
fn staging_refuses_a_foreign_directory_and_replaces_only_its_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mine");
    std::fs::create_dir(&out).unwrap();
    hd_formats::atomic::write_atomic(&out.join("notes.txt"), |w| w.write_all(b"x")).unwrap();
    let e = Staging::new(&out).err().unwrap().to_string();
    assert!(e.contains("was not written by safety-tune"), "{e}");
    // An earlier export (it has the marker): the files this export writes replace their
    // namesakes; the user's notes, a subfolder and other tools' files stay.
    let marker = hd_train::export::MARKER;
    hd_formats::atomic::write_atomic(&out.join(marker), |w| w.write_all(b"{}")).unwrap();
    hd_formats::atomic::write_atomic(&out.join("model.safetensors"), |w| w.write_all(b"old"))
        .unwrap();
    std::fs::create_dir(out.join("eval")).unwrap();
    std::fs::write(out.join("eval/answers.csv"), b"id\n").unwrap();
    let s = Staging::new(&out).unwrap();
    for (n, b) in [
        ("model.safetensors", "new"),
        ("new.txt", "y"),
        (marker, "{\"v\":1}"),
    ] {
        hd_formats::atomic::write_atomic(&s.path().join(n), |w| w.write_all(b.as_bytes())).unwrap();
    }
    s.commit().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["eval", "model.safetensors", "new.txt", "notes.txt", marker]
    );
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        b"new"
    );
    assert_eq!(std::fs::read(out.join(marker)).unwrap(), b"{\"v\":1}");
    assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"x");
    assert_eq!(
        std::fs::read(out.join("eval/answers.csv")).unwrap(),
        b"id\n"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "no temporary folders left"
    );
    // A dropped (uncommitted) staging leaves nothing.
    let out2 = tmp.path().join("never");
    drop(Staging::new(&out2).unwrap());
    assert!(!out2.exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn tiny_export_matches_transformers() {
    let Some(py) = hd_testkit::oracle_python() else {
        return;
    };
    for (arch, tie) in [(Arch::Llama, true), (Arch::Qwen2, false)] {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write_tiny_model(&src, arch, tie, 6).unwrap();
        let out = tmp.path().join("out");
        export_adapted(&src, &out);
        let reloaded = Model::load(&out).unwrap();
        let (ids, hs) = ours(&reloaded, &prompts());
        let (hf_ids, hf) = transformers(&py, &out, &prompts());
        assert_eq!(ids, hf_ids, "{arch:?}: token ids differ from transformers'");
        let worst = max_abs_diff(&hs, &hf);
        eprintln!("{arch:?}: max |ours - transformers| over all layers {worst:.2e}");
        assert!(worst < 1e-4, "{arch:?}: hidden states differ by {worst}");
    }
}

/// The family fixtures (testdata/families): random models of each family's shape.
const FAMILIES: [&str; 7] = [
    "mistral",
    "qwen3",
    "gemma2",
    "gemma3",
    "phi3",
    "mistral-spm",
    "gemma2-spm",
];

fn family_dir(f: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/families")
        .join(f)
        .join("hf")
}

/// Every family exports from its Hugging Face directory (its config carried over, the
/// family's own tensor names: Phi-3's fused projections, Gemma's sandwich norms stored as
/// `w` of `1 + w`, q/k norms) and reloads as the same model: every weight equal, every
/// hidden state bit-identical.
#[test]
fn every_family_exports_from_its_directory_and_reloads_exactly() {
    for fam in FAMILIES {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let want = export_adapted(&family_dir(fam), &out);
        let got = Model::load(&out).unwrap();
        assert_eq!(got.config, want.config, "{fam}: config");
        assert_eq!(got.weights.embed, want.weights.embed, "{fam}: embed");
        assert_eq!(got.weights.lm_head, want.weights.lm_head, "{fam}: head");
        assert_eq!(got.weights.final_norm, want.weights.final_norm, "{fam}");
        for (a, b) in got.weights.layers.iter().zip(&want.weights.layers) {
            assert_eq!(a.wqkv, b.wqkv, "{fam}");
            assert_eq!(a.wo, b.wo, "{fam}");
            assert_eq!(a.w_gate_up, b.w_gate_up, "{fam}");
            assert_eq!(a.w_down, b.w_down, "{fam}");
            assert_eq!(a.attn_norm, b.attn_norm, "{fam}");
            assert_eq!(a.mlp_norm, b.mlp_norm, "{fam}");
            assert_eq!(a.extra, b.extra, "{fam}: family norms");
        }
        let (ids_a, a) = ours(&got, &prompts());
        let (ids_b, b) = ours(&want, &prompts());
        assert_eq!(ids_a, ids_b, "{fam}: token ids");
        assert_eq!(max_abs_diff(&a, &b), 0.0, "{fam}: states after reloading");
    }
}

/// transformers reads every family's export as the model we trained.
#[test]
fn every_family_export_matches_transformers() {
    let Some(py) = hd_testkit::oracle_python() else {
        return;
    };
    for fam in FAMILIES {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        export_adapted(&family_dir(fam), &out);
        let reloaded = Model::load(&out).unwrap();
        let (ids, hs) = ours(&reloaded, &prompts());
        let (hf_ids, hf) = transformers(&py, &out, &prompts());
        assert_eq!(ids, hf_ids, "{fam}: token ids differ from transformers'");
        let worst = max_abs_diff(&hs, &hf);
        eprintln!("{fam}: max |ours - transformers| over all layers {worst:.2e}");
        assert!(worst < 1e-4, "{fam}: hidden states differ by {worst}");
    }
}

/// A family whose config we do not write ourselves cannot be exported from a GGUF file: it is
/// refused by name, before any training.
#[test]
fn a_family_read_from_gguf_is_refused_before_training() {
    let m = Model::load(&family_dir("qwen3").with_file_name("model.gguf")).unwrap();
    let e = hd_train::export::check_exportable(&m.config, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("qwen3") && e.contains("Hugging Face directory"),
        "{e}"
    );
    hd_train::export::check_exportable(&m.config, Some(&family_dir("qwen3"))).unwrap();
}
