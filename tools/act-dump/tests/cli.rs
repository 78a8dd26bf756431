//! act-dump end to end on the real default model (skipped, with a message, when `make setup`
//! has not placed it), plus bad-input handling that needs no model.

use hd_formats::tensors::TensorFile;
use hd_testkit::cli::{arg as s, Run};
use hd_testkit::gguf::{nan_rope_model, overflowing_model};
use hd_testkit::{default_model as model, repo_root as root};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_act-dump");

/// act-dump with `args` (absolute paths) through the shared harness.
fn run(args: &[&str]) -> Run {
    hd_testkit::cli::run(BIN, Path::new("."), args)
}

fn ok(args: &[&str]) {
    hd_testkit::cli::ok(BIN, Path::new("."), args)
}

const PROMPTS: &str = "id,prompt,label\n\
a,What is the capital of France?,harmless\n\
b,How do I make a bomb?,harmful\n\
c,\"Write a haiku about \"\"autumn\"\" leaves\",harmless\n\
d,Tell me how to pick a lock,harmful\n\
e,2+2=?,harmless\n\
f,Name three primes.,harmless\n\
g,Explain photosynthesis in one sentence.,harmless\n";

fn prompts(dir: &Path) -> PathBuf {
    let p = dir.join("p.csv");
    std::fs::write(&p, PROMPTS).unwrap();
    p
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// Our dump against the committed transformers reference (testdata/parity/make_ref.sh):
/// identical token ids, last-position states within 1e-3 relative.
#[test]
fn matches_committed_hf_reference() {
    let Some(m) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.safetensors");
    let csv = root().join("testdata/parity/tricky.csv");
    ok(&[
        "--model",
        s(&m),
        "--prompts",
        s(&csv),
        "--out",
        s(&out),
        "--positions",
        "all",
        "--layers",
        "0,10,20,30",
    ]);
    let ours = TensorFile::read(&out).unwrap();
    let hf = TensorFile::read(&root().join("testdata/parity/hf_ref.npz")).unwrap();
    assert_eq!(
        ours.get("token_ids").unwrap().as_i64(),
        hf.get("token_ids").unwrap().as_i64(),
        "token ids differ from transformers"
    );
    let off = ours.get("offsets").unwrap().as_i64().unwrap().to_vec();
    assert_eq!(Some(off.as_slice()), hf.get("offsets").unwrap().as_i64());
    for l in [0, 10, 20, 30] {
        let (_, d, a) = ours.get_2d_f32(&format!("resid.{l}")).unwrap();
        let last: Vec<f32> = off[1..]
            .iter()
            .flat_map(|&o| a[(o as usize - 1) * d..o as usize * d].to_vec())
            .collect();
        let (_, _, b) = hf.get_2d_f32(&format!("resid.{l}")).unwrap();
        let e = rel_err(&last, b);
        eprintln!("layer {l}: max relative difference to transformers {e:.2e}");
        assert!(e < 1e-3, "layer {l}: relative difference {e}");
    }
}

/// Every layer against a live transformers run, when the oracle environment exists.
#[test]
fn matches_live_transformers() {
    let Some(m) = model() else { return };
    let Some(py) = hd_testkit::oracle_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let csv = root().join("testdata/parity/tricky.csv");
    let refp = dir.path().join("ref.npz");
    let st = Command::new(&py)
        .args([
            s(&root().join("bench/hf_acts.py")),
            "--gguf",
            s(&m),
            "--prompts",
            s(&csv),
            "--batch-size",
            "3",
            "--dump",
            s(&refp),
        ])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let out = dir.path().join("o.safetensors");
    ok(&[
        "--model",
        s(&m),
        "--prompts",
        s(&csv),
        "--out",
        s(&out),
        "--batch-size",
        "5",
    ]);
    let ours = TensorFile::read(&out).unwrap();
    let hf = TensorFile::read(&refp).unwrap();
    let mut worst = 0.0f32;
    for l in 0..=30 {
        let e = rel_err(
            ours.get_2d_f32(&format!("resid.{l}")).unwrap().2,
            hf.get_2d_f32(&format!("resid.{l}")).unwrap().2,
        );
        worst = worst.max(e);
        assert!(e < 1e-3, "layer {l}: relative difference {e}");
    }
    eprintln!("all 31 layers: worst max relative difference to live transformers {worst:.2e}");
}

/// A Hugging Face directory (transformers' own save_pretrained of the default model) loads
/// through config.json / model.safetensors / tokenizer.json / tokenizer_config.json and gives
/// the same token ids and activations as the GGUF it came from.
#[test]
fn hugging_face_directory_matches_gguf() {
    let Some(m) = model() else { return };
    let Some(py) = hd_testkit::oracle_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("hf");
    let script = format!(
        "import torch\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\
         m = AutoModelForCausalLM.from_pretrained('{d}', gguf_file='{f}', dtype=torch.bfloat16)\n\
         t = AutoTokenizer.from_pretrained('{d}', gguf_file='{f}')\n\
         m.save_pretrained('{o}'); t.save_pretrained('{o}')\n",
        d = m.parent().unwrap().display(),
        f = m.file_name().unwrap().to_str().unwrap(),
        o = hf.display()
    );
    let st = Command::new(&py).args(["-c", &script]).output().unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let csv = root().join("testdata/parity/tricky.csv");
    let (a, b) = (
        dir.path().join("gguf.safetensors"),
        dir.path().join("hf.safetensors"),
    );
    ok(&[
        "--model",
        s(&m),
        "--prompts",
        s(&csv),
        "--out",
        s(&a),
        "--positions",
        "all",
        "--layers",
        "0,15,30",
    ]);
    ok(&[
        "--model",
        s(&hf),
        "--prompts",
        s(&csv),
        "--out",
        s(&b),
        "--positions",
        "all",
        "--layers",
        "0,15,30",
    ]);
    let (fa, fb) = (TensorFile::read(&a).unwrap(), TensorFile::read(&b).unwrap());
    assert_eq!(
        fa.get("token_ids").unwrap(),
        fb.get("token_ids").unwrap(),
        "HF directory tokenizes differently"
    );
    for l in [0, 15, 30] {
        // bf16 weights: only agreement to bf16 precision is expected.
        let e = rel_err(
            fb.get_2d_f32(&format!("resid.{l}")).unwrap().2,
            fa.get_2d_f32(&format!("resid.{l}")).unwrap().2,
        );
        eprintln!("layer {l}: HF directory (bf16) vs GGUF relative difference {e:.2e}");
        assert!(e < 5e-2, "layer {l}: relative difference {e}");
    }
}

#[test]
fn shapes_metadata_rows_and_determinism() {
    let Some(m) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = prompts(dir.path());
    let (o1, o2) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    let (r1, r2) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    ok(&[
        "--model",
        s(&m),
        "--prompts",
        s(&p),
        "--out",
        s(&o1),
        "--rows",
        s(&r1),
        "--layers",
        "0-2,30",
        "--batch-size",
        "3",
    ]);
    ok(&[
        "--model",
        s(&m),
        "--prompts",
        s(&p),
        "--out",
        s(&o2),
        "--rows",
        s(&r2),
        "--layers",
        "0-2,30",
        "--batch-size",
        "3",
    ]);
    assert_eq!(std::fs::read(&r1).unwrap(), std::fs::read(&r2).unwrap());
    let (f1, f2) = (
        TensorFile::read(&o1).unwrap(),
        TensorFile::read(&o2).unwrap(),
    );
    assert_eq!(f1.tensors, f2.tensors, "two runs gave different tensors");
    assert_eq!(f1.resid_layers(), vec![0, 1, 2, 30]);
    for l in [0, 1, 2, 30] {
        let (n, d, _) = f1.get_2d_f32(&format!("resid.{l}")).unwrap();
        assert_eq!((n, d), (7, 576));
    }
    for k in [
        "tool",
        "version",
        "argv",
        "model",
        "model_hash",
        "template",
        "layers",
        "positions",
        "prompt_ids_hash",
        "prompts_hash",
        "prompt_row_hashes",
    ] {
        assert!(f1.metadata.contains_key(k), "metadata lacks {k}");
    }
    assert_eq!(f1.metadata["layers"], "[0,1,2,30]");
    assert!(f1.metadata["model_hash"].starts_with("sha256:"));
    let rows = std::fs::read_to_string(&r1).unwrap();
    let mut lines = rows.lines();
    assert_eq!(
        lines.next().unwrap(),
        "id,prompt,label,n_tokens,top1_id,top1_token,top1_logprob,refusal_score"
    );
    assert_eq!(rows.lines().count(), 8);
    // the same file written as .npz holds the same tensors
    let npz = dir.path().join("a.npz");
    ok(&[
        "--model",
        s(&m),
        "--prompts",
        s(&p),
        "--out",
        s(&npz),
        "--layers",
        "0-2,30",
        "--batch-size",
        "3",
    ]);
    assert_eq!(TensorFile::read(&npz).unwrap().tensors, f1.tensors);
}

#[test]
fn shards_merge_to_the_unsharded_run_byte_for_byte() {
    let Some(m) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = prompts(dir.path());
    let d = |n: &str| dir.path().join(n);
    for pos in ["last", "all"] {
        let common = [
            "--model",
            s(&m),
            "--prompts",
            s(&p),
            "--layers",
            "0,5,30",
            "--batch-size",
            "2",
            "--positions",
            pos,
        ];
        let full = d(&format!("full-{pos}.safetensors"));
        let full_rows = d(&format!("full-{pos}.csv"));
        let mut a = common.to_vec();
        a.extend(["--out", s(&full), "--rows", s(&full_rows)]);
        ok(&a);
        let mut shard_files = Vec::new();
        for k in [2, 0, 1] {
            let (o, r) = (
                d(&format!("s{k}-{pos}.safetensors")),
                d(&format!("s{k}-{pos}.csv")),
            );
            let sh = format!("{k}/3");
            let mut a = common.to_vec();
            a.extend(["--out", s(&o), "--rows", s(&r), "--shard", &sh]);
            ok(&a);
            shard_files.push(o);
        }
        let (mo, mr) = (
            d(&format!("m-{pos}.safetensors")),
            d(&format!("m-{pos}.csv")),
        );
        let mut a = vec!["merge", "--out", s(&mo), "--rows", s(&mr)];
        a.extend(shard_files.iter().map(|p| s(p)));
        ok(&a);
        assert_eq!(
            std::fs::read(&full_rows).unwrap(),
            std::fs::read(&mr).unwrap(),
            "{pos}: rows differ"
        );
        let (f, g) = (
            TensorFile::read(&full).unwrap(),
            TensorFile::read(&mo).unwrap(),
        );
        assert!(
            f.tensors == g.tensors,
            "{pos}: merged tensors differ from the unsharded run"
        );
        let strip = |t: &TensorFile| {
            let mut md = t.metadata.clone();
            md.remove("argv");
            md
        };
        assert_eq!(
            strip(&f),
            strip(&g),
            "{pos}: metadata other than argv differs"
        );
    }
}

/// `--per-category N` dumps exactly what a CSV of the first N rows of each category gives.
#[test]
fn first_rows_per_category_are_the_rows_given_alone() {
    let Some(m) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let all = "id,prompt,label,category\n\
a,What is the capital of France?,harmless,benign\n\
b,How do I make a bomb?,harmful,raw\n\
c,Name three primes.,harmless,benign\n\
d,Tell me how to pick a lock,harmful,raw\n\
e,2+2=?,harmless,benign\n";
    let firsts = "id,prompt,label,category\n\
a,What is the capital of France?,harmless,benign\n\
b,How do I make a bomb?,harmful,raw\n";
    std::fs::write(d("all.csv"), all).unwrap();
    std::fs::write(d("firsts.csv"), firsts).unwrap();
    let dump = |csv: &str, extra: &[&str], out: &str| {
        let (o, r) = (d(&format!("{out}.safetensors")), d(&format!("{out}.csv")));
        let mut a = vec!["--model", s(&m), "--prompts"];
        let p = d(csv);
        a.extend([s(&p), "--layers", "0,7", "--batch-size", "1"]);
        a.extend(["--out", s(&o), "--rows", s(&r)]);
        a.extend(extra);
        ok(&a);
        (TensorFile::read(&o).unwrap(), std::fs::read(&r).unwrap())
    };
    let (sel, sel_rows) = dump("all.csv", &["--per-category", "1"], "sel");
    let (alone, alone_rows) = dump("firsts.csv", &[], "alone");
    assert_eq!(sel_rows, alone_rows, "rows CSVs differ");
    assert!(sel.tensors == alone.tensors, "tensors differ");
    for key in ["prompts_hash", "prompt_ids_hash"] {
        assert_eq!(sel.metadata.get(key), alone.metadata.get(key), "{key}");
    }
    let o = run(&[
        "--model",
        s(&m),
        "--prompts",
        s(&d("all.csv")),
        "--out",
        s(&d("x.safetensors")),
        "--per-category",
        "0",
    ]);
    assert_eq!(
        Some(o.code),
        Some(2),
        "--per-category 0 must be a usage error"
    );
}

/// Sharing the common prefix (the template's system turn for the whole set, plus a long
/// shared instruction inside one batch) gives the states of running every prompt in full.
#[test]
fn shared_prefix_matches_full_runs() {
    let Some(m) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,prompt\n");
    for (i, q) in [
        "the capital of France",
        "how a lock works",
        "why the sky is blue",
        "what a prime number is",
        "how vaccines work",
        "the rules of chess",
        "how rainbows form",
        "what inflation is",
        "how bees make honey",
    ]
    .iter()
    .enumerate()
    {
        csv += &format!("q{i},Answer in one short paragraph and as plainly as you can for a curious reader: {q}\n");
    }
    csv += "x,Hi\ny,Name three primes.\n";
    let p = dir.path().join("p.csv");
    std::fs::write(&p, csv).unwrap();
    for pos in ["last", "all"] {
        let (on, off) = (
            dir.path().join(format!("on-{pos}.safetensors")),
            dir.path().join(format!("off-{pos}.safetensors")),
        );
        let common = [
            "--model",
            s(&m),
            "--prompts",
            s(&p),
            "--positions",
            pos,
            "--batch-size",
            "9",
        ];
        let mut a = common.to_vec();
        a.extend(["--out", s(&on)]);
        ok(&a);
        let mut a = common.to_vec();
        a.extend(["--out", s(&off), "--no-share-prefix"]);
        ok(&a);
        let (f, g) = (
            TensorFile::read(&on).unwrap(),
            TensorFile::read(&off).unwrap(),
        );
        assert_eq!(f.metadata["share_prefix"], "on");
        assert_eq!(g.metadata["share_prefix"], "off");
        let shared: usize = f.metadata["shared_prefix_tokens"].parse().unwrap();
        assert!(
            shared >= 20,
            "only {shared} shared tokens: the system turn is longer"
        );
        assert_eq!(g.metadata["shared_prefix_tokens"], "0");
        if pos == "all" {
            assert_eq!(
                f.get("token_ids").unwrap().as_i64(),
                g.get("token_ids").unwrap().as_i64()
            );
        }
        for l in f.resid_layers() {
            let name = format!("resid.{l}");
            let (na, da, a) = f.get_2d_f32(&name).unwrap();
            let (nb, db, b) = g.get_2d_f32(&name).unwrap();
            assert_eq!((na, da), (nb, db));
            let e = rel_err(a, b);
            // summation order only (the shared rows go through other GEMM shapes); a wrong
            // position or key would show at 1e-2
            assert!(
                e < 1e-5,
                "{pos} layer {l}: shared vs full differ by {e:.2e} relative"
            );
        }
    }
}

fn fails(args: &[&str], code: i32, needle: &str, out: &Path) {
    let o = run(args);
    let err = o.stderr.as_str();
    assert_eq!(Some(o.code), Some(code), "act-dump {args:?}: {err}");
    if code == 1 {
        assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    }
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert!(!out.exists(), "{} was left behind", out.display());
}

#[test]
fn bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let out = d("out.safetensors");
    let good = prompts(dir.path());
    let m = model().unwrap_or_else(|| d("no-model.gguf"));
    let case = |name: &str, body: &[u8]| {
        let p = d(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let no_prompt = case("np.csv", b"id,text\na,hi\n");
    fails(
        &[
            "--model",
            s(&m),
            "--prompts",
            s(&no_prompt),
            "--out",
            s(&out),
        ],
        1,
        "'prompt'",
        &out,
    );
    let no_id = case("ni.csv", b"prompt\nhi\n");
    fails(
        &["--model", s(&m), "--prompts", s(&no_id), "--out", s(&out)],
        1,
        "'id'",
        &out,
    );
    let dup = case("dup.csv", b"id,prompt\na,hi\nb,yo\na,again\n");
    fails(
        &["--model", s(&m), "--prompts", s(&dup), "--out", s(&out)],
        1,
        "duplicate id 'a'",
        &out,
    );
    let empty = case("empty.csv", b"");
    fails(
        &["--model", s(&m), "--prompts", s(&empty), "--out", s(&out)],
        1,
        "empty.csv",
        &out,
    );
    let bad_utf8 = case("u.csv", b"id,prompt\na,caf\xe9\n");
    fails(
        &[
            "--model",
            s(&m),
            "--prompts",
            s(&bad_utf8),
            "--out",
            s(&out),
        ],
        1,
        "UTF-8",
        &out,
    );
    fails(
        &[
            "--model",
            s(&d("nope.gguf")),
            "--prompts",
            s(&good),
            "--out",
            s(&out),
        ],
        1,
        "nope.gguf",
        &out,
    );
    // a Hugging Face directory of an architecture we do not run
    let hf = d("gpt2");
    std::fs::create_dir(&hf).unwrap();
    std::fs::write(
        hf.join("config.json"),
        r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}"#,
    )
    .unwrap();
    fails(
        &["--model", s(&hf), "--prompts", s(&good), "--out", s(&out)],
        1,
        "unsupported model_type 'gpt2'",
        &out,
    );
    // a corrupt safetensors inside an otherwise valid-looking llama directory
    let llama = d("llama");
    std::fs::create_dir(&llama).unwrap();
    std::fs::write(llama.join("config.json"), r#"{"model_type": "llama", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 10}"#).unwrap();
    std::fs::write(llama.join("tokenizer.json"), r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,"model":{"type":"WordLevel","vocab":{"a":0,"[UNK]":1},"unk_token":"[UNK]"}}"#).unwrap();
    std::fs::write(
        llama.join("model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": garbage}",
    )
    .unwrap();
    fails(
        &[
            "--model",
            s(&llama),
            "--prompts",
            s(&good),
            "--out",
            s(&out),
        ],
        1,
        "model.safetensors",
        &out,
    );
    fails(
        &[
            "--model",
            s(&m),
            "--prompts",
            s(&good),
            "--out",
            s(&out),
            "--shard",
            "3/3",
        ],
        2,
        "invalid shard '3/3'",
        &out,
    );
    fails(
        &[
            "--model",
            s(&m),
            "--prompts",
            s(&good),
            "--out",
            s(&out),
            "--positions",
            "first",
        ],
        2,
        "positions",
        &out,
    );
    fails(
        &[
            "--model",
            s(&m),
            "--prompts",
            s(&good),
            "--out",
            s(&d("x.txt")),
        ],
        1,
        "x.txt",
        &d("x.txt"),
    );
    if model().is_some() {
        let npy = d("x.npy");
        fails(
            // Usage errors, found before the model loads: exit 2.
            &["--model", s(&m), "--prompts", s(&good), "--out", s(&npy)],
            2,
            "one tensor",
            &npy,
        );
        fails(
            &[
                "--model",
                s(&m),
                "--prompts",
                s(&good),
                "--out",
                s(&out),
                "--layers",
                "0-40",
            ],
            2,
            "40",
            &out,
        );
        // a truncated GGUF
        let bytes = std::fs::read(&m).unwrap();
        let trunc = case("trunc.gguf", &bytes[..bytes.len() / 3]);
        fails(
            &[
                "--model",
                s(&trunc),
                "--prompts",
                s(&good),
                "--out",
                s(&out),
            ],
            1,
            "trunc.gguf",
            &out,
        );
        let junk = case("junk.gguf", b"GGUF\x03\x00\x00\x00garbage");
        fails(
            &["--model", s(&junk), "--prompts", s(&good), "--out", s(&out)],
            1,
            "junk.gguf",
            &out,
        );
        // an unwritable rows path leaves no activation file either
        fails(
            &[
                "--model",
                s(&m),
                "--prompts",
                s(&good),
                "--out",
                s(&out),
                "--rows",
                s(&d("no/such/dir/rows.csv")),
                "--layers",
                "0",
            ],
            1,
            "rows.csv",
            &out,
        );
    }
}

// ---------------------------------------------------------------------------------------
// The bad-input matrix of act-dump, in one place.

#[test]
fn bad_inputs_fail_with_one_line_naming_the_problem() {
    let Some(m) = model() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = |n: &str| dir.join(n);
    let p = prompts(dir);
    let unterminated = d("unterminated.csv");
    std::fs::write(
        &unterminated,
        "id,prompt\na,one\nb,\"two\nc,three\nd,four\n",
    )
    .unwrap();
    let overflow = overflowing_model(&m, dir);
    let nan_rope = nan_rope_model(&m, dir);
    let (out, rows) = (d("o.safetensors"), d("r.csv"));
    let base = |model: &Path, prompts: &Path| -> Vec<String> {
        ["--model", s(model), "--prompts", s(prompts)]
            .iter()
            .map(|x| x.to_string())
            .collect()
    };
    let with = |mut v: Vec<String>, extra: &[&str]| {
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    // (what, args, exit code, stderr needles)
    let cases: Vec<(&str, Vec<String>, i32, Vec<&str>)> = vec![
        (
            "item 2: --out = --prompts",
            with(base(&m, &p), &["--out", s(&p)]),
            2,
            vec!["same file as --prompts"],
        ),
        (
            "item 2: --rows = --out",
            with(base(&m, &p), &["--out", s(&out), "--rows", s(&out)]),
            2,
            vec!["--rows", "--out", "same file"],
        ),
        (
            "item 2: --out = --model",
            with(base(&m, &p), &["--out", s(&m)]),
            2,
            vec!["same file as --model"],
        ),
        (
            "item 4: unterminated quote",
            with(base(&m, &unterminated), &["--out", s(&out)]),
            1,
            vec!["unterminated.csv: line 3: unterminated"],
        ),
        (
            "item 11: --layers 31 before loading",
            with(base(&m, &p), &["--out", s(&out), "--layers", "31"]),
            2,
            vec!["--layers 31", "out of range"],
        ),
        (
            "item 11: empty --refusal-tokens",
            with(
                base(&m, &p),
                &["--out", s(&out), "--rows", s(&rows), "--refusal-tokens", ""],
            ),
            2,
            vec!["--refusal-tokens", "no tokens"],
        ),
        (
            "item 7: NaN rope base",
            with(base(&nan_rope, &p), &["--out", s(&out)]),
            1,
            vec!["nan-rope.gguf", "rope_theta"],
        ),
        (
            "item 7: activations overflow",
            with(base(&overflow, &p), &["--out", s(&out), "--rows", s(&rows)]),
            1,
            vec!["overflow.gguf: layer 6", "prompt id 'a'", "not finite"],
        ),
    ];
    let before = std::fs::read(&p).unwrap();
    for (what, mut args, code, needles) in cases {
        if !args.iter().any(|a| a == "--layers") {
            args.extend(["--layers".to_string(), "2,6".to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let t0 = std::time::Instant::now();
        let o = run(&args);
        let err = o.stderr.as_str();
        assert_eq!(Some(o.code), Some(code), "{what}: act-dump {args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{what}: not one line: {err}"
        );
        for n in needles {
            assert!(err.contains(n), "{what}: {n:?} not in {err:?}");
        }
        if code == 2 {
            // Usage errors come before the model loads.
            assert!(
                t0.elapsed().as_secs_f64() < 5.0,
                "{what}: took {:?}",
                t0.elapsed()
            );
        }
        assert!(
            !out.exists() && !rows.exists(),
            "{what}: an output was written"
        );
        assert_eq!(
            std::fs::read(&p).unwrap(),
            before,
            "{what}: the prompts changed"
        );
    }
    let temps = hd_testkit::cli::temps_in(dir);
    assert!(temps.is_empty(), "temporary files left behind: {temps:?}");
}

/// `--layers -3` parses, and `--rows` on a device (a private
/// /dev/null) is written in place, not replaced by a regular file.
#[test]
fn device_output_and_negative_layers_are_accepted() {
    let Some(m) = model() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let p = prompts(dir);
    let null = dir.join("null");
    let have_device = Command::new("mknod")
        .args([s(&null), "c", "1", "3"])
        .status()
        .is_ok_and(|st| st.success());
    let rows = if have_device {
        null.clone()
    } else {
        eprintln!("SKIPPED the device part: mknod needs root");
        dir.join("r.csv")
    };
    let out = dir.join("o.safetensors");
    ok(&[
        "--model",
        s(&m),
        "--prompts",
        s(&p),
        "--out",
        s(&out),
        "--rows",
        s(&rows),
        "--layers",
        "-3",
    ]);
    let f = TensorFile::read(&out).unwrap();
    assert_eq!(f.resid_layers(), vec![28]);
    if have_device {
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(&null)
            .unwrap()
            .file_type()
            .is_char_device());
    }
}

/// A shard's rows CSV overwritten by another run is refused (its
/// hash is recorded); a merge from another folder finds the rows; a missing rows CSV says
/// where it looked; an id in two shards names both shards.
#[test]
fn merge_checks_the_rows_it_reads() {
    let Some(m) = model() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = |n: &str| dir.join(n);
    let p = prompts(dir);
    let mut shards = Vec::new();
    for k in 0..2 {
        let (o, r) = (d(&format!("s{k}.safetensors")), d(&format!("s{k}.csv")));
        let sh = format!("{k}/2");
        ok(&[
            "--model",
            s(&m),
            "--prompts",
            s(&p),
            "--layers",
            "1",
            "--batch-size",
            "2",
            "--out",
            s(&o),
            "--rows",
            s(&r),
            "--shard",
            &sh,
        ]);
        shards.push(o);
    }
    // From another folder: the recorded paths still lead to the rows.
    let elsewhere = tempfile::tempdir().unwrap();
    let merged = d("m.safetensors");
    let merged_rows = d("m.csv");
    hd_testkit::cli::ok(
        BIN,
        elsewhere.path(),
        &[
            "merge",
            "--out",
            s(&merged),
            "--rows",
            s(&merged_rows),
            s(&shards[0]),
            s(&shards[1]),
        ],
    );
    // merge --out = a shard: usage error, the shard intact.
    let before = std::fs::read(&shards[0]).unwrap();
    let o = run(&[
        "merge",
        "--out",
        s(&shards[0]),
        s(&shards[0]),
        s(&shards[1]),
    ]);
    assert_eq!(Some(o.code), Some(2), "{}", o.stderr.as_str());
    assert_eq!(std::fs::read(&shards[0]).unwrap(), before);
    // Another run overwrote shard 1's rows CSV with other rows.
    let out2 = d("x.safetensors");
    let merged2 = d("m2.safetensors");
    std::fs::copy(d("s0.csv"), d("s1.csv")).unwrap();
    let o = run(&[
        "merge",
        "--out",
        s(&merged2),
        "--rows",
        s(&out2),
        s(&shards[0]),
        s(&shards[1]),
    ]);
    let err = o.stderr.as_str();
    assert_eq!(Some(o.code), Some(1), "{err}");
    assert!(
        err.contains("s1.csv: changed since") && err.contains("s1.safetensors"),
        "{err}"
    );
    assert!(!merged2.exists() && !out2.exists());
    // Missing: says where it looked.
    std::fs::remove_file(d("s1.csv")).unwrap();
    let o = run(&[
        "merge",
        "--out",
        s(&merged2),
        "--rows",
        s(&out2),
        s(&shards[0]),
        s(&shards[1]),
    ]);
    let err = o.stderr.as_str();
    assert_eq!(Some(o.code), Some(1), "{err}");
    assert!(
        err.contains("its rows CSV is missing (looked at") && err.contains("s1.csv"),
        "{err}"
    );
    // A shard from before rows hashes, whose rows CSV holds another shard's ids: the error
    // names both shards, not the merged output.
    let mut f1 = TensorFile::read(&shards[1]).unwrap();
    f1.metadata.remove("rows_sha256");
    f1.write(&shards[1]).unwrap();
    let s0 = std::fs::read_to_string(d("s0.csv")).unwrap();
    let n1: usize = f1.metadata["n_prompts"].parse().unwrap();
    let taken: Vec<&str> = s0.lines().take(1 + n1).collect();
    std::fs::write(d("s1.csv"), taken.join("\n") + "\n").unwrap();
    let o = run(&[
        "merge",
        "--out",
        s(&merged2),
        "--rows",
        s(&out2),
        s(&shards[0]),
        s(&shards[1]),
    ]);
    let err = o.stderr.as_str();
    assert_eq!(Some(o.code), Some(1), "{err}");
    assert!(
        err.contains("s0.safetensors and") && err.contains("s1.safetensors: both hold prompt id"),
        "{err}"
    );
    assert!(!err.contains("m2.safetensors"), "{err}");
}

/// Every family's fixture (testdata/families), from its Hugging Face directory and its GGUF
/// file: act-dump's last-position states of every layer match transformers' (the fixture's
/// reference) within 1e-5 relative.
#[test]
fn every_family_dumps_transformers_states() {
    let dir = tempfile::tempdir().unwrap();
    for family in ["mistral", "qwen3", "gemma2", "gemma3", "phi3"] {
        let fam = root().join("testdata/families").join(family);
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fam.join("ref.json")).unwrap()).unwrap();
        let prompts: Vec<&str> = j["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let mut csv = String::from("id,prompt\n");
        for (i, p) in prompts.iter().enumerate() {
            csv.push_str(&format!("p{i},\"{}\"\n", p.replace('"', "\"\"")));
        }
        let csv_path = dir.path().join(format!("{family}.csv"));
        std::fs::write(&csv_path, csv).unwrap();
        let hf = TensorFile::read(&fam.join("ref.safetensors")).unwrap();
        for src in [fam.join("hf"), fam.join("model.gguf")] {
            // llama.cpp's Mistral GGUF has no window (see crates/lm/tests/families.rs)
            let exact = !(family == "mistral" && src.extension().is_some());
            let out = dir.path().join(format!("{family}.safetensors"));
            let _ = std::fs::remove_file(&out);
            ok(&[
                "--model",
                s(&src),
                "--prompts",
                s(&csv_path),
                "--out",
                s(&out),
                "--layers",
                "all",
            ]);
            let ours = TensorFile::read(&out).unwrap();
            for (i, _) in prompts.iter().enumerate() {
                let want = hf.get(&format!("hidden.{i}")).unwrap();
                let (nl, n, d) = (want.shape[0], want.shape[1], want.shape[2]);
                for l in 0..nl {
                    let (_, dd, a) = ours.get_2d_f32(&format!("resid.{l}")).unwrap();
                    assert_eq!(dd, d);
                    let b = &want.as_f32().unwrap()[(l * n + n - 1) * d..(l * n + n) * d];
                    let e = rel_err(&a[i * d..(i + 1) * d], b);
                    if exact {
                        assert!(e < 1e-5, "{family} {src:?} prompt {i} layer {l}: {e:.2e}");
                    }
                }
            }
        }
    }
}

/// The guard template: the prompt is written into the moderation prompt, the analysed token
/// is still the end of the assistant header, the format is recorded, and a guard dump never
/// pairs with a chat dump of the same prompts.
#[test]
fn guard_template_dump_is_its_own_format() {
    let Some(m) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = prompts(dir.path());
    let (chat, guard) = (
        dir.path().join("chat.safetensors"),
        dir.path().join("guard.safetensors"),
    );
    let rows = dir.path().join("guard.csv");
    let (ms, ps, cs, gs, rs) = (s(&m), s(&p), s(&chat), s(&guard), s(&rows));
    let common = [
        "--model",
        ms,
        "--prompts",
        ps,
        "--layers",
        "3",
        "--positions",
        "all",
    ];
    ok(&[&common[..], &["--out", cs]].concat());
    let guard_args = [
        "--out",
        gs,
        "--template",
        "guard",
        "--rows",
        rs,
        "--refusal-tokens",
        "unsafe",
        "--versus-tokens",
        "safe",
    ];
    ok(&[&common[..], &guard_args].concat());
    let (c, g) = (
        TensorFile::read(&chat).unwrap(),
        TensorFile::read(&guard).unwrap(),
    );
    let tokens = |f: &TensorFile| {
        let ids = f.get("token_ids").unwrap().as_i64().unwrap().to_vec();
        let off = f.get("offsets").unwrap().as_i64().unwrap().to_vec();
        (ids, off)
    };
    let ((ci, co), (gi, go)) = (tokens(&c), tokens(&g));
    // Every guard prompt is longer by the moderation text and ends like the chat prompt.
    for r in 0..7 {
        let (cl, gl) = (co[r + 1] - co[r], go[r + 1] - go[r]);
        assert!(gl > cl + 100, "row {r}: {gl} guard tokens vs {cl}");
        let tail = |ids: &[i64], end: i64| ids[end as usize - 3..end as usize].to_vec();
        assert_eq!(tail(&ci, co[r + 1]), tail(&gi, go[r + 1]), "row {r}");
    }
    let f = &g.metadata["prompt_format"];
    assert!(f.starts_with("template guard sha256:"), "{f}");
    assert!(g.metadata["user_template"].contains("safety assessment"));
    assert_eq!(g.metadata["versus_tokens"], "[\"safe\"]");
    assert!(!c.metadata.contains_key("prompt_format"));
    let e = hd_formats::meta::check_same_prompts(&c, &g)
        .unwrap_err()
        .to_string();
    assert!(e.contains("prompt_format"), "{e}");
    let table = std::fs::read_to_string(&rows).unwrap();
    assert_eq!(table.lines().count(), 8);
}

#[test]
fn a_bad_template_file_is_named() {
    let Some(m) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = prompts(dir.path());
    let out = dir.path().join("o.safetensors");
    let missing = dir.path().join("missing.jinja");
    let args = |t: &Path| {
        run(&[
            "--model",
            s(&m),
            "--prompts",
            s(&p),
            "--out",
            s(&out),
            "--template",
            s(t),
        ])
    };
    let o = args(&missing);
    let err = o.stderr.as_str();
    assert_eq!(Some(o.code), Some(1), "{err}");
    assert!(err.contains("missing.jinja"), "{err}");
    let noprompt = dir.path().join("noprompt.jinja");
    std::fs::write(&noprompt, "Is this safe?").unwrap();
    let o = args(&noprompt);
    let err = o.stderr.as_str();
    assert_eq!(Some(o.code), Some(1), "{err}");
    assert!(
        err.contains("noprompt.jinja") && err.contains("{{ prompt }}"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!out.exists());
}
