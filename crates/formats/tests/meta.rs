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

/// A file made from `csv`, as act-dump records it.
fn made_from(path: &str, csv: &str) -> TensorFile {
    let t = PromptTable::from_bytes("p.csv", csv.as_bytes()).unwrap();
    let mut m = BTreeMap::new();
    meta::set_prompt_hashes(&mut m, &t);
    TensorFile {
        path: path.to_string(),
        ..TensorFile::new(m)
    }
}

#[test]
fn files_with_different_ids_are_refused() {
    let a = file("base.safetensors", Some("sha256:aa"));
    let b = file("tuned.safetensors", Some("sha256:bb"));
    assert_eq!(
        check_same_prompts(&a, &b).unwrap_err().to_string(),
        "base.safetensors and tuned.safetensors were made from different prompts: prompt_ids_hash sha256:aa vs sha256:bb"
    );
}

#[test]
fn same_ids_with_other_prompt_text_are_refused_naming_the_first_row() {
    let a = made_from(
        "a.safetensors",
        "id,prompt\nb0,hi\nb1,capital of France?\nb2,x\n",
    );
    let b = made_from(
        "b.safetensors",
        "id,prompt\nb0,hi\nb1,capital of Peru?\nb2,x\n",
    );
    assert_eq!(
        a.metadata[meta::PROMPT_IDS_HASH],
        b.metadata[meta::PROMPT_IDS_HASH]
    );
    let e = check_same_prompts(&a, &b).unwrap_err().to_string();
    assert_eq!(
        e,
        "a.safetensors and b.safetensors were made from different prompts: prompt row 2 differs in id or text"
    );
    assert_eq!(check_same_prompts(&a, &a.clone()).unwrap(), None);
    // Against the table itself, the row's id is named too.
    let t =
        PromptTable::from_bytes("b.csv", b"id,prompt\nb0,hi\nb1,capital of Peru?\nb2,x\n").unwrap();
    let e = check_prompts_match(&a, &t).unwrap_err().to_string();
    assert_eq!(
        e,
        "a.safetensors and b.csv were made from different prompts: prompt row 2 (id 'b1' in b.csv) differs in id or text"
    );
    // A reordering is a difference too; a shorter set is named by its count.
    let c = made_from("c.safetensors", "id,prompt\nb0,hi\nb1,capital of France?\n");
    let e = check_same_prompts(&a, &c).unwrap_err().to_string();
    assert!(e.ends_with("3 prompt rows vs 2"), "{e}");
}

#[test]
fn another_prompt_format_is_refused() {
    let a = made_from("a.st", "id,prompt\nx,1\n");
    let mut b = a.clone();
    b.path = "b.st".into();
    b.metadata
        .insert(meta::PROMPT_FORMAT.into(), "no template".into());
    // A file that records its prompts but no format was made with the model's chat
    // template: against a guard-template or raw-text dump of the same prompts it must fail.
    let e = check_same_prompts(&a, &b).unwrap_err().to_string();
    assert!(
        e.contains("prompt_format 'the model's chat template' vs 'no template'"),
        "{e}"
    );
    let mut g = a.clone();
    g.metadata.insert(
        meta::PROMPT_FORMAT.into(),
        "template guard sha256:11".into(),
    );
    assert!(check_same_prompts(&g, &a).is_err());
    assert_eq!(check_same_prompts(&g, &g.clone()).unwrap(), None);
    // A plain export records nothing, format included: still only a warning.
    let npy = file("c.npy", None);
    assert!(check_same_prompts(&g, &npy).unwrap().is_some());
    let mut c = a.clone();
    c.metadata
        .insert(meta::PROMPT_FORMAT.into(), "system prompt sha256:00".into());
    let e = check_same_prompts(&c, &b).unwrap_err().to_string();
    assert!(
        e.contains("prompt_format 'system prompt sha256:00' vs 'no template'"),
        "{e}"
    );
}

#[test]
fn files_without_the_text_hash_pass_with_a_warning() {
    let old = file("old.safetensors", Some("sha256:aa"));
    let new = made_from("new.safetensors", "id,prompt\nx,1\n");
    let w = check_same_prompts(&old, &file("old2.safetensors", Some("sha256:aa")))
        .unwrap()
        .expect("a warning");
    assert!(
        w.starts_with("old.safetensors records no 'prompts_hash'"),
        "{w}"
    );
    assert!(w.contains("(their ids agree)"), "{w}");
    let npy = file("c.npy", None);
    let w = check_same_prompts(&new, &npy).unwrap().expect("a warning");
    assert!(w.starts_with("c.npy records no 'prompts_hash'"), "{w}");
    let t = PromptTable::from_bytes("p.csv", b"id,prompt\nx,1\n").unwrap();
    assert_eq!(check_prompts_match(&new, &t).unwrap(), None);
    assert!(check_prompts_match(&npy, &t).unwrap().is_some());
}

#[test]
fn prompt_keys_are_carried_to_outputs() {
    let a = made_from("a.st", "id,prompt\nx,1\n");
    let mut out = BTreeMap::new();
    meta::copy_prompt_keys(&a.metadata, &mut out);
    assert_eq!(out, a.metadata);
}
