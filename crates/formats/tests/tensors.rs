//! Tensor files: round trips in all three formats, deterministic bytes, interoperability
//! with the `safetensors` crate, and one-line errors for broken files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use hd_formats::tensors::{
    components_name, mean_shift_name, parse_name, resid_name, singular_values_name, Format, Kind,
    Tensor, TensorData, TensorFile,
};

fn sample() -> TensorFile {
    let mut meta = BTreeMap::new();
    meta.insert("tool".to_string(), "test".to_string());
    meta.insert("argv".to_string(), "[\"a\",\"b \\\"q\\\"\"]".to_string());
    meta.insert("prompt_ids_hash".to_string(), "sha256:00".to_string());
    meta.insert("ünïcode".to_string(), "✓".to_string());
    let mut f = TensorFile::new(meta);
    // Odd sizes so f64/i64 data lands at offsets that are not multiples of 8.
    f.insert(
        resid_name(10),
        Tensor::f32(vec![3, 5], (0..15).map(|i| i as f32 * 0.5 - 3.0).collect()).unwrap(),
    );
    f.insert(
        resid_name(2),
        Tensor::f32(vec![3, 5], (0..15).map(|i| (i as f32).sin()).collect()).unwrap(),
    );
    f.insert(
        singular_values_name(2),
        Tensor::f64(vec![3], vec![3.5, 1.25, f64::MIN_POSITIVE]).unwrap(),
    );
    f.insert(
        "offsets",
        Tensor::i64(vec![4], vec![0, 1, i64::MAX, -7]).unwrap(),
    );
    f.insert("scalar", Tensor::f32(vec![], vec![42.0]).unwrap());
    f.insert("empty", Tensor::f32(vec![0, 5], vec![]).unwrap());
    f
}

fn tmp(name: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(name);
    (d, p)
}

#[test]
fn safetensors_round_trip_with_metadata() {
    let (_d, p) = tmp("a.safetensors");
    let f = sample();
    f.write(&p).unwrap();
    let back = TensorFile::read(&p).unwrap();
    assert_eq!(back.tensors, f.tensors);
    assert_eq!(back.metadata, f.metadata);
    assert_eq!(back.path, p.display().to_string());
    assert_eq!(back.resid_layers(), vec![2, 10]);
    assert_eq!(back.layers_of(Kind::SingularValues), vec![2]);
}

#[test]
fn npz_round_trip_with_metadata() {
    let (_d, p) = tmp("a.npz");
    let f = sample();
    f.write(&p).unwrap();
    let back = TensorFile::read(&p).unwrap();
    assert_eq!(back.tensors, f.tensors);
    assert_eq!(back.metadata, f.metadata);
}

#[test]
fn npy_round_trip_and_naming() {
    let (d, p) = tmp("a.npy");
    let mut f = TensorFile::default();
    f.metadata.insert("tool".into(), "dropped".into());
    let t = Tensor::f64(vec![2, 3], vec![1.0, -2.0, 3.5, 0.0, 1e300, -1e-300]).unwrap();
    f.insert("whatever", t.clone());
    f.write(&p).unwrap();
    let back = TensorFile::read(&p).unwrap();
    // A 2-D array is resid.0; .npy has no room for metadata.
    assert_eq!(back.tensors.len(), 1);
    assert_eq!(back.get("resid.0").unwrap(), &t);
    assert!(back.metadata.is_empty());

    // 1-D: arr_0, i64 kept.
    let q = d.path().join("b.npy");
    let mut g = TensorFile::default();
    let i = Tensor::i64(vec![3], vec![5, -6, 7]).unwrap();
    g.insert("x", i.clone());
    g.write(&q).unwrap();
    assert_eq!(TensorFile::read(&q).unwrap().get("arr_0").unwrap(), &i);

    // 3-D [L, n, d]: one resid.{i} per leading index.
    let r = d.path().join("c.npy");
    let mut h = TensorFile::default();
    h.insert(
        "stack",
        Tensor::f32(vec![2, 2, 3], (0..12).map(|x| x as f32).collect()).unwrap(),
    );
    h.write(&r).unwrap();
    let back = TensorFile::read(&r).unwrap();
    assert_eq!(back.resid_layers(), vec![0, 1]);
    assert_eq!(
        back.get_2d_f32("resid.1").unwrap(),
        (2, 3, &[6.0, 7.0, 8.0, 9.0, 10.0, 11.0][..])
    );
}

