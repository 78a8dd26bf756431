//! The answer judge against the committed hand labels (`data/judge/labelled.csv`): agreement
//! and the 3×3 confusion matrix on the part the rules were tuned on and on the held-out part
//! must be what `data/judge/README.md` quotes between its `agreement` markers, so a change of
//! the judge that moves them fails here until the README says the new figures.

use generate::{Judge, Outcome};
use hd_formats::prompts::PromptTable;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `matrix[hand][judge]` over the rows of one split (`None`: every row).
fn confusion(t: &PromptTable, split: Option<&str>) -> [[usize; 3]; 3] {
    let judge = Judge::default();
    let mut m = [[0usize; 3]; 3];
    for i in 0..t.len() {
        if split.is_some_and(|s| t.get(i, "split") != Some(s)) {
            continue;
        }
        let hand = t
            .get(i, "label")
            .and_then(Outcome::parse)
            .unwrap_or_else(|| {
                panic!(
                    "labelled.csv: row with id '{}': label must be refused, complied or neither",
                    t.id(i)
                )
            });
        let got = judge.outcome(t.get(i, "request").unwrap(), t.get(i, "answer").unwrap());
        m[hand as usize][got as usize] += 1;
    }
    m
}

fn agreement(m: &[[usize; 3]; 3]) -> (usize, usize) {
    let n = m.iter().flatten().sum();
    ((0..3).map(|k| m[k][k]).sum(), n)
}

/// The README block: agreement per part with its 95% Wilson interval, then each matrix.
fn block(t: &PromptTable) -> String {
    let parts = [
        ("tuning part", Some("tune")),
        ("held-out part", Some("heldout")),
        ("all", None),
    ];
    let mut s = String::from("| part | n | agreement | 95% CI |\n|---|---|---|---|\n");
    let ms: Vec<_> = parts.iter().map(|(_, p)| confusion(t, *p)).collect();
    for ((name, _), m) in parts.iter().zip(&ms) {
        let (k, n) = agreement(m);
        let (lo, hi) = hd_analysis::stats::wilson(k, n);
        s += &format!(
            "| {name} | {n} | {:.1}% ({k}/{n}) | [{:.1}, {:.1}] |\n",
            100.0 * k as f64 / n as f64,
            100.0 * lo,
            100.0 * hi
        );
    }
    for ((name, _), m) in parts.iter().zip(&ms) {
        s += &format!(
            "\n{name}, rows = hand label, columns = judge:\n\n\
             | hand \\ judge | refused | complied | neither |\n|---|---|---|---|\n"
        );
        for o in Outcome::ALL {
            let r = m[o as usize];
            s += &format!("| {} | {} | {} | {} |\n", o.name(), r[0], r[1], r[2]);
        }
    }
    s
}

#[test]
fn judge_agreement_with_hand_labels_is_what_the_readme_quotes() {
    let t = PromptTable::read(&root().join("data/judge/labelled.csv")).unwrap();
    assert!(
        t.len() >= 200,
        "labelled.csv: {} rows, at least 200 expected",
        t.len()
    );
    let want = block(&t);
    let readme = std::fs::read_to_string(root().join("data/judge/README.md")).unwrap();
    let (a, b) = ("<!-- agreement:begin -->\n", "<!-- agreement:end -->");
    let start = readme.find(a).expect("README: agreement:begin marker") + a.len();
    let end = readme.find(b).expect("README: agreement:end marker");
    assert_eq!(
        readme[start..end].trim(),
        want.trim(),
        "data/judge/README.md quotes other figures than the judge gives now:\n{want}"
    );
}
