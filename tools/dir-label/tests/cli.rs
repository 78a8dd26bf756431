//! Runs the real `dir-label` binary: outputs and their headers, byte-identical reruns, labels
//! from a column or from refusal scores, planted directions, and bad input (one line, exit
//! 1 or 2, no output left).

use hd_testkit::cli::Run;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use dir_label::classify::{CATEGORIES_CSV, COMPONENTS_CSV, LAYERS_CSV};
use hd_analysis::classify::splitmix64;
use hd_formats::meta::PROMPT_IDS_HASH;
use hd_formats::tensors::{components_name, resid_name, Tensor, TensorFile};

const BIN: &str = env!("CARGO_BIN_EXE_dir-label");
const N: usize = 48;
const D: usize = 8;
const K: usize = 5;
const LAYERS: [usize; 3] = [0, 1, 2];
const CATS: [&str; 4] = ["roleplay", "weapons", "benign", "borderline"];

fn run(dir: &Path, args: &[&str]) -> Run {
    hd_testkit::cli::run(BIN, dir, args)
}

fn ok(dir: &Path, args: &[&str]) {
    hd_testkit::cli::ok(BIN, dir, args)
}

/// Deterministic standard normals (Box–Muller on SplitMix64).
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(1);
        ((splitmix64(self.0) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn next(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn category(i: usize) -> &'static str {
    CATS[i % 4]
}

fn harmful(i: usize) -> bool {
    i % 4 < 2
}

/// The prompt rows: harmful = roleplay and weapons; a two-valued `half` column (a/b).
fn rows_csv(label: impl Fn(usize) -> String) -> String {
    let mut s = String::from("id,prompt,label,category,half\n");
    for i in 0..N {
        let half = if i < N / 2 { "a" } else { "b" };
        s += &format!("p{i:02},prompt {i},{},{},{half}\n", label(i), category(i));
    }
    s
}

/// Layer 1: harmful rows +4 along e0 (C1), roleplay rows +4 along e1 (C2); other layers
/// noise. Components: e0..e4.
fn acts(hash: Option<&str>) -> TensorFile {
    let mut f = TensorFile::new(meta(hash));
    let mut rng = Normal(11);
    for &l in &LAYERS {
        let mut x: Vec<f32> = (0..N * D).map(|_| rng.next() as f32).collect();
        if l == 1 {
            for i in 0..N {
                if harmful(i) {
                    x[i * D] += 4.0;
                }
                if category(i) == "roleplay" {
                    x[i * D + 1] += 4.0;
                }
            }
        }
        f.insert(resid_name(l), Tensor::f32(vec![N, D], x).unwrap());
    }
    f
}

fn comps(hash: Option<&str>, layers: &[usize], k: usize, d: usize) -> TensorFile {
    let mut f = TensorFile::new(meta(hash));
    for &l in layers {
        let mut c = vec![0f32; k * d];
        for j in 0..k {
            c[j * d + j % d] = 1.0;
        }
        f.insert(components_name(l), Tensor::f32(vec![k, d], c).unwrap());
    }
    f
}

/// Metadata with the given ids hash; when it is the rows' own, the rows' text hashes too (as
/// act-dump records them: the prompt text does not depend on the label column).
fn meta(hash: Option<&str>) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let rows = rows_csv(|_| "harmless".into());
    let table = hd_formats::prompts::PromptTable::from_bytes("rows.csv", rows.as_bytes()).unwrap();
    match hash {
        Some(h) if h == table.ids_hash() => hd_formats::meta::set_prompt_hashes(&mut m, &table),
        Some(h) => {
            m.insert(PROMPT_IDS_HASH.to_string(), h.to_string());
        }
        None => {}
    }
    m
}

/// A folder with acts.safetensors, svd.safetensors and rows.csv (hashes from the rows).
fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let rows = rows_csv(|i| if harmful(i) { "harmful" } else { "harmless" }.into());
    std::fs::write(dir.join("rows.csv"), &rows).unwrap();
    let table = hd_formats::prompts::PromptTable::read(&dir.join("rows.csv")).unwrap();
    let h = table.ids_hash();
    acts(Some(&h)).write(&dir.join("acts.safetensors")).unwrap();
    comps(Some(&h), &LAYERS, K, D)
        .write(&dir.join("svd.safetensors"))
        .unwrap();
    (tmp, dir)
}

