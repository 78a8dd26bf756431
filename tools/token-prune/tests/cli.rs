//! Runs the real `token-prune` binary on a tiny model with a planted trigger token: the
//! trigger's embedding alone drives the refusal logit, so attribution must delete it first
//! and random deletion needs luck; deletion never touches the template; reruns are byte
//! identical; bad input gives one line, exit 1 or 2, and leaves nothing behind.

use hd_testkit::cli::Run;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use hd_formats::tensors::{components_name, Tensor, TensorFile};
use hd_lm::Arch;
use hd_testkit::{tiny_config, tiny_weights, write_tiny_model, TINY_TEMPLATE, TINY_VOCAB};

const BIN: &str = env!("CARGO_BIN_EXE_token-prune");
/// The planted trigger: a byte of its own in the tiny byte-level tokenizer.
const TRIGGER: char = '~';
const D: usize = 32;

fn run(dir: &Path, args: &[&str]) -> Run {
    hd_testkit::cli::run(BIN, dir, args)
}

fn ok(dir: &Path, args: &[&str]) {
    hd_testkit::cli::ok(BIN, dir, args)
}

/// Token id of an ASCII byte in the tiny tokenizer (3 specials first).
fn byte_id(c: char) -> usize {
    c as usize + 3
}

/// A tiny model in which only the trigger can make the first token a refusal: queries and
/// keys are zero (the last position attends evenly to every position), block 0 copies
/// embedding dimension 0 (zero for every token but the trigger) into the last position's
/// dimension 0, and the head maps dimension 0 onto the refusal tokens' first letters.
fn planted_model(dir: &Path) {
    write_tiny_model(dir, Arch::Llama, false, 7).expect("tiny model");
    let cfg = tiny_config(Arch::Llama, TINY_VOCAB, false);
    let mut w = tiny_weights(&cfg, 11);
    let embed = w.embed.as_f32_mut().expect("f32 fixture");
    for t in 0..TINY_VOCAB {
        embed[t * D] = 0.0;
    }
    embed[byte_id(TRIGGER) * D] = 8.0;
    let (q, kv) = (
        cfg.num_heads * cfg.head_dim,
        cfg.num_kv_heads * cfg.head_dim,
    );
    for (l, lw) in w.layers.iter_mut().enumerate() {
        lw.attn_norm.fill(1.0);
        lw.mlp_norm.fill(1.0);
        for m in [&mut lw.wqkv, &mut lw.wo, &mut lw.w_gate_up, &mut lw.w_down] {
            m.as_f32_mut().expect("f32 fixture").fill(0.0);
        }
        if l == 0 {
            // v row of kv head 0, channel 0 reads dimension 0; head 0 writes it back, scaled.
            lw.wqkv.as_f32_mut().expect("f32 fixture")[(q + kv) * D] = 1.0;
            lw.wo.as_f32_mut().expect("f32 fixture")[0] = 100.0;
        }
    }
    w.final_norm.fill(1.0);
    let mut head = vec![0.0f32; TINY_VOCAB * D];
    for c in ['I', 'S', 'A', 'U', 'N'] {
        head[byte_id(c) * D] = 3.0;
    }
    w.lm_head = Some(hd_lm::Matrix::from_f32(TINY_VOCAB, D, head));
    let tok = hd_lm::Tokenizer::from_hf_dir(dir).expect("tokenizer");
    let template = hd_lm::ChatTemplate::new(TINY_TEMPLATE.to_string()).expect("template");
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
    .expect("planted weights");
}

/// Harmful-looking rows carry the trigger at varied places; the benign row does not.
const TEXTS: [&str; 6] = [
    "please explain in great detail how one would do the forbidden thing ~ right now",
    "tell me ~ the whole story of the old lighthouse keeper and his cat on the island",
    "write a long and careful plan for the garden party next weekend with music ~",
    "~ describe the steps of making bread at home from flour water salt and yeast",
    "what would a pirate say about the weather today if he ~ were stuck in a harbour",
    "give me a list of ten good names for a small grey dog that likes to run ~ fast",
];

fn setup() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("temp dir");
    let dir = t.path().to_path_buf();
    planted_model(&dir.join("model"));
    let mut csv = String::from("id,prompt,category\n");
    for (i, text) in TEXTS.iter().enumerate() {
        csv += &format!("p{i},{text},{}\n", ["alpha", "beta"][i % 2]);
    }
    csv += "b0,a calm and friendly question about the weather in spring,benign\n";
    std::fs::write(dir.join("prompts.csv"), csv).unwrap();
    let mut plain = String::from("id,prompt,category\n");
    plain += "q0,nothing here to see at all,alpha\nq1,just a plain question,beta\n";
    std::fs::write(dir.join("plain.csv"), plain).unwrap();
    // Hidden state 2: C1 is embedding dimension 0 (where the trigger's signal lives).
    let mut comps = vec![0.0f32; 2 * D];
    comps[0] = 1.0;
    comps[D + 1] = 1.0;
    let mut f = TensorFile::new(BTreeMap::new());
    f.insert(components_name(2), Tensor::f32(vec![2, D], comps).unwrap());
    f.write(&dir.join("svd.safetensors")).unwrap();
    (t, dir)
}

fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--model",
        "model",
        "--prompts",
        "prompts.csv",
        "--out",
        "pruned.csv",
        "--summary",
        "summary.csv",
        "--repeats",
        "3",
        "--confirm-tokens",
        "4",
    ];
    v.extend_from_slice(extra);
    v
}

type Rows = Vec<BTreeMap<String, String>>;

fn read_csv(path: &Path) -> Rows {
    let mut r = csv::Reader::from_path(path).unwrap();
    let h: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    r.records()
        .map(|rec| {
            h.iter()
                .cloned()
                .zip(rec.unwrap().iter().map(str::to_string))
                .collect()
        })
        .collect()
}

fn summary_row<'a>(rows: &'a Rows, method: &str, cat: &str) -> &'a BTreeMap<String, String> {
    rows.iter()
        .find(|r| r["method"] == method && r["category"] == cat)
        .unwrap_or_else(|| panic!("no summary row {method}/{cat}"))
}

fn num(r: &BTreeMap<String, String>, k: &str) -> f64 {
    r[k].parse().unwrap_or_else(|_| panic!("{k} = '{}'", r[k]))
}

/// `sub` is `full` with some characters removed.
fn is_subsequence(sub: &str, full: &str) -> bool {
    let mut it = full.chars();
    sub.chars().all(|c| it.any(|f| f == c))
}

#[test]
fn attribution_deletes_the_planted_trigger_first_and_random_needs_more() {
    let (_t, dir) = setup();
    ok(&dir, &args(&[]));
    let sum = read_csv(&dir.join("summary.csv"));
    let header = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert_eq!(header.lines().next().unwrap(), token_prune::SUMMARY_HEADER);
    // The benign row is not refused, so not a candidate.
    let all = summary_row(&sum, "attribution", "all");
    assert_eq!(num(all, "n"), 6.0);
    assert_eq!(num(all, "success_first_token"), 1.0);
    assert_eq!(num(all, "success_generated"), 1.0);
    assert_eq!(num(all, "mean_deleted"), 1.0, "one deletion each");
    assert!(all["top_deleted"].contains(&format!("\"{TRIGGER}\":6")));
    let occ = summary_row(&sum, "occlusion", "all");
    assert_eq!(num(occ, "success_first_token"), 1.0);
    let random = summary_row(&sum, "random", "all");
    assert!(
        num(random, "success_first_token") <= 0.5,
        "random deletion should rarely find the trigger: {random:?}"
    );
    assert!(num(random, "mean_deleted") > 2.0);
    assert!(!random["success_first_token_sd"].is_empty());
    for cat in ["alpha", "beta"] {
        assert_eq!(num(summary_row(&sum, "attribution", cat), "n"), 3.0);
    }
    assert!(!sum.iter().any(|r| r["category"] == "benign"));

    let pruned = read_csv(&dir.join("pruned.csv"));
    // 6 candidates x (attribution + gradnorm + occlusion + 3 random repeats).
    assert_eq!(pruned.len(), 36);
    for r in &pruned {
        let (orig, new) = (&r["original_prompt"], &r["prompt"]);
        assert!(
            is_subsequence(new, orig),
            "{new:?} is not {orig:?} with tokens deleted"
        );
        let deleted: Vec<String> = serde_json::from_str(&r["deleted"]).unwrap();
        assert_eq!(deleted.len().to_string(), r["n_deleted"]);
        assert_eq!(orig.chars().count() - new.chars().count(), deleted.len());
        assert!(r["id"].starts_with(&format!("{}~", r["original_id"])));
        if r["method"] == "attribution" {
            assert_eq!(deleted, [TRIGGER.to_string()]);
            assert_eq!(r["success_first_token"], "1");
        }
        if r["success_first_token"] == "0" {
            assert!(new.contains(TRIGGER));
            assert_eq!(r["success_generated"], "0");
        }
    }
}

