//! Metadata helpers.

use std::collections::BTreeMap;

use hd_formats::meta::{self, base_metadata, check_prompts_match, check_same_prompts, sha256_file};
use hd_formats::prompts::PromptTable;
use hd_formats::tensors::TensorFile;

#[test]
fn base_metadata_has_tool_version_argv() {
    let m = base_metadata("act-dump", "0.1.0");
    assert_eq!(m["tool"], "act-dump");
    assert_eq!(m["version"], "0.1.0");
    let argv: Vec<String> = serde_json::from_str(&m["argv"]).unwrap();
    assert_eq!(argv, std::env::args().collect::<Vec<_>>());
}

#[test]
fn sha256_of_a_file() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("x");
    std::fs::write(&p, b"abc").unwrap();
    // FIPS 180-2 test vector for "abc".
    assert_eq!(
        sha256_file(&p).unwrap(),
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let e = sha256_file(&d.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing: cannot open: "), "{e}");
}

fn file(path: &str, hash: Option<&str>) -> TensorFile {
    let mut m = BTreeMap::new();
    if let Some(h) = hash {
        m.insert(meta::PROMPT_IDS_HASH.to_string(), h.to_string());
    }
    TensorFile {
        path: path.to_string(),
        ..TensorFile::new(m)
    }
}

#[test]
fn prompt_set_check() {
    let a = file("base.safetensors", Some("sha256:aa"));
    let b = file("tuned.safetensors", Some("sha256:bb"));
    let c = file("c.npy", None);
    assert_eq!(
        check_same_prompts(&a, &b).unwrap_err().to_string(),
        "base.safetensors and tuned.safetensors were made from different prompts (prompt_ids_hash sha256:aa vs sha256:bb)"
    );
    check_same_prompts(&a, &a.clone()).unwrap();
    check_same_prompts(&a, &c).unwrap();

    let t = PromptTable::from_bytes("p.csv", b"id,prompt\nx,1\n").unwrap();
    let mut m = BTreeMap::new();
    meta::set_prompt_ids_hash(&mut m, &t);
    let good = TensorFile {
        path: "g.st".into(),
        ..TensorFile::new(m)
    };
    check_prompts_match(&good, &t).unwrap();
    let e = check_prompts_match(&a, &t).unwrap_err().to_string();
    assert!(
        e.starts_with("base.safetensors and p.csv were made from different prompts"),
        "{e}"
    );
}