const BASE: [&str; 7] = [
    "classify",
    "--acts",
    "acts.safetensors",
    "--components",
    "svd.safetensors",
    "--rows",
    "rows.csv",
];

fn args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = BASE.to_vec();
    v.extend(["--out-dir", out]);
    v.extend(extra);
    v
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// `layers.csv` as layer -> field -> value.
fn layers(dir: &Path) -> BTreeMap<usize, BTreeMap<String, String>> {
    let text = read(dir, LAYERS_CSV.0);
    let mut lines = text.lines();
    let head: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let m: BTreeMap<String, String> = head
                .iter()
                .cloned()
                .zip(f.iter().map(|s| s.to_string()))
                .collect();
            (f[0].parse().unwrap(), m)
        })
        .collect()
}

fn num(m: &BTreeMap<String, String>, k: &str) -> f64 {
    m[k].parse().unwrap()
}

#[test]
fn outputs_have_the_columns_and_rerun_byte_identically() {
    let (_t, dir) = setup();
    ok(&dir, &args("out", &[]));
    ok(&dir, &args("again", &["-q"]));
    let out = dir.join("out");
    for (name, header) in [COMPONENTS_CSV, LAYERS_CSV, CATEGORIES_CSV] {
        let text = read(&out, name);
        assert_eq!(text.lines().next(), Some(header), "{name} header");
        assert_eq!(
            text,
            read(&dir.join("again"), name),
            "{name}: rerun differs"
        );
    }
    assert_eq!(
        LAYERS_CSV.1,
        "layer,c1_acc_paper,c1_acc,c1_auc,best_k,best_acc,probe_acc,probe_auc,pooled_probe_acc,dim_acc,cos_probe_c1"
    );
    let comps = read(&out, COMPONENTS_CSV.0);
    assert_eq!(comps.lines().count(), 1 + LAYERS.len() * K);
    assert!(comps.contains("\n1,1,L1-C1,"), "{comps}");
    assert!(comps.contains("\n2,5,L2-C5,"), "{comps}");
    let cats = read(&out, CATEGORIES_CSV.0);
    assert_eq!(cats.lines().count(), 1 + LAYERS.len() * K * CATS.len());
    // Layer 1: C1 is the planted harmful direction; harmful rows project higher, so the
    // reference's rule on -c gets it backwards.
    let l = layers(&out);
    let l1 = &l[&1];
    assert_eq!(l1["best_k"], "1");
    assert!(
        num(l1, "c1_acc") > 0.95 && num(l1, "c1_auc") > 0.98,
        "{l1:?}"
    );
    assert!(num(l1, "c1_acc_paper") < 0.1, "{l1:?}");
    assert!(
        num(l1, "probe_acc") > 0.9 && num(l1, "dim_acc") > 0.9,
        "{l1:?}"
    );
    assert!(num(l1, "cos_probe_c1") > 0.5, "{l1:?}");
    assert!(num(&l[&0], "c1_acc") < 0.8, "noise layer: {:?}", l[&0]);
    // C2 of layer 1 is roleplay's: its categories row has the top AUC against harmless.
    let role: Vec<&str> = cats
        .lines()
        .filter(|r| r.starts_with("1,2,"))
        .max_by(|a, b| {
            let f = |r: &str| r.split(',').nth(6).unwrap().parse::<f64>().unwrap();
            f(a).total_cmp(&f(b))
        })
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(role[2], "roleplay", "{role:?}");
    assert_eq!(role[3], (N / 4).to_string());
}

