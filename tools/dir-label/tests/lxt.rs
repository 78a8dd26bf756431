//! Token relevances of our AttnLRP engine against lxt 2.1 on transformers
//! (`testdata/dir-label/lxt_ref.py`): the committed reference in every run, and a live run
//! when the oracle environment (`make oracle`) is present. 16 prompts x 3 directions x 2
//! layers of the default model (Llama), and of the Qwen3 and Gemma 3 family fixtures (the
//! other families lxt has rules for); per prompt, relevances normalised by their largest
//! magnitude agree within 1e-3 and correlate at >= 0.999.

use hd_analysis::tokens::{encode_with_user_span, token_maps};
use hd_formats::tensors::TensorFile;
use hd_grad::diff::DiffModel;
use hd_grad::Rules;
use hd_lm::{Model, PromptFormat};
use std::path::{Path, PathBuf};

const LAYERS: [usize; 2] = [10, 20];

/// The family fixtures (`testdata/families`, small random models) and their layers: Qwen3
/// (q/k norms) mid-stack and at its final norm; Gemma 3 (GeGLU, (1 + w) sandwich and q/k
/// norms, sliding layers, scaled embeddings and queries) mid-stack and at its final norm.
const FAMILIES: [(&str, [usize; 2]); 2] = [("qwen3", [2, 3]), ("gemma3", [3, 6])];

fn family(name: &str) -> PathBuf {
    root().join("testdata/families").join(name).join("hf")
}

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
fn ours(
    model_path: &Path,
    prompts: &Path,
    components: &Path,
    layers: &[usize],
    rules: Rules,
    shared: bool,
) -> Ours {
    let model = Model::load(model_path).unwrap();
    let table = hd_formats::prompts::PromptTable::read(prompts).unwrap();
    // the tools' default (`--thinking off`), as the reference renders Qwen3's template
    let fmt = PromptFormat {
        enable_thinking: Some(false),
        ..PromptFormat::default()
    };
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
    for &l in layers {
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

fn compare(ours: &Ours, layers: &[usize], reference: &Path) {
    let r = TensorFile::read(reference).unwrap();
    let offsets = hd_testkit::lxt::same_prompts(&r, &ours.ids);
    let (mut worst, mut min_r) = (0.0f64, 1.0f64);
    for (li, l) in layers.iter().enumerate() {
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
        &LAYERS,
        Rules::AttnLrp,
        false,
    );
    compare(&o, &LAYERS, &data("lxt_ref.npz"));
    // The template prefix run once per batch changes nothing past it.
    let shared = ours(
        &model,
        &data("lxt_prompts.csv"),
        &data("lxt_components.safetensors"),
        &LAYERS,
        Rules::AttnLrp,
        true,
    );
    assert!(
        shared.rel[0][0].iter().all(|m| m[0].is_nan()),
        "prefix was not shared"
    );
    compare(&shared, &LAYERS, &data("lxt_ref.npz"));
    // The comparison can fail: plain gradient x input is far from the reference.
    let exact = ours(
        &model,
        &data("lxt_prompts.csv"),
        &data("lxt_components.safetensors"),
        &LAYERS,
        Rules::Exact,
        false,
    );
    let caught = std::panic::catch_unwind(|| compare(&exact, &LAYERS, &data("lxt_ref.npz")));
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
        &LAYERS,
        Rules::AttnLrp,
        true,
    );
    compare(&o, &LAYERS, &out);
}

/// Our relevances on a family fixture, with the template prefix shared or not.
fn ours_on(fam: &str, layers: &[usize], rules: Rules, shared: bool) -> Ours {
    ours(
        &family(fam),
        &data("lxt_prompts.csv"),
        &data("lxt_family_components.safetensors"),
        layers,
        rules,
        shared,
    )
}

#[test]
fn attnlrp_matches_the_committed_lxt_reference_on_qwen3_and_gemma3() {
    for (fam, layers) in FAMILIES {
        let reference = data(&format!("lxt_ref_{fam}.npz"));
        compare(
            &ours_on(fam, &layers, Rules::AttnLrp, false),
            &layers,
            &reference,
        );
        compare(
            &ours_on(fam, &layers, Rules::AttnLrp, true),
            &layers,
            &reference,
        );
        // The comparison can fail: plain gradient x input is far from the reference.
        let exact = ours_on(fam, &layers, Rules::Exact, false);
        let caught = std::panic::catch_unwind(|| compare(&exact, &layers, &reference));
        assert!(
            caught.is_err(),
            "{fam}: exact gradients passed the AttnLRP comparison"
        );
    }
}

#[test]
fn attnlrp_matches_live_lxt_on_qwen3_and_gemma3() {
    let Some(py) = hd_testkit::oracle_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (fam, layers) in FAMILIES {
        let out = dir.path().join(format!("{fam}.npz"));
        let st = std::process::Command::new(&py)
            .arg(data("lxt_ref.py"))
            .arg("--hf")
            .arg(family(fam))
            .arg("--prompts")
            .arg(data("lxt_prompts.csv"))
            .arg("--components")
            .arg(data("lxt_family_components.safetensors"))
            .arg("--layers")
            .arg(format!("{},{}", layers[0], layers[1]))
            .arg("--out")
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success(), "lxt_ref.py failed on {fam}");
        compare(&ours_on(fam, &layers, Rules::AttnLrp, true), &layers, &out);
    }
}
