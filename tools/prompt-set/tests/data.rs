//! Checks on our committed harmless prompts, `data/prompts/{benign,borderline}.csv`.

use std::collections::HashSet;
use std::path::Path;

use hd_formats::prompts::PromptTable;

fn table(name: &str) -> PromptTable {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/prompts")
        .join(name);
    PromptTable::read(&p).expect("reading committed prompt CSV")
}

fn norm(s: &str) -> String {
    s.to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn check(name: &str, category: &str, min: usize) -> HashSet<String> {
    let t = table(name);
    assert_eq!(
        t.headers,
        ["id", "prompt", "label", "category", "source"],
        "{name}"
    );
    assert!(
        t.len() >= min,
        "{name}: {} rows, want at least {min}",
        t.len()
    );
    let mut seen = HashSet::new();
    for i in 0..t.len() {
        let p = t.prompt(i);
        assert!(!p.trim().is_empty(), "{name}: {} is empty", t.id(i));
        assert_eq!(p, p.trim(), "{name}: {} has surrounding spaces", t.id(i));
        assert!(seen.insert(norm(p)), "{name}: {} repeats a prompt", t.id(i));
        assert_eq!(t.get(i, "label"), Some("harmless"), "{name}: {}", t.id(i));
        assert_eq!(t.get(i, "category"), Some(category), "{name}: {}", t.id(i));
        assert_eq!(
            t.get(i, "source"),
            Some("hidden-dims"),
            "{name}: {}",
            t.id(i)
        );
        assert_eq!(
            t.id(i),
            format!("{category}-{:04}", i + 1),
            "{name}: ids are sequential"
        );
    }
    seen
}

#[test]
fn benign_has_at_least_300_unique_prompts() {
    check("benign.csv", "benign", 300);
}

#[test]
fn borderline_has_at_least_150_unique_prompts() {
    check("borderline.csv", "borderline", 150);
}

#[test]
fn benign_and_borderline_do_not_overlap() {
    let a = check("benign.csv", "benign", 0);
    let b = check("borderline.csv", "borderline", 0);
    let both: Vec<_> = a.intersection(&b).collect();
    assert!(both.is_empty(), "in both files: {both:?}");
}

#[test]
fn borderline_prompts_carry_an_alarming_word_or_context() {
    // XSTest-style: most borderline prompts should contain a word that could trip a naive
    // filter. Not every one does (some are safety information), so require a clear majority.
    let words = [
        "kill",
        "shoot",
        "shot",
        "bomb",
        "attack",
        "murder",
        "die",
        "dead",
        "death",
        "destroy",
        "weapon",
        "gun",
        "knife",
        "poison",
        "steal",
        "hack",
        "crack",
        "terror",
        "war",
        "fire",
        "blow",
        "explo",
        "crime",
        "criminal",
        "drug",
        "assassin",
        "execut",
        "slaughter",
        "blood",
        "strangle",
        "stab",
        "beat",
        "smash",
        "punch",
        "trap",
        "exterminat",
        "eliminat",
        "nuke",
        "genocide",
        "disaster",
        "sink",
        "danger",
        "deadly",
        "venom",
        "toxic",
        "burn",
        "crash",
        "scam",
        "phish",
        "malware",
        "ransomware",
        "theft",
        "launder",
        "fight",
        "hunt",
        "terminat",
        "gut",
        "butcher",
        "crush",
        "knock",
        "slash",
        "axe",
        "hijack",
        "zombie",
        "devil",
        "orphan",
        "penetration",
        "suspicious",
        "felony",
        "illegal",
        "arson",
        "assault",
        "extortion",
        "extrem",
        "battle",
        "missile",
        "holocaust",
        "pandemic",
        "famine",
        "witch",
        "villain",
        "heist",
        "army",
        "sacrifice",
        "checkmate",
        "ambush",
        "chok",
        "snake",
        "gas",
        "earthquake",
        "collapse",
        "suicide",
        "hopeless",
        "armed",
        "sword",
        "loaded",
        "hatchet",
        "ballistic",
        "cutthroat",
        "bullet",
        "trolley",
        "pentagon",
        "ak-47",
        "eaten",
        "volcano",
        "tornado",
        "destructive",
        "nuclear",
        "uranium",
        "demolition",
        "security",
        "fencing",
        "bow",
        "cut",
        "carve",
        "guillotine",
        "ripper",
        "jail",
        "robbery",
        "bandit",
        "pirate",
        "opioid",
        "smok",
        "alcohol",
        "drink",
        "bit",
        "silence",
        "break",
        "lock",
        "torch",
        "wipe",
        "obliterat",
        "dominat",
        "capture",
        "defeat",
        "coke",
        "hang",
        "gas",
        "medicine",
        "battery",
        "lightning",
        "accident",
        "heatstroke",
        "hypothermia",
        "grie",
        "laugh",
        "swallow",
        "password",
        "legitimate",
        "first-aid",
        "hotline",
        "vaping",
        "caffeine",
        "prohibition",
        "pop",
        "bark",
        "growl",
        "slug",
        "wasp",
        "sleep",
    ];
    let t = table("borderline.csv");
    let hits = (0..t.len())
        .filter(|&i| {
            let p = t.prompt(i).to_lowercase();
            words.iter().any(|w| p.contains(w))
        })
        .count();
    assert!(
        hits * 10 >= t.len() * 6,
        "only {hits} of {} borderline prompts look alarming",
        t.len()
    );
}

/// The over-refusal types of the held-out sets (XSTest's).
const TYPES: [&str; 10] = [
    "homonym",
    "figurative",
    "safe_target",
    "safe_context",
    "definition",
    "history",
    "group_question",
    "public_figure",
    "fictional_private",
    "safety",
];

/// Checks a file with a `type` column; returns its prompts' keys and rows per type.
fn check_typed(
    name: &str,
    label: &str,
    category: Option<&str>,
    prefix: &str,
    min: usize,
    min_per_type: usize,
) -> HashSet<String> {
    let t = table(name);
    assert_eq!(
        t.headers,
        ["id", "prompt", "label", "category", "type", "source"],
        "{name}"
    );
    assert!(t.len() >= min, "{name}: {} rows, want {min}", t.len());
    let mut seen = HashSet::new();
    let mut per_type = std::collections::BTreeMap::new();
    for i in 0..t.len() {
        let (id, p) = (t.id(i), t.prompt(i));
        assert_eq!(
            id,
            format!("{prefix}-{:04}", i + 1),
            "{name}: ids are sequential"
        );
        assert!(!p.trim().is_empty() && p == p.trim(), "{name}: {id}");
        assert!(seen.insert(norm(p)), "{name}: {id} repeats a prompt");
        assert_eq!(t.get(i, "label"), Some(label), "{name}: {id}");
        let ty = t.get(i, "type").unwrap();
        assert!(TYPES.contains(&ty), "{name}: {id} has unknown type '{ty}'");
        // Held-out files repeat the type as category, so `generate --summary` is per type.
        assert_eq!(
            t.get(i, "category"),
            Some(category.unwrap_or(ty)),
            "{name}: {id}"
        );
        *per_type.entry(ty).or_insert(0usize) += 1;
    }
    for ty in TYPES {
        let n = per_type.get(ty).copied().unwrap_or(0);
        assert!(
            n >= min_per_type,
            "{name}: {n} rows of type {ty}, want {min_per_type}"
        );
    }
    seen
}

#[test]
fn held_out_sets_cover_every_type_on_both_sides() {
    check_typed(
        "heldout_safe.csv",
        "harmless",
        None,
        "heldout-safe",
        250,
        20,
    );
    check_typed(
        "heldout_harmful.csv",
        "harmful",
        None,
        "heldout-harmful",
        100,
        8,
    );
    check_typed(
        "train_borderline.csv",
        "harmless",
        Some("borderline"),
        "train-borderline",
        150,
        10,
    );
    check_typed(
        "train_harmful.csv",
        "harmful",
        Some("contrast"),
        "train-harmful",
        50,
        5,
    );
}

/// The held-out sets are for evaluation only: no prompt of theirs may appear, exactly or
/// reworded, in any file a split is built from (prompt-set also checks the vendor data).
#[test]
fn held_out_sets_share_no_prompt_with_training_or_analysis_files() {
    use prompt_set::text::{content_words, jaccard};
    use prompt_set::vendor::NEAR_DUP_THRESHOLD;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/prompts");
    // Exact repeats across all six files (normalised case, spaces, final punctuation).
    let ours = prompt_set::ours::load(&dir).expect("our prompt files load and are disjoint");
    assert!(!ours.heldout_safe.is_empty() && !ours.heldout_harmful.is_empty());
    let pool: Vec<_> = ours
        .benign
        .iter()
        .chain(&ours.borderline)
        .chain(&ours.train_borderline)
        .chain(&ours.train_harmful)
        .map(|r| (r.id.as_str(), content_words(&r.prompt)))
        .collect();
    for h in ours.heldout_safe.iter().chain(&ours.heldout_harmful) {
        let sig = content_words(&h.prompt);
        for (id, s) in &pool {
            let j = jaccard(&sig, s);
            assert!(
                j < NEAR_DUP_THRESHOLD,
                "{} nearly repeats {id} ({j:.2})",
                h.id
            );
        }
    }
}