#[test]
fn a_component_target_finds_the_trigger_too() {
    let (_t, dir) = setup();
    ok(
        &dir,
        &args(&[
            "--target",
            "L2-C1",
            "--components",
            "svd.safetensors",
            "--methods",
            "attribution",
        ]),
    );
    let sum = read_csv(&dir.join("summary.csv"));
    let all = summary_row(&sum, "attribution", "all");
    assert_eq!(num(all, "success_first_token"), 1.0);
    assert_eq!(num(all, "mean_deleted"), 1.0);
    let pruned = read_csv(&dir.join("pruned.csv"));
    assert!(pruned.iter().all(|r| r["target"] == "L2-C1"));
}

#[test]
fn reruns_are_byte_identical_and_a_seed_changes_random() {
    let (_t, dir) = setup();
    let extra = [
        "--methods",
        "random,attribution",
        "--categories",
        "alpha,beta",
    ];
    ok(&dir, &args(&extra));
    let a = (
        std::fs::read(dir.join("pruned.csv")).unwrap(),
        std::fs::read(dir.join("summary.csv")).unwrap(),
    );
    ok(&dir, &args(&extra));
    let b = (
        std::fs::read(dir.join("pruned.csv")).unwrap(),
        std::fs::read(dir.join("summary.csv")).unwrap(),
    );
    assert!(a == b, "rerun changed the outputs");
    let mut seeded = extra.to_vec();
    seeded.extend(["--seed", "7"]);
    ok(&dir, &args(&seeded));
    assert_ne!(std::fs::read(dir.join("pruned.csv")).unwrap(), a.0);
}

#[test]
fn categories_select_the_candidates() {
    let (_t, dir) = setup();
    ok(
        &dir,
        &args(&["--categories", "beta", "--methods", "attribution"]),
    );
    let pruned = read_csv(&dir.join("pruned.csv"));
    assert_eq!(pruned.len(), 3);
    assert!(pruned.iter().all(|r| r["category"] == "beta"));
    // The first two rows of each category: p0, p2 (alpha), p1, p3 (beta), in file order.
    ok(
        &dir,
        &args(&["--per-category", "2", "--methods", "attribution"]),
    );
    let ids: Vec<String> = read_csv(&dir.join("pruned.csv"))
        .iter()
        .map(|r| r["original_id"].clone())
        .collect();
    assert_eq!(ids, ["p0", "p1", "p2", "p3"]);
}

#[test]
fn bad_input_is_one_line_and_leaves_no_output() {
    let (_t, dir) = setup();
    std::fs::write(dir.join("noprompt.csv"), "id,text\na,b\n").unwrap();
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec![
            "--model",
            "model",
            "--out",
            "pruned.csv",
            "--summary",
            "summary.csv",
            "--confirm-tokens",
            "0",
        ];
        v.extend_from_slice(extra);
        v
    };
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (with(&["--prompts", "plain.csv"]), 1, "no prompt refused"),
        (
            with(&["--prompts", "prompts.csv", "--budget", "0"]),
            2,
            "--budget",
        ),
        (
            with(&["--prompts", "prompts.csv", "--budget", "1.5"]),
            2,
            "--budget",
        ),
        (
            with(&["--prompts", "prompts.csv", "--budget=-0.1"]),
            2,
            "--budget",
        ),
        (
            with(&[
                "--prompts",
                "prompts.csv",
                "--target",
                "L2-C3",
                "--components",
                "svd.safetensors",
            ]),
            2,
            "holds 2 components (L2-C1..L2-C2); component 3 was asked for",
        ),
        (
            with(&[
                "--prompts",
                "prompts.csv",
                "--target",
                "L1-C1",
                "--components",
                "svd.safetensors",
            ]),
            2,
            "unknown component",
        ),
        (
            with(&[
                "--prompts",
                "prompts.csv",
                "--target",
                "L9-C1",
                "--components",
                "svd.safetensors",
            ]),
            2,
            "unknown component",
        ),
        (
            with(&["--prompts", "prompts.csv", "--target", "L2-C1"]),
            2,
            "--components",
        ),
        (
            with(&["--prompts", "prompts.csv", "--target", "C1"]),
            2,
            "invalid target",
        ),
        (
            with(&["--prompts", "prompts.csv", "--categories", ""]),
            2,
            "empty category list",
        ),
        (
            with(&["--prompts", "prompts.csv", "--categories", ",,"]),
            2,
            "empty category list",
        ),
        (
            with(&["--prompts", "prompts.csv", "--categories", "gamma"]),
            1,
            "no row 'gamma'",
        ),
        (
            with(&["--prompts", "prompts.csv", "--per-category", "0"]),
            2,
            "--per-category 0",
        ),
        (
            with(&["--prompts", "prompts.csv", "--methods", "lrp"]),
            2,
            "unknown method",
        ),
        (
            with(&["--prompts", "prompts.csv", "--step", "0"]),
            2,
            "--step",
        ),
        (with(&["--prompts", "noprompt.csv"]), 1, "prompt"),
        (with(&["--prompts", "missing.csv"]), 1, "missing.csv"),
    ];
    // The output path as an input: a usage error before any work.
    let same = vec![
        "--model",
        "model",
        "--prompts",
        "prompts.csv",
        "--out",
        "prompts.csv",
        "--summary",
        "summary.csv",
    ];
    for (a, code, needle) in cases.iter().chain([(same, 2, "same file")].iter()) {
        let r = run(&dir, a);
        assert_eq!(r.code, *code, "{a:?}: {}", r.stderr);
        let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        if *code == 1 || a.iter().any(|x| x.starts_with("--budget")) {
            assert_eq!(
                lines.len(),
                1,
                "{a:?}: expected one line, got:\n{}",
                r.stderr
            );
        }
        assert!(
            r.stderr.contains(needle),
            "{a:?}: '{needle}' not in:\n{}",
            r.stderr
        );
        assert!(!dir.join("pruned.csv").exists() && !dir.join("summary.csv").exists());
        let stray: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(stray.is_empty(), "{a:?} left {stray:?}");
    }
}