#[test]
fn npy_needs_exactly_one_tensor() {
    let (_d, p) = tmp("two.npy");
    let e = sample().write(&p).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}: .npy holds exactly one tensor, this file has 6 (",
            p.display()
        )),
        "{e}"
    );
    assert!(!p.exists());
}

#[test]
fn writes_are_byte_identical() {
    for ext in ["safetensors", "npz", "npy"] {
        let d = tempfile::tempdir().unwrap();
        let mut f = sample();
        if ext == "npy" {
            f.tensors.retain(|k, _| k == "resid.2");
        }
        let (a, b) = (
            d.path().join(format!("a.{ext}")),
            d.path().join(format!("b.{ext}")),
        );
        f.write(&a).unwrap();
        // Same contents inserted in another order must give the same bytes.
        let mut g = TensorFile::new(f.metadata.clone());
        for (k, v) in f.tensors.iter().rev() {
            g.insert(k.clone(), v.clone());
        }
        if ext == "npz" {
            // A zip stamped with the clock (2-second resolution) would differ.
            std::thread::sleep(std::time::Duration::from_millis(2100));
        }
        g.write(&b).unwrap();
        let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        if x != y {
            let at = x
                .iter()
                .zip(&y)
                .position(|(p, q)| p != q)
                .unwrap_or(x.len().min(y.len()));
            panic!(
                "{ext}: two writes differ at byte {at} (lengths {} and {})",
                x.len(),
                y.len()
            );
        }
    }
}

#[test]
fn safetensors_header_layout() {
    let (_d, p) = tmp("h.safetensors");
    let mut f = TensorFile::default();
    f.metadata.insert("b".into(), "2".into());
    f.metadata.insert("a".into(), "1".into());
    f.insert("z", Tensor::f32(vec![1], vec![1.0]).unwrap());
    f.insert("A", Tensor::i64(vec![1], vec![2]).unwrap());
    f.write(&p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!((8 + n) % 8, 0);
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert_eq!(
        header.trim_end(),
        r#"{"__metadata__":{"a":"1","b":"2"},"A":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
    );
    assert_eq!(bytes.len(), 8 + n + 12);
}

#[test]
fn our_safetensors_read_by_the_safetensors_crate() {
    let (_d, p) = tmp("ours.safetensors");
    let f = sample();
    f.write(&p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta: BTreeMap<String, String> = meta.metadata().clone().unwrap().into_iter().collect();
    assert_eq!(meta, f.metadata);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), f.tensors.len());
    let view = st.tensor("resid.10").unwrap();
    assert_eq!(view.dtype(), safetensors::Dtype::F32);
    assert_eq!(view.shape(), &[3, 5]);
    let vals: Vec<f32> = view
        .data()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(vals, f.get("resid.10").unwrap().as_f32().unwrap());
    let off = st.tensor("offsets").unwrap();
    assert_eq!(off.dtype(), safetensors::Dtype::I64);
    let vals: Vec<i64> = off
        .data()
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(vals, vec![0, 1, i64::MAX, -7]);
}

