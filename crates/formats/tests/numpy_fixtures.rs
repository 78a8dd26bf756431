//! Files written by numpy itself (testdata/formats/make_fixtures.py), and, when python3 with
//! numpy is available, our files read back by numpy.

use std::path::{Path, PathBuf};
use std::process::Command;

use hd_formats::tensors::{Tensor, TensorFile};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/formats")
        .join(name)
}

fn read(name: &str) -> TensorFile {
    TensorFile::read(&fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn f32_2d_is_resid_0() {
    let f = read("f32_2d.npy");
    let want: Vec<f32> = (0..12).map(|i| i as f32 / 4.0).collect();
    assert_eq!(f.tensors.len(), 1);
    assert_eq!(f.get_2d_f32("resid.0").unwrap(), (3, 4, &want[..]));
}

#[test]
fn layers_3d_split_per_layer() {
    let f = read("layers_3d.npy");
    assert_eq!(f.resid_layers(), vec![0, 1]);
    let (r, c, d) = f.get_2d_f32("resid.1").unwrap();
    assert_eq!((r, c), (3, 4));
    assert_eq!(d, (12..24).map(|i| i as f32).collect::<Vec<_>>());
}

#[test]
fn f16_widened() {
    let f = read("f16_2d.npy");
    assert_eq!(
        f.get_2d_f32("resid.0").unwrap(),
        (2, 3, &[0.0, 0.5, 1.0, 1.5, 2.0, 2.5][..])
    );
}

#[test]
fn big_endian_int32_1d() {
    let f = read("i32_be_1d.npy");
    assert_eq!(
        f.get("arr_0").unwrap(),
        &Tensor::i64(vec![5], vec![-2, -1, 0, 1, 2]).unwrap()
    );
}

#[test]
fn fortran_order_becomes_row_major() {
    let f = read("fortran_f64.npy");
    assert_eq!(
        f.get("resid.0").unwrap(),
        &Tensor::f64(vec![2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap()
    );
}

#[test]
fn npz_plain_and_compressed_with_metadata() {
    for name in ["arrays.npz", "arrays_compressed.npz"] {
        let f = read(name);
        let want: Vec<f32> = (0..12).map(|i| i as f32 / 4.0).collect();
        assert_eq!(
            f.get_2d_f32("resid.0").unwrap(),
            (3, 4, &want[..]),
            "{name}"
        );
        assert_eq!(
            f.get("offsets").unwrap().as_i64().unwrap(),
            &[0, 2, 5, 9],
            "{name}"
        );
        assert_eq!(f.tensors.len(), 2, "{name}");
        assert_eq!(
            f.metadata.get("tool").map(String::as_str),
            Some("numpy"),
            "{name}"
        );
        assert_eq!(
            f.metadata.get("prompt_ids_hash").map(String::as_str),
            Some("sha256:abc")
        );
    }
}

/// numpy reads what we write. Skipped (with a note) where python3 + numpy are missing, since
/// the project must test without them; the committed fixtures above cover the other way.
#[test]
fn numpy_reads_our_files() {
    let ok = Command::new("python3")
        .args(["-c", "import numpy"])
        .output();
    if !matches!(ok, Ok(ref o) if o.status.success()) {
        eprintln!("skipped: python3 with numpy not available");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut f = TensorFile::default();
    f.metadata.insert("tool".into(), "hd \"test\" ✓".into());
    f.insert(
        "resid.3",
        Tensor::f32(vec![2, 3], vec![1.0, -2.5, 3.0, 0.25, 5.0, -6.0]).unwrap(),
    );
    f.insert("offsets", Tensor::i64(vec![3], vec![0, 1, 3]).unwrap());
    f.insert("sv", Tensor::f64(vec![2], vec![0.1, 2.0]).unwrap());
    f.write(&d.path().join("a.npz")).unwrap();
    let mut one = TensorFile::default();
    one.insert("x", f.get("resid.3").unwrap().clone());
    one.write(&d.path().join("a.npy")).unwrap();
    let script = r#"
import json, sys, numpy as np
z = np.load(sys.argv[1] + "/a.npz")
assert sorted(z.files) == ["__metadata__", "offsets", "resid.3", "sv"], z.files
assert z["resid.3"].dtype == np.float32 and z["resid.3"].tolist() == [[1.0, -2.5, 3.0], [0.25, 5.0, -6.0]]
assert z["offsets"].dtype == np.int64 and z["offsets"].tolist() == [0, 1, 3]
assert z["sv"].dtype == np.float64 and z["sv"].tolist() == [0.1, 2.0]
assert json.loads(z["__metadata__"].tobytes()) == {"tool": "hd \"test\" \u2713"}
a = np.load(sys.argv[1] + "/a.npy")
assert a.shape == (2, 3) and a.dtype == np.float32 and (a == z["resid.3"]).all()
"#;
    let out = Command::new("python3")
        .args(["-c", script, d.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