#[test]
fn labels_from_refusal_scores_or_any_two_valued_column() {
    let (_t, dir) = setup();
    // Only the roleplay rows "refused": C2 (the roleplay direction) becomes the best.
    let mut from = String::from("id,prompt,n_tokens,refusal_score\n");
    for i in 0..N {
        let s = if category(i) == "roleplay" { 2.5 } else { -1.0 };
        from += &format!("p{i:02},prompt {i},7,{s}\n");
    }
    std::fs::write(dir.join("tuned_rows.csv"), from).unwrap();
    ok(
        &dir,
        &args(
            "refused",
            &[
                "--by",
                "refused",
                "--rows-from",
                "tuned_rows.csv",
                "--layers",
                "1",
            ],
        ),
    );
    let l = layers(&dir.join("refused"));
    assert_eq!(l.keys().copied().collect::<Vec<_>>(), vec![1]);
    assert_eq!(l[&1]["best_k"], "2", "{:?}", l[&1]);
    assert!(num(&l[&1], "best_acc") > 0.95);

    ok(
        &dir,
        &args("half", &["--by", "half", "--positive", "b", "--k", "3"]),
    );
    let comps = read(&dir.join("half"), COMPONENTS_CSV.0);
    assert_eq!(comps.lines().count(), 1 + LAYERS.len() * 3);
}

struct Bad<'a> {
    what: &'a str,
    args: Vec<&'a str>,
    code: i32,
    needles: &'a [&'a str],
}

fn write_rows(dir: &Path, name: &str, label: impl Fn(usize) -> String) {
    std::fs::write(dir.join(name), rows_csv(label)).unwrap();
}