#[test]
fn crate_safetensors_read_by_us_including_half_types() {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let f32s: Vec<u8> = [1.5f32, -2.0, 3.25, 0.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    // f16 1.0 = 0x3C00, -0.5 = 0xB800; bf16 2.0 = 0x4000, -3.0 = 0xC040.
    let f16s: Vec<u8> = [0x3C00u16, 0xB800]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let bf16s: Vec<u8> = [0x4000u16, 0xC040]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let i32s: Vec<u8> = [-1i32, 7].iter().flat_map(|x| x.to_le_bytes()).collect();
    let f64s: Vec<u8> = [0.1f64].iter().flat_map(|x| x.to_le_bytes()).collect();
    let views = vec![
        ("a", TensorView::new(Dtype::F32, vec![2, 2], &f32s).unwrap()),
        ("h", TensorView::new(Dtype::F16, vec![2], &f16s).unwrap()),
        (
            "b",
            TensorView::new(Dtype::BF16, vec![1, 2], &bf16s).unwrap(),
        ),
        ("i", TensorView::new(Dtype::I32, vec![2], &i32s).unwrap()),
        ("d", TensorView::new(Dtype::F64, vec![1], &f64s).unwrap()),
    ];
    let meta: HashMap<String, String> = [("k".to_string(), "v".to_string())].into();
    let bytes = safetensors::serialize(views, Some(meta)).unwrap();
    let (_d, p) = tmp("theirs.safetensors");
    std::fs::write(&p, bytes).unwrap();
    let f = TensorFile::read(&p).unwrap();
    assert_eq!(f.metadata.get("k").map(String::as_str), Some("v"));
    assert_eq!(
        f.get_2d_f32("a").unwrap(),
        (2, 2, &[1.5, -2.0, 3.25, 0.0][..])
    );
    assert_eq!(f.get("h").unwrap().as_f32().unwrap(), &[1.0, -0.5]);
    assert_eq!(f.get("b").unwrap().as_f32().unwrap(), &[2.0, -3.0]);
    assert_eq!(f.get("i").unwrap().as_i64().unwrap(), &[-1, 7]);
    assert_eq!(f.get("d").unwrap().as_f64().unwrap(), &[0.1]);
}

fn write_bytes(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let (d, p) = tmp(name);
    std::fs::write(&p, bytes).unwrap();
    (d, p)
}

fn assert_ends(e: &str, suffix: impl AsRef<str>) {
    assert!(
        e.ends_with(suffix.as_ref()),
        "got: {e}\nwant suffix: {}",
        suffix.as_ref()
    );
}

fn assert_has(e: &str, part: &str) {
    assert!(e.contains(part), "got: {e}\nwant part: {part}");
}

fn read_err(p: &Path) -> String {
    let e = TensorFile::read(p).unwrap_err().to_string();
    eprintln!("message: {e}");
    assert!(!e.contains('\n'), "one line: {e}");
    assert!(
        e.starts_with(&p.display().to_string()),
        "names the file: {e}"
    );
    e
}

#[test]
fn truncated_and_corrupt_safetensors() {
    let (_d, good) = tmp("g.safetensors");
    sample().write(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());

    let (_d1, p) = write_bytes("short.safetensors", &bytes[..5]);
    assert_ends(
        &read_err(&p),
        "file has 5 bytes, too short for a safetensors header (8-byte length prefix)",
    );

    let (_d2, p) = write_bytes("cut.safetensors", &bytes[..100]);
    assert_ends(
        &read_err(&p),
        format!("header says {n} bytes, file has 92 after the 8-byte length prefix (truncated?)"),
    );

    let (_d3, p) = write_bytes("data.safetensors", &bytes[..bytes.len() - 3]);
    let e = read_err(&p);
    assert!(
        e.contains("data section") && e.contains("(truncated?)"),
        "{e}"
    );

    let mut junk = bytes.clone();
    junk[8] = b'[';
    let (_d4, p) = write_bytes("junk.safetensors", &junk);
    assert_has(&read_err(&p), "header is not a JSON object");

    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let (_d5, p) = write_bytes("huge.safetensors", &huge);
    assert_has(&read_err(&p), "more than the 100000000 allowed");

    // A header whose shape disagrees with its byte range.
    let header = br#"{"t":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#;
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header);
    b.extend_from_slice(&[0u8; 20]);
    let (_d6, p) = write_bytes("shape.safetensors", &b);
    assert_ends(
        &read_err(&p),
        "tensor 't': shape [2, 3] of F32 needs 24 bytes, data_offsets [0, 20] span 20",
    );

    let header = br#"{"t":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#;
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header);
    b.extend_from_slice(&[0u8; 8]);
    let (_d7, p) = write_bytes("c64.safetensors", &b);
    assert_has(&read_err(&p), "tensor 't' has unsupported dtype C64");
}

