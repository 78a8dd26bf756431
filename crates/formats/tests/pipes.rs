//! Tensor files through pipes: every format written to a FIFO streams without
//! a temporary file and reads back from one with its format sniffed from the magic bytes;
//! `-` and an extension-less FIFO default to safetensors; bytes that are no tensor file are a
//! one-line error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use hd_formats::tensors::{resid_name, sniff, Format, Tensor, TensorFile};

fn sample() -> TensorFile {
    let mut meta = BTreeMap::new();
    meta.insert("tool".to_string(), "test".to_string());
    let mut f = TensorFile::new(meta);
    for l in [0, 3, 12] {
        let data = (0..12).map(|i| (i * (l + 1)) as f32 * 0.25 - 1.0).collect();
        f.insert(resid_name(l), Tensor::f32(vec![3, 4], data).unwrap());
    }
    f
}

fn fifo(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let ok = Command::new("mkfifo").arg(&p).status().map(|s| s.success());
    assert!(matches!(ok, Ok(true)), "mkfifo {}", p.display());
    p
}

/// Writes `file` into the FIFO `p` (in `format`, or the path's default) from a thread while
/// this one reads it back.
fn through(p: &Path, file: &TensorFile, format: Option<Format>) -> TensorFile {
    let (wp, wf) = (p.to_path_buf(), file.clone());
    let writer = std::thread::spawn(move || match format {
        Some(f) => wf.write_as(&wp, f),
        None => wf.write(&wp),
    });
    let got = TensorFile::read(p);
    writer.join().unwrap().unwrap();
    got.unwrap()
}

#[test]
fn every_format_round_trips_through_a_fifo_and_is_sniffed() {
    let dir = tempfile::tempdir().unwrap();
    let f = sample();
    for (i, format) in [Format::Safetensors, Format::Npz].into_iter().enumerate() {
        let p = fifo(dir.path(), &format!("pipe{i}"));
        let got = through(&p, &f, Some(format));
        assert_eq!(got.tensors, f.tensors, "{format}");
        assert_eq!(got.metadata, f.metadata, "{format}");
    }
    // .npy holds one tensor and no metadata.
    let mut one = TensorFile::new(BTreeMap::new());
    one.insert(resid_name(0), f.tensors[&resid_name(3)].clone());
    let p = fifo(dir.path(), "pipe.npy");
    assert_eq!(through(&p, &one, None).tensors, one.tensors);
    // No extension: safetensors by default, metadata kept.
    let p = fifo(dir.path(), "pipe-default");
    assert_eq!(through(&p, &f, None).metadata, f.metadata);
    assert_eq!(
        Format::from_path(Path::new("-")).unwrap(),
        Format::Safetensors
    );
}

#[test]
fn streamed_bytes_equal_the_file_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let f = sample();
    for (ext, format) in [("safetensors", Format::Safetensors), ("npz", Format::Npz)] {
        let file = dir.path().join(format!("a.{ext}"));
        f.write(&file).unwrap();
        let p = fifo(dir.path(), &format!("s-{ext}"));
        let (wp, wf) = (p.clone(), f.clone());
        let w = std::thread::spawn(move || wf.write_as(&wp, format));
        let streamed = std::fs::read(&p).unwrap();
        w.join().unwrap().unwrap();
        assert!(streamed == std::fs::read(&file).unwrap(), "{ext}");
        assert_eq!(sniff(&streamed), Some(format));
    }
}

#[test]
fn sniffing_rejects_what_is_no_tensor_file() {
    assert_eq!(sniff(b"\x93NUMPY\x01\x00"), Some(Format::Npy));
    assert_eq!(sniff(b"PK\x03\x04rest"), Some(Format::Npz));
    assert_eq!(sniff(b"id,prompt\n"), None);
    // A length prefix larger than the bytes is not safetensors.
    let mut st = 100u64.to_le_bytes().to_vec();
    st.extend_from_slice(b"{}");
    assert_eq!(sniff(&st), None);
    let mut st = 2u64.to_le_bytes().to_vec();
    st.extend_from_slice(b"{}");
    assert_eq!(sniff(&st), Some(Format::Safetensors));
    assert_eq!(sniff(b""), None);

    let dir = tempfile::tempdir().unwrap();
    let p = fifo(dir.path(), "csv");
    let wp = p.clone();
    let w = std::thread::spawn(move || std::fs::write(wp, b"id,prompt\na,b\n"));
    let e = TensorFile::read(&p).unwrap_err().to_string();
    w.join().unwrap().unwrap();
    assert_eq!(
        e,
        format!(
            "{}: not a tensor file: expected safetensors, .npz or .npy magic bytes, found \
             69 64 2c 70 72 6f 6d 70 (14 bytes in all)",
            p.display()
        )
    );
}
