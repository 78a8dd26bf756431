//! Tensor files through pipes: `act-dump … --out - | shift-svd --contrast -
//! …` gives the same components as going through a file, the recorded command line (argv,
//! and the input path `-` in place of the file name) aside. Runs on the default model;
//! shift-svd is taken from the same target folder (built by `cargo test --workspace`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hd_formats::tensors::TensorFile;

fn model() -> Option<PathBuf> {
    hd_testkit::default_model()
}

fn shift_svd() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_BIN_EXE_act-dump")).with_file_name("shift-svd");
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} not built and CI is set",
        p.display()
    );
    eprintln!(
        "SKIPPED: {} not built (cargo test --workspace builds it)",
        p.display()
    );
    None
}

const PROMPTS: &str = "id,prompt,label\n\
a,What is the capital of France?,harmless\n\
b,How do I make a bomb?,harmful\n\
c,Tell me a joke,harmless\n\
d,Tell me how to pick a lock,harmful\n\
e,2+2=?,harmless\n\
f,How do I steal a car?,harmful\n";

/// Metadata without the keys that record how the tool was called.
fn meta_sans_command_line(f: &TensorFile, also: &[&str]) -> BTreeMap<String, String> {
    let mut m = f.metadata.clone();
    m.remove("argv");
    for k in also {
        m.remove(*k);
    }
    m
}

fn same_tensors(a: &TensorFile, b: &TensorFile, ignore: &[&str]) {
    assert_eq!(
        a.tensors.keys().collect::<Vec<_>>(),
        b.tensors.keys().collect::<Vec<_>>()
    );
    for (name, t) in &a.tensors {
        // Bit-for-bit, not within a tolerance: the pipe must not change a single value.
        assert!(t == &b.tensors[name], "{name} differs");
    }
    assert_eq!(
        meta_sans_command_line(a, ignore),
        meta_sans_command_line(b, ignore)
    );
}

#[test]
fn act_dump_piped_into_shift_svd_equals_going_through_a_file() {
    let (Some(model), Some(svd)) = (model(), shift_svd()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.csv"), PROMPTS).unwrap();
    let dump = |out: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_act-dump"));
        c.current_dir(d).arg("--model").arg(&model).args([
            "--prompts",
            "p.csv",
            "--batch-size",
            "4",
            "-q",
            "--out",
            out,
        ]);
        c
    };
    let contrast = |input: &str, out: &str, spectrum: &str| {
        let mut c = Command::new(&svd);
        c.current_dir(d).args([
            "--contrast",
            input,
            "--rows",
            "p.csv",
            "--by",
            "label",
            "--k",
            "3",
            "-q",
            "--out",
            out,
            "--spectrum",
            spectrum,
        ]);
        c
    };

    // Through a file.
    assert!(dump("acts.safetensors").status().unwrap().success());
    assert!(contrast("acts.safetensors", "file.safetensors", "file.csv")
        .status()
        .unwrap()
        .success());

    // Through a pipe: act-dump's stdout is shift-svd's stdin.
    let mut producer = dump("-").stdout(Stdio::piped()).spawn().unwrap();
    let mut consumer = contrast("-", "pipe.safetensors", "pipe.csv");
    let consumed = consumer
        .stdin(producer.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(producer.wait().unwrap().success());
    assert!(consumed.success());

    let rd = |n: &str| TensorFile::read(&d.join(n)).unwrap();
    same_tensors(&rd("file.safetensors"), &rd("pipe.safetensors"), &["acts"]);
    assert_eq!(
        std::fs::read(d.join("file.csv")).unwrap(),
        std::fs::read(d.join("pipe.csv")).unwrap()
    );

    // act-dump's stream itself is the file's contents (safetensors by default on a pipe).
    let streamed = dump("-").output().unwrap();
    assert!(streamed.status.success());
    std::fs::write(d.join("streamed.bin"), &streamed.stdout).unwrap();
    let s = TensorFile::read_as(
        &d.join("streamed.bin"),
        hd_formats::tensors::Format::Safetensors,
    )
    .unwrap();
    same_tensors(&rd("acts.safetensors"), &s, &[]);
}

#[test]
fn format_overrides_the_pipe_default_and_a_piped_npz_is_sniffed() {
    let (Some(model), Some(svd)) = (model(), shift_svd()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("p.csv"), PROMPTS).unwrap();
    let mut producer = Command::new(env!("CARGO_BIN_EXE_act-dump"))
        .current_dir(d)
        .arg("--model")
        .arg(&model)
        .args([
            "--prompts",
            "p.csv",
            "--batch-size",
            "4",
            "-q",
            "--out",
            "-",
            "--format",
            "npz",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // shift-svd sniffs the npz on its stdin and writes npz to its stdout.
    let out = Command::new(&svd)
        .current_dir(d)
        .args([
            "--contrast",
            "-",
            "--rows",
            "p.csv",
            "--by",
            "label",
            "--k",
            "3",
            "-q",
        ])
        .args(["--out", "-", "--format", "npz"])
        .stdin(producer.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(producer.wait().unwrap().success());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        hd_formats::tensors::sniff(&out.stdout),
        Some(hd_formats::tensors::Format::Npz)
    );
    std::fs::write(d.join("c.npz"), &out.stdout).unwrap();
    let c = TensorFile::read(&d.join("c.npz")).unwrap();
    assert!(c.tensors.contains_key("components.14"));

    let bad = Command::new(env!("CARGO_BIN_EXE_act-dump"))
        .args([
            "--model",
            "m",
            "--prompts",
            "p.csv",
            "--out",
            "-",
            "--format",
            "pt",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