#[test]
fn truncated_and_corrupt_npy_npz() {
    let (_d, good) = tmp("g.npy");
    let mut f = TensorFile::default();
    f.insert("x", Tensor::f32(vec![4, 4], vec![1.0; 16]).unwrap());
    f.write(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let (_d1, p) = write_bytes("cut.npy", &bytes[..bytes.len() - 4]);
    assert_ends(
        &read_err(&p),
        "cut.npy: shape [4, 4] of '<f4' needs 64 data bytes, found 60 (truncated?)",
    );
    let (_d2, p) = write_bytes("hdr.npy", &bytes[..20]);
    assert_ends(
        &read_err(&p),
        "hdr.npy: .npy header is truncated (file has 20 bytes)",
    );
    let (_d3, p) = write_bytes("text.npy", b"hello");
    assert_ends(&read_err(&p), "text.npy: not a .npy (no \\x93NUMPY magic)");

    let (_d4, good) = tmp("g.npz");
    sample().write(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let (_d5, p) = write_bytes("cut.npz", &bytes[..bytes.len() / 2]);
    assert_has(&read_err(&p), "not a readable .npz (zip) archive");
    let (_d6, p) = write_bytes("empty.npz", b"");
    assert_has(&read_err(&p), "not a readable .npz (zip) archive");
}

#[test]
fn missing_file_and_unknown_extension() {
    let e = read_err(Path::new("/nonexistent/a.safetensors"));
    assert!(
        e.starts_with("/nonexistent/a.safetensors: cannot open: "),
        "{e}"
    );
    assert_eq!(
        TensorFile::read(Path::new("acts.pt"))
            .unwrap_err()
            .to_string(),
        "acts.pt: unknown tensor file extension 'pt', expected .safetensors, .st, .npz or .npy"
    );
    assert_eq!(
        Format::from_path(Path::new("X.SafeTensors")).unwrap(),
        Format::Safetensors
    );
    // A pipe defaults to safetensors (tests/pipes.rs).
    assert_eq!(
        Format::from_path(Path::new("-")).unwrap(),
        Format::Safetensors
    );
    assert_eq!("npz".parse::<Format>().unwrap(), Format::Npz);
}

#[test]
fn get_errors_name_file_tensor_and_expectation() {
    let mut f = sample();
    f.path = "acts.safetensors".into();
    assert_eq!(
        f.get("resid.5").unwrap_err().to_string(),
        "acts.safetensors: no tensor 'resid.5' (file has empty, offsets, resid.10, resid.2, scalar, singular_values.2)"
    );
    for i in 0..20 {
        f.insert(
            resid_name(100 + i),
            Tensor::f32(vec![1], vec![0.0]).unwrap(),
        );
    }
    let e = f.get("resid.5").unwrap_err().to_string();
    assert!(e.ends_with("(file has 26: empty, offsets, resid.10, resid.100, resid.101, ..., scalar, singular_values.2)"), "{e}");

    assert_eq!(
        f.expect_shape("resid.10", &[None, Some(4096)])
            .unwrap_err()
            .to_string(),
        "acts.safetensors: tensor 'resid.10' has shape [3, 5], expected [_, 4096]"
    );
    assert!(f.expect_shape("resid.10", &[Some(3), None]).is_ok());
    assert_eq!(
        f.get_2d_f32("offsets").unwrap_err().to_string(),
        "acts.safetensors: tensor 'offsets' has shape [4], expected 2-D [rows, cols]"
    );
    f.insert("m", Tensor::f64(vec![1, 1], vec![0.0]).unwrap());
    assert_eq!(
        f.get_2d_f32("m").unwrap_err().to_string(),
        "acts.safetensors: tensor 'm' has dtype F64, expected F32"
    );
}

#[test]
fn tensor_constructors_check_length() {
    assert_eq!(
        Tensor::f32(vec![2, 3], vec![0.0; 5])
            .unwrap_err()
            .to_string(),
        "tensor data has 5 elements, shape [2, 3] needs 6"
    );
    let t = Tensor::i64(vec![2], vec![1, 2]).unwrap();
    assert_eq!(t.to_f64_vec(), vec![1.0, 2.0]);
    assert!(t.as_f32().is_none());
    assert_eq!(t.data, TensorData::I64(vec![1, 2]));
}

#[test]
fn names_round_trip() {
    for i in [0usize, 1, 9, 10, 31, 12345] {
        for (name, kind) in [
            (resid_name(i), Kind::Resid),
            (components_name(i), Kind::Components),
            (singular_values_name(i), Kind::SingularValues),
            (mean_shift_name(i), Kind::MeanShift),
        ] {
            assert_eq!(parse_name(&name), Some((kind, i)), "{name}");
            assert_eq!(kind.name(i), name);
        }
    }
    assert_eq!(resid_name(5), "resid.5");
    assert_eq!(components_name(14), "components.14");
    assert_eq!(singular_values_name(3), "singular_values.3");
    assert_eq!(mean_shift_name(0), "mean_shift.0");
    for bad in [
        "resid",
        "resid.",
        "resid.05",
        "resid.+5",
        "resid.-1",
        "resid.5.1",
        "resids.5",
        "offsets",
        "Resid.1",
        "resid.x",
    ] {
        assert_eq!(parse_name(bad), None, "{bad}");
    }
}

#[test]
fn reserved_name_is_refused() {
    let (_d, p) = tmp("r.safetensors");
    let mut f = TensorFile::default();
    f.insert("__metadata__", Tensor::f32(vec![1], vec![0.0]).unwrap());
    assert!(f
        .write(&p)
        .unwrap_err()
        .to_string()
        .contains("cannot be named '__metadata__'"));
    assert!(!p.exists());
}
