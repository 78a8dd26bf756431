//! Token relevances of our AttnLRP engine against lxt 2.1 on transformers
//! (`testdata/dir-label/lxt_ref.py`): the committed reference in every run, and a live run
//! when the oracle environment (`make oracle`) is present. 16 prompts x 3 directions x 2
//! layers of the default model; per prompt, relevances normalised by their largest
//! magnitude agree within 1e-3 and correlate at >= 0.999.

use hd_analysis::tokens::{encode_with_user_span, token_maps};
use hd_formats::tensors::TensorFile;
use hd_grad::diff::DiffModel;
use hd_grad::Rules;
use hd_lm::{Model, PromptFormat};
use std::path::{Path, PathBuf};

const LAYERS: [usize; 2] = [10, 20];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data(name: &str) -> PathBuf {
    root().join("testdata/dir-label").join(name)
}

struct Ours {
    ids: Vec<Vec<u32>>,
    /// `[layer][direction][prompt]` raw relevances.
    rel: Vec<Vec<Vec<Vec<f32>>>>,
}

/// `shared`: ask for the user text only, so the template prefix is run once per batch.
fn ours(model_path: &Path, prompts: &Path, components: &Path, rules: Rules, shared: bool) -> Ours {
    let model = Model::load(model_path).unwrap();
    let table = hd_formats::prompts::PromptTable::read(prompts).unwrap();
    let fmt = PromptFormat::default();
    let enc: Vec<_> = (0..table.len())
        .map(|i| encode_with_user_span(&model, table.prompt(i), &fmt).unwrap())
        .collect();
    let from: Vec<usize> = enc
        .iter()
        .map(|e| if shared { e.user.start } else { 0 })
        .collect();
    let ids: Vec<Vec<u32>> = enc.into_iter().map(|e| e.ids).collect();
    let comps = TensorFile::read(components).unwrap();
    let Model {
        config, weights, ..
    } = model;
    let d = config.hidden_size;
    let diff = DiffModel::new(config, weights).unwrap();
    let mut rel = Vec::new();
    for l in LAYERS {
        let c = comps.get(&format!("components.{l}")).unwrap().to_f32_vec();
        let dirs: Vec<Vec<f32>> = c.chunks(d).map(<[f32]>::to_vec).collect();
        let maps = token_maps(&diff, &ids, &from, l, &dirs, rules, 16, |_| {}).unwrap();
        rel.push(
            (0..dirs.len())
                .map(|j| maps.iter().map(|m| m[j].raw.clone()).collect())
                .collect(),
        );
    }
    Ours { ids, rel }
}

fn compare(ours: &Ours, reference: &Path) {
    let r = TensorFile::read(reference).unwrap();
    let offsets = hd_testkit::lxt::same_prompts(&r, &ours.ids);
    let (mut worst, mut min_r) = (0.0f64, 1.0f64);
    for (li, l) in LAYERS.iter().enumerate() {
        for (j, per_prompt) in ours.rel[li].iter().enumerate() {
            let want = r.get(&format!("relevance.{l}.{j}")).unwrap().to_f64_vec();
            for (i, got) in per_prompt.iter().enumerate() {
                let want = &want[offsets[i]..offsets[i + 1]];
                let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                // Positions not computed (a shared prefix) are NaN and left out.
                let from = got.iter().take_while(|v| v.is_nan()).count();
                assert!(
                    from + 2 < got.len(),
                    "prompt {i}: too few positions computed"
                );
                let want = &want[from..];
                let got: Vec<f64> = got[from..].iter().map(|&v| v as f64).collect();
                let err = got
                    .iter()
                    .zip(want)
                    .map(|(a, b)| (a - b).abs() / scale)
                    .fold(0.0, f64::max);
                let corr = pearson(&got, want);
                worst = worst.max(err);
                min_r = min_r.min(corr);
                assert!(
                    err <= 1e-3 && corr >= 0.999,
                    "layer {l} direction {j} prompt {i}: max normalised difference {err:.2e}, \
                     Pearson {corr:.6}"
                );
            }
        }
    }
    eprintln!(
        "{}: worst normalised difference {worst:.2e}, lowest Pearson {min_r:.6}",
        reference.display()
    );
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn attnlrp_matches_the_committed_lxt_reference() {
    let Some(model) = hd_testkit::default_model() else {
        return;
    };
    let o = ours(
        &model,
        &data("lxt_prompts.csv"),
        &data("lxt_components.safetensors"),
        Rules::AttnLrp,
        false,
    );
    compare(&o, &data("lxt_ref.npz"));
    // The template prefix run once per batch changes nothing past it.
    let shared = ours(
        &model,
        &data("lxt_prompts.csv"),
        &data("lxt_components.safetensors"),
        Rules::AttnLrp,
        true,
    );
    assert!(
        shared.rel[0][0].iter().all(|m| m[0].is_nan()),
        "prefix was not shared"
    );
    compare(&shared, &data("lxt_ref.npz"));
    // The comparison can fail: plain gradient x input is far from the reference.
    let exact = ours(
        &model,
        &data("lxt_prompts.csv"),
        &data("lxt_components.safetensors"),
        Rules::Exact,
        false,
    );
    let caught = std::panic::catch_unwind(|| compare(&exact, &data("lxt_ref.npz")));
    assert!(
        caught.is_err(),
        "exact gradients passed the AttnLRP comparison"
    );
}

#[test]
fn attnlrp_matches_live_lxt() {
    let Some(model) = hd_testkit::default_model() else {
        return;
    };
    let Some(py) = hd_testkit::oracle_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live.npz");
    let st = std::process::Command::new(py)
        .arg(data("lxt_ref.py"))
        .args(["--gguf"])
        .arg(&model)
        .arg("--prompts")
        .arg(data("lxt_prompts.csv"))
        .arg("--components")
        .arg(data("lxt_components.safetensors"))
        .args(["--layers", "10,20", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success(), "lxt_ref.py failed");
    let o = ours(
        &model,
        &data("lxt_prompts.csv"),
        &data("lxt_components.safetensors"),
        Rules::AttnLrp,
        true,
    );
    compare(&o, &out);
}
