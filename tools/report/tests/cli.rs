//! The `report` binary on the committed fixture run (testdata/report/run, made by
//! make_fixture.py): every figure present, each figure's data equal to what the input CSVs
//! say (recomputed here with the csv crate, not through the report's own reader),
//! deterministic bytes, missing stages shown as boxes, bad input one line and no output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/report/run")
}

fn report(run: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_report"))
        .arg("--run")
        .arg(run)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_clear()
        .output()
        .expect("runs")
}

const FIGURES: [&str; 22] = [
    "refusal",
    "heldout-safe",
    "heldout-harmful",
    "alarming-safe",
    "alarming-harmful",
    "overrefusal-curve",
    "overrefusal-types",
    "rank",
    "spectrum",
    "rank-contrast",
    "accuracy",
    "categories",
    "rank-pairs",
    "c1-pairs",
    "exposure",
    "rank-guard",
    "c1-guard",
    "relevance",
    "relevance-late",
    "network",
    "intervention",
    "prune",
];

/// A CSV as header → column of strings.
fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let h: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            h.iter()
                .cloned()
                .zip(rec.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

fn num(v: &str) -> f64 {
    v.parse().unwrap()
}

fn figures_json(out: &Path) -> BTreeMap<String, Value> {
    let v: Value =
        serde_json::from_slice(&std::fs::read(out.join("figures.json")).unwrap()).unwrap();
    let mut m = BTreeMap::new();
    for s in v.as_array().unwrap() {
        for item in s["items"].as_array().unwrap() {
            if let Some(f) = item.get("Figure") {
                m.insert(f["id"].as_str().unwrap().to_string(), f["plot"].clone());
            }
        }
    }
    m
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn every_figure_is_written_and_inlined() {
    let dir = tempfile::tempdir().unwrap();
    let out = report(&fixture(), dir.path(), &["--layer", "4"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "stdout carries no logs");
    let html = std::fs::read_to_string(dir.path().join("index.html")).unwrap();
    assert!(
        !html.contains("stage not run"),
        "the fixture has every file"
    );
    for id in FIGURES {
        let svg = std::fs::read_to_string(dir.path().join(format!("{id}.svg"))).unwrap();
        assert!(svg.starts_with("<svg"), "{id}.svg");
        let png = std::fs::read(dir.path().join(format!("{id}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{id}.png");
        assert!(
            html.contains(&format!("id=\"fig-{id}\"")),
            "{id} in the page"
        );
    }
    assert_eq!(html.matches("<svg").count(), FIGURES.len());
    // Nothing the page could fetch: no external URL, and the fixture's "<b>" token escaped.
    assert!(
        !html.contains("http://")
            || html.matches("http://").count()
                == html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
    assert!(!html.contains("https://"));
    assert!(html.contains("&lt;b&gt;"));
    // Token highlights carry labels.csv's suggested label (tokens.csv names components
    // L{l}-C{k}, labels.csv has both the number and the name).
    assert!(
        html.contains("component L4-C2 — L4-C2: role-play"),
        "token highlights"
    );
    assert_eq!(figures_json(dir.path()).len(), FIGURES.len());
}

#[test]
fn figure_data_equals_the_input_csvs() {
    let dir = tempfile::tempdir().unwrap();
    let out = report(&fixture(), dir.path(), &["--layer", "4", "--no-png"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let figs = figures_json(dir.path());
    let run = fixture();

    // Refusal: the tuned model's bar for each category is its refused mean.
    let bars = &figs["refusal"]["Bars"];
    let groups: Vec<&str> = bars["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    let tuned = &bars["series"][1];
    assert_eq!(tuned["name"], "tuned (SFT)");
    let rows = csv_rows(&run.join("tuned-eval/test_responses.csv"));
    for (g, cat) in groups.iter().enumerate() {
        let r: Vec<f64> = rows
            .iter()
            .filter(|r| r["category"] == *cat)
            .map(|r| num(&r["refused"]))
            .collect();
        let want = r.iter().sum::<f64>() / r.len() as f64;
        assert!(close(tuned["values"][g].as_f64().unwrap(), want), "{cat}");
    }

    // Effective rank: the τ = 0.9 line is rank.csv's τ = 0.9 rows.
    let line = &figs["rank"]["Lines"]["series"][0];
    assert_eq!(line["name"], "τ = 0.9");
    let want: Vec<(f64, f64)> = csv_rows(&run.join("shift-tuned/rank.csv"))
        .iter()
        .filter(|r| r["tau"] == "0.9")
        .map(|r| (num(&r["layer"]), num(&r["effective_rank"])))
        .collect();
    let got: Vec<(f64, f64)> = serde_json::from_value(line["points"].clone()).unwrap();
    assert_eq!(got, want);

    // Accuracy: the C1 line is layers.csv's c1_acc.
    let line = &figs["accuracy"]["Lines"]["series"][0];
    let got: Vec<(f64, f64)> = serde_json::from_value(line["points"].clone()).unwrap();
    let want: Vec<(f64, f64)> = csv_rows(&run.join("label/classify/layers.csv"))
        .iter()
        .map(|r| (num(&r["layer"]), num(&r["c1_acc"])))
        .collect();
    assert_eq!(got, want);

    // The two pairs: the DPO line is the DPO pair's τ = 0.9 rows, its C1 line its c1_acc.
    let line = &figs["rank-pairs"]["Lines"]["series"][1];
    assert_eq!(line["name"], "DPO");
    let got: Vec<(f64, f64)> = serde_json::from_value(line["points"].clone()).unwrap();
    let want: Vec<(f64, f64)> = csv_rows(&run.join("shift-tuned-dpo/rank.csv"))
        .iter()
        .filter(|r| r["tau"] == "0.9")
        .map(|r| (num(&r["layer"]), num(&r["effective_rank"])))
        .collect();
    assert_eq!(got, want);
    let line = &figs["c1-pairs"]["Lines"]["series"][1];
    let got: Vec<(f64, f64)> = serde_json::from_value(line["points"].clone()).unwrap();
    let want: Vec<(f64, f64)> = csv_rows(&run.join("label-dpo/classify/layers.csv"))
        .iter()
        .map(|r| (num(&r["layer"]), num(&r["c1_acc"])))
        .collect();
    assert_eq!(got, want);

    // Exposure: one line per category of pass_rate over k, then over_refusal per k.
    let series = figs["exposure"]["Lines"]["series"]
        .as_array()
        .unwrap()
        .clone();
    let rows = csv_rows(&run.join("exposure.csv"));
    for s in &series[..series.len() - 1] {
        let want: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r["category"] == s["name"].as_str().unwrap())
            .map(|r| (num(&r["k"]), num(&r["pass_rate"])))
            .collect();
        let got: Vec<(f64, f64)> = serde_json::from_value(s["points"].clone()).unwrap();
        assert!(!want.is_empty());
        assert_eq!(got, want, "{}", s["name"]);
    }
    let over: Vec<(f64, f64)> =
        serde_json::from_value(series[series.len() - 1]["points"].clone()).unwrap();
    let mut want: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (num(&r["k"]), num(&r["over_refusal"])))
        .collect();
    want.dedup();
    assert_eq!(over, want);
    assert_eq!(series.len(), 8, "7 categories and the over-refusal");

    // Over-refusal curve: one point per recipe and set pair, (safe set's rate, harmful
    // set's rate) of the whole sets (type `all`).
    let rows = csv_rows(&run.join("overrefusal.csv"));
    let rate = |recipe: &str, set: &str| {
        rows.iter()
            .find(|r| r["recipe"] == recipe && r["set"] == set && r["type"] == "all")
            .map(|r| num(&r["rate"]))
            .unwrap()
    };
    let series = figs["overrefusal-curve"]["Lines"]["series"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(series.len(), 8, "4 recipes x 2 set pairs");
    let lto = series
        .iter()
        .find(|s| s["name"] == "lto, independent sets")
        .unwrap();
    let got: Vec<(f64, f64)> = serde_json::from_value(lto["points"].clone()).unwrap();
    assert_eq!(
        got,
        vec![(
            rate("lto", "alarming_safe"),
            rate("lto", "alarming_harmful")
        )]
    );

    // Category heatmap at layer 4: cell (category, Ck) is auc_vs_harmless.
    let h = &figs["categories"]["Heatmap"];
    for r in csv_rows(&run.join("label/classify/categories.csv")) {
        if r["layer"] != "4" {
            continue;
        }
        let row = h["rows"]
            .as_array()
            .unwrap()
            .iter()
            .position(|x| x == r["category"].as_str())
            .unwrap();
        let col = num(&r["component"]) as usize - 1;
        assert!(close(
            h["values"][row][col].as_f64().unwrap(),
            num(&r["auc_vs_harmless"])
        ));
    }

    // Relevance heatmap: layer 3 → 4, category all.
    let h = &figs["relevance"]["Heatmap"];
    let mut seen = 0;
    for r in csv_rows(&run.join("interact/relevance.csv")) {
        if r["category"] != "all" || r["target_layer"] != "4" || r["source_layer"] != "3" {
            continue;
        }
        // Components are named as dir-interact writes them, `L{l}-C{k}`.
        let k = |name: &str, l: &str| -> usize {
            name.strip_prefix(&format!("L{l}-C"))
                .unwrap()
                .parse()
                .unwrap()
        };
        let (s, t) = (
            k(&r["source_component"], "3"),
            k(&r["target_component"], "4"),
        );
        assert!(close(
            h["values"][s - 1][t - 1].as_f64().unwrap(),
            num(&r["mean"])
        ));
        seen += 1;
    }
    assert_eq!(seen, 9);

    // Network: one edge per edges.csv row.
    let edges = figs["network"]["Network"]["edges"].as_array().unwrap();
    let want = csv_rows(&run.join("interact/edges.csv"));
    assert_eq!(edges.len(), want.len());
    for (e, w) in edges.iter().zip(&want) {
        assert!(close(e["value"].as_f64().unwrap(), num(&w["relevance"])));
        assert_eq!(
            format!("L{}-C{}", e["source_layer"], e["source_comp"]),
            w["source"]
        );
    }

    // Intervention: the `none` bars are its generated pass rates, `all` first.
    let bars = &figs["intervention"]["Bars"];
    assert_eq!(bars["series"][0]["name"], "none");
    let none: Vec<f64> = csv_rows(&run.join("interact/sweep.csv"))
        .iter()
        .filter(|r| r["spec"] == "none")
        .map(|r| num(&r["pass_generated"]))
        .collect();
    let got: Vec<f64> = serde_json::from_value(bars["series"][0]["values"].clone()).unwrap();
    assert_eq!(got, none);

    // token-prune: first-token success per method, category all.
    let bars = &figs["prune"]["Bars"];
    let want: Vec<(String, f64)> = csv_rows(&run.join("prune/summary.csv"))
        .iter()
        .filter(|r| r["category"] == "all")
        .map(|r| (r["method"].clone(), num(&r["success_first_token"])))
        .collect();
    let groups: Vec<String> = serde_json::from_value(bars["groups"].clone()).unwrap();
    let vals: Vec<f64> = serde_json::from_value(bars["series"][0]["values"].clone()).unwrap();
    assert_eq!(groups, want.iter().map(|w| w.0.clone()).collect::<Vec<_>>());
    assert_eq!(vals, want.iter().map(|w| w.1).collect::<Vec<_>>());

    // The numbers table: harmful refusal of the base model.
    let rows = csv_rows(&run.join("base/test_responses.csv"));
    let harm: Vec<f64> = rows
        .iter()
        .filter(|r| r["label"] == "harmful")
        .map(|r| num(&r["refused"]))
        .collect();
    let want = format!(
        "{:.1}%",
        100.0 * harm.iter().sum::<f64>() / harm.len() as f64
    );
    let numbers = csv_rows(&dir.path().join("numbers.csv"));
    assert_eq!(numbers[0]["key"], "refusal_before");
    assert!(
        numbers[0]["ours"].starts_with(&format!("{want} [")),
        "{} should be {want} with its interval",
        numbers[0]["ours"]
    );
    assert!(numbers[0]["ours"].ends_with(&format!("(n = {})", harm.len())));
    // The degenerate L4-C3 run (pass 0.95) is never the strongest effect.
    assert!(
        numbers[3]["ours"].starts_with("L4-C2:sub:1.15"),
        "{}",
        numbers[3]["ours"]
    );
}

#[test]
fn reruns_are_byte_identical() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    assert!(report(&fixture(), a.path(), &["--layer", "4"])
        .status
        .success());
    assert!(report(&fixture(), b.path(), &["--layer", "4"])
        .status
        .success());
    let mut names: Vec<_> = std::fs::read_dir(a.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2 * FIGURES.len() + 4);
    for n in names {
        let x = std::fs::read(a.path().join(&n)).unwrap();
        let y = std::fs::read(b.path().join(&n)).unwrap();
        assert!(x == y, "{n:?} differs between runs");
    }
}

#[test]
fn a_run_with_nothing_yet_is_a_page_of_boxes() {
    let run = tempfile::tempdir().unwrap();
    let out = run.path().join("report");
    let o = report(run.path(), &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    for make in [
        "make demo",
        "make tuned-eval",
        "make shift-tuned",
        "make label",
        "make interact",
        "make prune",
    ] {
        assert!(
            html.contains(&format!("stage not run: <code>{make}</code>")),
            "{make}"
        );
    }
    assert_eq!(html.matches("<svg").count(), 0);
    let md = std::fs::read_to_string(out.join("numbers.md")).unwrap();
    assert_eq!(md.matches("not run").count(), 5);
}

#[test]
fn a_bad_cell_is_one_line_naming_file_line_and_column_and_nothing_is_written() {
    let run = tempfile::tempdir().unwrap();
    let src = fixture().join("label/classify/layers.csv");
    let text = std::fs::read_to_string(src).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut cells: Vec<String> = lines[3].split(',').map(String::from).collect();
    cells[2] = "nan".into();
    lines[3] = cells.join(",");
    std::fs::create_dir_all(run.path().join("label/classify")).unwrap();
    std::fs::write(
        run.path().join("label/classify/layers.csv"),
        lines.join("\n") + "\n",
    )
    .unwrap();
    let out = run.path().join("report");
    let o = report(run.path(), &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "{err}"
    );
    assert!(
        err.contains(
            "layers.csv: line 4, column 'c1_acc': expected a number in [0, 1], found 'nan'"
        ),
        "{err}"
    );
    assert!(!out.join("index.html").exists());
}

#[test]
fn out_that_is_a_file_is_a_usage_error() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let o = report(&fixture(), f.path(), &[]);
    assert_eq!(o.status.code(), Some(2));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn figures_no_longer_drawn_are_removed_and_nothing_else() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    copy_dir(&fixture(), &run);
    let out = t.path().join("report");
    assert!(report(&run, &out, &["--layer", "4"]).status.success());
    assert!(out.join("prune.svg").exists() && out.join("prune.png").exists());
    std::fs::write(out.join("notes.svg"), "mine").unwrap();
    // The prune stage's output goes away: so do its figure files, not the user's.
    std::fs::remove_file(run.join("prune/summary.csv")).unwrap();
    let o = report(&run, &out, &["--layer", "4"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.join("prune.svg").exists() && !out.join("prune.png").exists());
    assert!(out.join("refusal.svg").exists() && out.join("refusal.png").exists());
    assert_eq!(
        std::fs::read_to_string(out.join("notes.svg")).unwrap(),
        "mine"
    );
    // Without PNGs, the earlier PNGs go too (they would show older data).
    assert!(report(&run, &out, &["--layer", "4", "--no-png"])
        .status
        .success());
    assert!(out.join("refusal.svg").exists() && !out.join("refusal.png").exists());
}
