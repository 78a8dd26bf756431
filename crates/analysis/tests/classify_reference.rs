//! hd-analysis's classifier figures against numpy / scikit-learn, on the fixture made by
//! `testdata/dir-label/make_reference.py` (its docstring says what each expected value is).

use std::path::PathBuf;

use hd_analysis::classify::{
    categories, category_stats, classify, component_scores, dim_accuracy, half_split, layer_probe,
    percentile, pooled_probe, ClassifyOptions, LayerInput,
};
use serde_json::Value;

fn reference() -> Value {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/dir-label/reference.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn flat(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(f))
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(f).collect()
}

fn indices(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as usize)
        .collect()
}

struct Fixture {
    r: Value,
    y: Vec<bool>,
    d: usize,
    k: usize,
    xs: Vec<Vec<f64>>,
    cs: Vec<Vec<f64>>,
}

fn fixture() -> Fixture {
    let r = reference();
    let y = r["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_bool().unwrap())
        .collect();
    let layers = r["layers"].as_array().unwrap();
    let xs = layers.iter().map(|l| flat(&l["x"])).collect();
    let cs = layers.iter().map(|l| flat(&l["components"])).collect();
    let (d, k) = (
        r["d"].as_u64().unwrap() as usize,
        r["k"].as_u64().unwrap() as usize,
    );
    Fixture { r, y, d, k, xs, cs }
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol || (got.is_nan() && want.is_nan()),
        "{what}: got {got}, numpy/sklearn {want} (tolerance {tol})"
    );
}

#[test]
fn percentile_matches_numpy() {
    let fx = fixture();
    for case in fx.r["percentile"].as_array().unwrap() {
        let v = floats(&case["values"]);
        let q = f(&case["q"]);
        close(
            &format!("percentile({v:?}, {q})"),
            percentile(&v, q),
            f(&case["expected"]),
            1e-12,
        );
    }
}

#[test]
fn split_matches_the_python_recipe() {
    let fx = fixture();
    let s = half_split(&fx.y, fx.r["seed"].as_u64().unwrap());
    assert_eq!(s.train, indices(&fx.r["train"]));
    assert_eq!(s.test, indices(&fx.r["test"]));
}

#[test]
fn component_figures_match_numpy_and_sklearn() {
    let fx = fixture();
    let n = fx.y.len();
    for (l, layer) in fx.r["layers"].as_array().unwrap().iter().enumerate() {
        for (j, want) in layer["scores"].as_array().unwrap().iter().enumerate() {
            let c = &fx.cs[l][j * fx.d..(j + 1) * fx.d];
            let proj: Vec<f64> = (0..n)
                .map(|i| {
                    fx.xs[l][i * fx.d..(i + 1) * fx.d]
                        .iter()
                        .zip(c)
                        .map(|(a, b)| a * b)
                        .sum()
                })
                .collect();
            let at = |m: &str| format!("layer {l} component {} {m}", j + 1);
            let neg: Vec<f64> = proj.iter().map(|v| -v).collect();
            let p = fx.y.iter().filter(|&&t| t).count() as f64 / n as f64;
            close(
                &at("threshold"),
                percentile(&neg, 100.0 - 100.0 * p),
                f(&want["thr_paper"]),
                1e-9,
            );
            let s = component_scores(&proj, &fx.y);
            close(&at("acc_paper"), s.acc_paper, f(&want["acc_paper"]), 1e-12);
            close(&at("acc"), s.acc, f(&want["acc"]), 1e-12);
            close(&at("auc"), s.auc, f(&want["auc"]), 1e-12);
            close(&at("sep"), s.sep, f(&want["sep"]), 1e-9);
            let cats = categories(
                &fx.r["categories"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap().to_string())
                    .collect::<Vec<_>>(),
                &fx.y,
            );
            let want_cats = layer["categories"][j].as_array().unwrap();
            assert_eq!(cats.len(), want_cats.len());
            for (cat, w) in cats.iter().zip(want_cats) {
                assert_eq!(cat.name, w["category"].as_str().unwrap());
                let st = category_stats(&proj, &cat.members, &cat.reference);
                let at = |m: &str| format!("layer {l} component {} {} {m}", j + 1, cat.name);
                assert_eq!(st.n as u64, w["n"].as_u64().unwrap());
                close(&at("mean"), st.mean_proj, f(&w["mean"]), 1e-9);
                close(&at("std"), st.std_proj, f(&w["std"]), 1e-9);
                close(&at("auc"), st.auc_vs_harmless, f(&w["auc"]), 1e-12);
                close(&at("cohen_d"), st.cohen_d, f(&w["cohen_d"]), 1e-9);
            }
        }
    }
}

