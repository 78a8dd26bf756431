//! The component name and the checked read of component directions.

use hd_formats::components::{check_rows, read_directions, read_first, ComponentId};
use hd_formats::tensors::{components_name, Tensor, TensorFile};

#[test]
fn names_round_trip_with_one_based_k() {
    let c: ComponentId = "L14-C6".parse().unwrap();
    assert_eq!((c.layer, c.k, c.row()), (14, 6, 5));
    assert_eq!(c.to_string(), "L14-C6");
    assert_eq!(ComponentId::from_row(3, 0).to_string(), "L3-C1");
    for bad in [
        "L14-C0", "14-C6", "L14C6", "Lx-C1", "L1-C", "", "L01-C1", "L1-C+2", "l1-c1",
    ] {
        let e = bad.parse::<ComponentId>().unwrap_err().to_string();
        assert_eq!(
            e,
            format!("'{bad}' is not a component name: expected L{{layer}}-C{{k}} with k from 1 (e.g. L14-C6)")
        );
    }
}

/// A components file whose layer-2 rows are `rows` (width 2).
fn comps(rows: &[[f32; 2]]) -> TensorFile {
    let mut f = TensorFile::new(Default::default());
    f.path = "svd.safetensors".into();
    let data: Vec<f32> = rows.iter().flatten().copied().collect();
    f.insert(
        components_name(2),
        Tensor::f32(vec![rows.len(), 2], data).unwrap(),
    );
    f
}

#[test]
fn directions_are_read_by_one_based_k() {
    let f = comps(&[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]);
    assert_eq!(
        read_directions(&f, 2, &[3, 1], 2).unwrap(),
        vec![vec![0.6, 0.8], vec![1.0, 0.0]]
    );
    assert_eq!(read_first(&f, 2, 2, 2).unwrap().len(), 2);
}

#[test]
fn rows_that_are_not_unit_are_refused_by_name() {
    for (rows, what) in [
        ([[1.0, 0.0], [0.0, 0.0]], "L2-C2 has norm 0.000000"),
        ([[1.0, 0.0], [0.0, 1000.0]], "L2-C2 has norm 1000.000000"),
        (
            [[1.0, 0.0], [f32::NAN, 0.0]],
            "L2-C2 has a non-finite value (NaN)",
        ),
    ] {
        let f = comps(&rows);
        let e = read_directions(&f, 2, &[2], 2).unwrap_err().to_string();
        assert!(
            e.starts_with("svd.safetensors: tensor 'components.2': "),
            "{e}"
        );
        assert!(e.contains(what), "{e}");
        // C1 alone is fine: only the rows asked for are read.
        read_directions(&f, 2, &[1], 2).unwrap();
    }
    // Within the tolerance (f32 rounding of a unit row) passes.
    read_directions(&comps(&[[1.0004, 0.0]]), 2, &[1], 2).unwrap();
    let e = check_rows("x.npz", 7, &[1.0, 0.0, 0.0, 2.0], 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("L7-C2 has norm 2.000000"), "{e}");
}

#[test]
fn shape_and_range_errors_name_the_file_and_tensor() {
    let f = comps(&[[1.0, 0.0]]);
    let e = read_directions(&f, 2, &[1], 3).unwrap_err().to_string();
    assert_eq!(
        e,
        "svd.safetensors: tensor 'components.2' has shape [1, 2], expected [_, 3] (the model's hidden size)"
    );
    let e = read_directions(&f, 2, &[2], 2).unwrap_err();
    assert!(e.is_usage());
    assert_eq!(
        e.to_string(),
        "svd.safetensors: tensor 'components.2' holds 1 components (L2-C1..L2-C1); component 2 was asked for"
    );
    let e = read_directions(&f, 5, &[1], 2).unwrap_err().to_string();
    assert!(
        e.starts_with("svd.safetensors: no tensor 'components.5'"),
        "{e}"
    );
}