#[test]
fn bad_input_is_one_line_and_leaves_no_output() {
    let (_t, dir) = setup();
    let h = hd_formats::prompts::PromptTable::read(&dir.join("rows.csv"))
        .unwrap()
        .ids_hash();
    comps(Some("sha256:other"), &LAYERS, K, D)
        .write(&dir.join("other.safetensors"))
        .unwrap();
    comps(Some(&h), &LAYERS, K, D + 1)
        .write(&dir.join("wide.safetensors"))
        .unwrap();
    comps(Some(&h), &[0, 1], K, D)
        .write(&dir.join("two.safetensors"))
        .unwrap();
    let mut nan = acts(Some(&h));
    if let Some(Tensor {
        data: hd_formats::tensors::TensorData::F32(v),
        ..
    }) = nan.tensors.get_mut(&resid_name(1))
    {
        v[3 * D + 2] = f32::NAN;
    }
    nan.write(&dir.join("nan.safetensors")).unwrap();
    write_rows(&dir, "one.csv", |_| "harmful".into());
    write_rows(&dir, "three.csv", |i| {
        ["harmful", "harmless", "unsure"][i % 3].into()
    });
    let mut bad_score = String::from("id,prompt,refusal_score\n");
    for i in 0..N {
        bad_score += &format!("p{i:02},x,{}\n", if i == 5 { "NaN" } else { "1.0" });
    }
    std::fs::write(dir.join("bad_score.csv"), bad_score).unwrap();
    let short: String = rows_csv(|i| if harmful(i) { "harmful" } else { "harmless" }.into())
        .lines()
        .take(N)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("short.csv"), short).unwrap();
    // Files without a prompt_ids_hash (plain exports): only the row count can catch this.
    acts(None)
        .write(&dir.join("plain_acts.safetensors"))
        .unwrap();
    comps(None, &LAYERS, K, D)
        .write(&dir.join("plain_svd.safetensors"))
        .unwrap();
    let short_rows: Vec<&str> = vec![
        "classify",
        "--acts",
        "plain_acts.safetensors",
        "--components",
        "plain_svd.safetensors",
        "--rows",
        "short.csv",
        "--out-dir",
        "out",
    ];

    let with = |flag: &'static str, value: &'static str| -> Vec<&'static str> {
        let mut v: Vec<&str> = BASE.to_vec();
        let i = v.iter().position(|a| *a == flag).unwrap();
        v[i + 1] = value;
        v.extend(["--out-dir", "out"]);
        v
    };
    let plus = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = with("--rows", "rows.csv");
        v.extend(extra);
        v
    };
    std::fs::write(dir.join("a_file"), "x").unwrap();
    let mut to_file = with("--rows", "rows.csv");
    let last = to_file.len() - 1;
    to_file[last] = "a_file";
    let cases = [
        Bad {
            what: "out-dir is a file",
            args: to_file,
            code: 2,
            needles: &["--out-dir a_file", "not a folder"],
        },
        Bad {
            what: "prompt sets",
            args: with("--components", "other.safetensors"),
            code: 1,
            needles: &["other.safetensors", "different prompts"],
        },
        Bad {
            what: "d",
            args: with("--components", "wide.safetensors"),
            code: 1,
            needles: &["wide.safetensors", "components.0", "share d"],
        },
        Bad {
            what: "k",
            args: plus(&["--k", "9"]),
            code: 2,
            needles: &["--k 9", "components.0", "only 5"],
        },
        Bad {
            what: "one value",
            args: with("--rows", "one.csv"),
            code: 1,
            needles: &["one.csv", "column 'label' has one value"],
        },
        Bad {
            what: "three values",
            args: with("--rows", "three.csv"),
            code: 1,
            needles: &["three.csv", "column 'label' has 3 values"],
        },
        Bad {
            what: "no positives",
            args: plus(&["--positive", "toxic"]),
            code: 1,
            needles: &["rows.csv", "no row has 'toxic'"],
        },
        Bad {
            what: "missing layer",
            args: with("--components", "two.safetensors"),
            code: 1,
            needles: &["layer 2", "two.safetensors", "components.2"],
        },
        Bad {
            what: "NaN",
            args: with("--acts", "nan.safetensors"),
            code: 1,
            needles: &[
                "nan.safetensors",
                "resid.1",
                "non-finite",
                "row 3, column 2",
            ],
        },
        Bad {
            what: "NaN score",
            args: plus(&["--by", "refused", "--rows-from", "bad_score.csv"]),
            code: 1,
            needles: &["bad_score.csv", "data row 6", "refusal_score"],
        },
        Bad {
            what: "short rows, hash",
            args: with("--rows", "short.csv"),
            code: 1,
            needles: &["acts.safetensors", "short.csv", "different prompts"],
        },
        Bad {
            what: "short rows",
            args: short_rows,
            code: 1,
            needles: &["plain_acts.safetensors", "resid.0", "47 prompt rows"],
        },
        Bad {
            what: "no rows-from",
            args: plus(&["--by", "refused"]),
            code: 2,
            needles: &["--rows-from"],
        },
        Bad {
            what: "column",
            args: plus(&["--by", "nope"]),
            code: 2,
            needles: &["no column 'nope'"],
        },
        Bad {
            what: "layers",
            args: plus(&["--layers", "7"]),
            code: 1,
            needles: &["--layers 7"],
        },
        Bad {
            what: "flag",
            args: plus(&["--k", "0"]),
            code: 2,
            needles: &["--k"],
        },
    ];
    for c in &cases {
        let r = run(&dir, &c.args);
        assert_eq!(r.code, c.code, "{}: stderr:\n{}", c.what, r.stderr);
        if c.code == 1 || c.what != "flag" {
            // The error is one line; held warnings (a plain export records no prompt text
            // hash) follow it.
            assert_eq!(
                r.stderr
                    .trim_end()
                    .lines()
                    .filter(|l| !l.contains(" WARN "))
                    .count(),
                1,
                "{}: one line:\n{}",
                c.what,
                r.stderr
            );
        }
        for n in c.needles {
            assert!(
                r.stderr.contains(n),
                "{}: stderr lacks {n:?}:\n{}",
                c.what,
                r.stderr
            );
        }
        let out = dir.join("out");
        let left: Vec<_> = std::fs::read_dir(&out)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{}: left {left:?}", c.what);
    }
}

#[test]
fn classify_help_names_the_flags_and_is_stable() {
    let out = Command::new(BIN)
        .args(["classify", "--help"])
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--acts",
        "--components",
        "--rows-from",
        "--positive",
        "Example",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/dir-label/classify-help.txt");
    if std::env::var_os("UPDATE_HELP").is_some() {
        hd_formats::atomic::write_atomic(&path, |w| w.write_all(help.as_bytes())).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        help, want,
        "classify --help changed; rerun with UPDATE_HELP=1 and review the diff"
    );
}
