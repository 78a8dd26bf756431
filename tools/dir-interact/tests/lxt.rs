//! Component relevance of our AttnLRP engine against lxt 2.1 on transformers
//! (`testdata/dir-interact/lxt_relevance_ref.py`): the committed reference in every run, and
//! a live run on the first 4 prompts when the oracle environment (`make oracle`) is present. 16 prompts x 5 layer
//! pairs (adjacent, one that skips layers, the embeddings as source, the final norm as
//! target) x 3 x 3 components of the default model; each prompt's matrix agrees within 1e-3
//! of its largest entry.

use hd_analysis::relevance::{pair_relevance, Pair};
use hd_analysis::tokens::encode_with_user_span;
use hd_formats::tensors::TensorFile;
use hd_grad::diff::DiffModel;
use hd_grad::Rules;
use hd_lm::{Model, PromptFormat};
use std::path::{Path, PathBuf};

const PAIRS: [(usize, usize); 5] = [(0, 1), (9, 10), (5, 12), (19, 20), (29, 30)];
const K: usize = 3;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/dir-interact")
        .join(name)
}

struct Ours {
    ids: Vec<Vec<u32>>,
    /// `[pair][prompt][k * K + j]`.
    rel: Vec<Vec<Vec<f64>>>,
}

fn ours(model_path: &Path, rules: Rules, limit: usize) -> Ours {
    let model = Model::load(model_path).unwrap();
    let table = hd_formats::prompts::PromptTable::read(&data("prompts.csv")).unwrap();
    let ids: Vec<Vec<u32>> = (0..table.len().min(limit))
        .map(|i| {
            encode_with_user_span(&model, table.prompt(i), &PromptFormat::default())
                .unwrap()
                .ids
        })
        .collect();
    let comps = TensorFile::read(&data("components.safetensors")).unwrap();
    let Model {
        config, weights, ..
    } = model;
    let d = config.hidden_size;
    let diff = DiffModel::new(config, weights).unwrap();
    let dirs = |l: usize| -> Vec<Vec<f32>> {
        let c = comps.get(&format!("components.{l}")).unwrap().to_f32_vec();
        c.chunks(d).take(K).map(<[f32]>::to_vec).collect()
    };
    let rel = PAIRS
        .iter()
        .map(|&(s, l)| {
            let (src, tgt) = (dirs(s), dirs(l));
            let pair = Pair {
                source: s,
                target: l,
                source_dirs: &src,
                target_dirs: &tgt,
            };
            pair_relevance(&diff, &ids, &pair, rules, 16, |_| {})
                .unwrap()
                .values
        })
        .collect();
    Ours { ids, rel }
}

fn compare(o: &Ours, reference: &Path) {
    let r = TensorFile::read(reference).unwrap();
    hd_testkit::lxt::same_prompts(&r, &o.ids);
    let mut worst = 0.0f64;
    for (pi, &(s, l)) in PAIRS.iter().enumerate() {
        let want = r.get(&format!("relevance.{s}.{l}")).unwrap().to_f64_vec();
        for (i, got) in o.rel[pi].iter().enumerate() {
            let want = &want[i * K * K..(i + 1) * K * K];
            let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = got
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs() / scale)
                .fold(0.0, f64::max);
            worst = worst.max(err);
            assert!(
                err <= 1e-3,
                "pair {s}->{l} prompt {i}: max difference {err:.2e} of the largest entry \
                 {scale:.3e}\n ours {got:?}\n lxt  {want:?}"
            );
        }
    }
    eprintln!(
        "{}: worst difference {worst:.2e} of the largest entry",
        reference.display()
    );
}

#[test]
fn relevance_matches_the_committed_lxt_reference() {
    let Some(model) = hd_testkit::default_model() else {
        return;
    };
    compare(
        &ours(&model, Rules::AttnLrp, usize::MAX),
        &data("lxt_relevance_ref.npz"),
    );
    // The comparison can fail: the exact gradient is not the AttnLRP relevance.
    let exact = ours(&model, Rules::Exact, usize::MAX);
    let caught = std::panic::catch_unwind(|| compare(&exact, &data("lxt_relevance_ref.npz")));
    assert!(
        caught.is_err(),
        "exact gradients passed the AttnLRP comparison"
    );
}

#[test]
fn relevance_matches_live_lxt() {
    let Some(model) = hd_testkit::default_model() else {
        return;
    };
    let Some(py) = hd_testkit::oracle_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("live.npz");
    let pairs: Vec<String> = PAIRS.iter().map(|(s, l)| format!("{s}:{l}")).collect();
    let st = std::process::Command::new(py)
        .arg(data("lxt_relevance_ref.py"))
        .arg("--gguf")
        .arg(&model)
        .arg("--prompts")
        .arg(data("prompts.csv"))
        .arg("--components")
        .arg(data("components.safetensors"))
        .args([
            "--pairs",
            &pairs.join(","),
            "--k",
            "3",
            "--limit",
            "4",
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success(), "lxt_relevance_ref.py failed");
    compare(&ours(&model, Rules::AttnLrp, 4), &out);
}
