//! No reader of hd-formats (prompt CSV, .npy, .npz, safetensors) panics
//! or allocates far beyond its input on thousands of seeded mutations of valid files.

use std::collections::BTreeMap;

use hd_formats::prompts::PromptTable;
use hd_formats::tensors::{Tensor, TensorFile};

use hd_testkit::fuzz::{fuzz, no_error_backtraces, Counting};

#[global_allocator]
static A: Counting = Counting;

fn tensor_file_bytes(ext: &str) -> Vec<u8> {
    let mut md = BTreeMap::new();
    md.insert("prompt_ids_hash".to_string(), "sha256:00".to_string());
    let mut f = TensorFile::new(md);
    let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    f.insert("resid.3", Tensor::f32(vec![4, 6], data).unwrap());
    if ext != "npy" {
        f.insert("offsets", Tensor::i64(vec![3], vec![0, 2, 4]).unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(format!("t.{ext}"));
    f.write(&p).unwrap();
    std::fs::read(&p).unwrap()
}

fn fuzz_tensor_file(ext: &str, hot: usize) {
    no_error_backtraces();
    let good = tensor_file_bytes(ext);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(format!("m.{ext}"));
    let hot = hot.min(good.len());
    fuzz(ext, &good, hot, 3000, 16, 64 << 10, |b| {
        std::fs::write(&p, b).unwrap();
        TensorFile::read(&p).is_ok()
    });
}

#[test]
fn npy_reader_never_panics_on_mutations() {
    fuzz_tensor_file("npy", 128);
}

#[test]
fn npz_reader_never_panics_on_mutations() {
    fuzz_tensor_file("npz", usize::MAX);
}

#[test]
fn safetensors_reader_never_panics_on_mutations() {
    fuzz_tensor_file("safetensors", 256);
}

#[test]
fn csv_reader_never_panics_on_mutations() {
    no_error_backtraces();
    let good = "id,prompt,label\na,\"say \"\"hi\"\"\",harmless\nb,\"two\nlines\",harmful\nc,plain,\n\u{feff}d,x,y\n";
    fuzz(
        "csv",
        good.as_bytes(),
        good.len(),
        3000,
        16,
        64 << 10,
        |b| PromptTable::from_bytes("m.csv", b).is_ok(),
    );
}