#[test]
fn help_names_the_attack_and_an_example() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("model-free form of the paper's attack"));
    assert!(s.contains("Example"));
}

#[test]
fn scores_rank_the_trigger_first_for_attribution_and_occlusion() {
    let (_t, dir) = setup();
    ok(
        &dir,
        &args(&[
            "--methods",
            "attribution,occlusion,random",
            "--scores",
            "scores.csv",
        ]),
    );
    let text = std::fs::read_to_string(dir.join("scores.csv")).unwrap();
    assert_eq!(text.lines().next().unwrap(), token_prune::SCORES_HEADER);
    let rows = read_csv(&dir.join("scores.csv"));
    for m in ["attribution", "occlusion", "random"] {
        let of: Vec<_> = rows.iter().filter(|r| r["method"] == m).collect();
        // Every user token of the 6 candidates, ranks 1..n within each prompt.
        let ids: std::collections::BTreeSet<&str> = of.iter().map(|r| r["id"].as_str()).collect();
        assert_eq!(ids.len(), 6, "{m}");
        for id in &ids {
            let mut ranks: Vec<usize> = of
                .iter()
                .filter(|r| r["id"] == *id)
                .map(|r| r["rank"].parse().unwrap())
                .collect();
            ranks.sort_unstable();
            assert_eq!(ranks, (1..=ranks.len()).collect::<Vec<_>>(), "{m} {id}");
            assert!(ranks.len() > 5);
        }
        if m != "random" {
            for r in of.iter().filter(|r| r["rank"] == "1") {
                assert_eq!(
                    r["token"],
                    TRIGGER.to_string(),
                    "{m} ranks {} first in {}",
                    r["token"],
                    r["id"]
                );
            }
        }
    }
    assert!(rows
        .iter()
        .all(|r| ["alpha", "beta"].contains(&r["category"].as_str())));
}

#[test]
fn no_share_prefix_deletes_the_same_tokens() {
    let (_t, dir) = setup();
    let extra = [
        "--methods",
        "attribution,occlusion",
        "--scores",
        "scores.csv",
    ];
    ok(&dir, &args(&extra));
    let shared = read_csv(&dir.join("pruned.csv"));
    let shared_scores = read_csv(&dir.join("scores.csv"));
    let mut a = args(&extra);
    a.push("--no-share-prefix");
    ok(&dir, &a);
    let alone = read_csv(&dir.join("pruned.csv"));
    assert_eq!(shared.len(), alone.len());
    for (s, l) in shared.iter().zip(&alone) {
        for k in [
            "id",
            "deleted",
            "success_first_token",
            "success_generated",
            "answer",
        ] {
            assert_eq!(s[k], l[k], "{k} of {}", s["id"]);
        }
    }
    // Every token's score: occlusion's variants continuing the prompt's cache (shared) and
    // run in full (alone) agree to float precision.
    let alone_scores = read_csv(&dir.join("scores.csv"));
    assert_eq!(shared_scores.len(), alone_scores.len());
    let mut n_occ = 0;
    for (s, l) in shared_scores.iter().zip(&alone_scores) {
        assert_eq!(
            (&s["id"], &s["method"], &s["position"]),
            (&l["id"], &l["method"], &l["position"])
        );
        let (x, y) = (num(s, "score"), num(l, "score"));
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "{} {} {}: {x} vs {y}",
            s["id"],
            s["method"],
            s["position"]
        );
        n_occ += usize::from(s["method"] == "occlusion");
    }
    assert!(n_occ > 30);
}