#[test]
fn probes_and_mean_difference_match_sklearn() {
    let fx = fixture();
    let split = half_split(&fx.y, 42);
    let per_sample = 1.0 / split.test.len() as f64;
    for (l, layer) in fx.r["layers"].as_array().unwrap().iter().enumerate() {
        let want = &layer["probe"];
        let p = layer_probe(&fx.xs[l], fx.d, &fx.y, &split, 1.0).unwrap();
        assert!(p.fit.converged, "layer {l}: probe did not converge");
        for (j, (a, b)) in p.fit.weights.iter().zip(floats(&want["coef"])).enumerate() {
            close(
                &format!("layer {l} probe coef {j}"),
                *a,
                b,
                1e-6 * b.abs().max(1.0),
            );
        }
        close(
            &format!("layer {l} intercept"),
            p.fit.intercept,
            f(&want["intercept"]),
            1e-6,
        );
        close(
            &format!("layer {l} probe acc"),
            p.acc,
            f(&want["acc"]),
            1e-12,
        );
        close(
            &format!("layer {l} probe acc vs sklearn defaults"),
            p.acc,
            f(&want["default_acc"]),
            per_sample + 1e-12,
        );
        close(
            &format!("layer {l} probe auc"),
            p.auc,
            f(&want["auc"]),
            1e-12,
        );
        close(
            &format!("layer {l} dim acc"),
            dim_accuracy(&fx.xs[l], fx.d, &fx.y, &split),
            f(&layer["dim_acc"]),
            1e-12,
        );
    }
    let xs: Vec<&[f64]> = fx.xs.iter().map(Vec::as_slice).collect();
    let (fit, accs) = pooled_probe(&xs, fx.d, &fx.y, &split, 1.0).unwrap();
    assert!(fit.converged);
    assert_eq!(fit.intercept, 0.0);
    for (j, (a, b)) in fit
        .weights
        .iter()
        .zip(floats(&fx.r["pooled"]["coef"]))
        .enumerate()
    {
        close(&format!("pooled coef {j}"), *a, b, 1e-6 * b.abs().max(1.0));
    }
    for (l, (a, b)) in accs.iter().zip(floats(&fx.r["pooled"]["acc"])).enumerate() {
        close(&format!("layer {l} pooled acc"), *a, b, 1e-12);
    }
}

#[test]
fn classify_assembles_the_same_figures() {
    let fx = fixture();
    let cats = categories(
        &fx.r["categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        &fx.y,
    );
    let inputs: Vec<LayerInput<'_>> = (0..fx.xs.len())
        .map(|l| LayerInput {
            layer: l + 10,
            x: &fx.xs[l],
            components: &fx.cs[l],
        })
        .collect();
    let opts = ClassifyOptions {
        k: fx.k,
        ..Default::default()
    };
    let out = classify(&inputs, fx.d, &fx.y, &cats, &opts).unwrap();
    assert!(out.pooled.unwrap().converged);
    let reports = out.layers;
    for (l, (rep, layer)) in reports
        .iter()
        .zip(fx.r["layers"].as_array().unwrap())
        .enumerate()
    {
        assert_eq!(rep.layer, l + 10);
        let accs: Vec<f64> = layer["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| f(&s["acc"]))
            .collect();
        let best = (0..accs.len()).fold(0, |b, j| if accs[j] > accs[b] { j } else { b });
        assert_eq!(rep.best, best, "layer {l}: best component");
        close(
            &format!("layer {l} probe"),
            rep.probe.acc,
            f(&layer["probe"]["acc"]),
            1e-12,
        );
        close(
            &format!("layer {l} pooled"),
            rep.pooled_probe_acc,
            f(&fx.r["pooled"]["acc"][l]),
            1e-12,
        );
        assert_eq!(rep.components.len(), fx.k);
        assert_eq!(rep.categories[0].len(), cats.len());
    }
}
