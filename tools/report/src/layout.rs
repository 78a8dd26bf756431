//! Where a study's files are under its run folder (pipelines/paper.mk writes them there), and
//! the make target that writes each. One table, so the pipeline and the report cannot drift
//! apart silently: a renamed output shows up as a "stage not run" box naming the path.

/// A file of the run: path relative to the run folder, and the target that makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input {
    /// Relative to the run folder.
    pub path: &'static str,
    /// `make` target that writes it.
    pub make: &'static str,
}

macro_rules! input {
    ($name:ident, $path:expr, $make:expr) => {
        #[allow(missing_docs)]
        pub const $name: Input = Input {
            path: $path,
            make: $make,
        };
    };
}

input!(BASE_TEST, "base/test_responses.csv", "make demo");
input!(
    TUNED_TEST,
    "tuned-eval/test_responses.csv",
    "make tuned-eval"
);
input!(
    DPO_TEST,
    "tuned-dpo-eval/test_responses.csv",
    "make tuned-dpo"
);
input!(
    BASE_SAFE,
    "base/heldout_safe_responses.csv",
    "make tuned-eval"
);
input!(
    BASE_HARMFUL,
    "base/heldout_harmful_responses.csv",
    "make tuned-eval"
);
input!(
    TUNED_SAFE,
    "tuned-eval/heldout_safe_responses.csv",
    "make tuned-eval"
);
input!(
    TUNED_HARMFUL,
    "tuned-eval/heldout_harmful_responses.csv",
    "make tuned-eval"
);
input!(SHIFT_RANK, "shift-tuned/rank.csv", "make shift-tuned");
input!(
    SHIFT_SPECTRUM,
    "shift-tuned/spectrum.csv",
    "make shift-tuned"
);
input!(CONTRAST_RANK, "contrast/rank.csv", "make demo");
input!(LAYERS, "label/classify/layers.csv", "make label");
input!(CATEGORIES, "label/classify/categories.csv", "make label");
input!(TOKENS, "label/tokens/tokens.csv", "make label");
input!(LABELS, "label/tokens/labels.csv", "make label");
input!(TEST_PROMPTS, "data/test.csv", "make demo");
input!(RELEVANCE, "interact/relevance.csv", "make interact");
input!(EDGES, "interact/edges.csv", "make interact");
input!(SWEEP, "interact/sweep.csv", "make interact");
input!(PRUNE, "prune/summary.csv", "make prune");
input!(DPO_RANK, "shift-tuned-dpo/rank.csv", "make tuned-dpo");
input!(
    DPO_OVER_SFT_RANK,
    "shift-dpo-over-sft/rank.csv",
    "make tuned-dpo"
);
input!(
    DPO_LAYERS,
    "label-dpo/classify/layers.csv",
    "make tuned-dpo"
);
input!(
    DPO_SAFE,
    "tuned-dpo-eval/heldout_safe_responses.csv",
    "make tuned-dpo"
);
input!(
    DPO_HARMFUL,
    "tuned-dpo-eval/heldout_harmful_responses.csv",
    "make tuned-dpo"
);
input!(
    BASE_ALARMING_SAFE,
    "base/alarming_safe_responses.csv",
    "make tuned-eval"
);
input!(
    BASE_ALARMING_HARMFUL,
    "base/alarming_harmful_responses.csv",
    "make tuned-eval"
);
input!(
    TUNED_ALARMING_SAFE,
    "tuned-eval/alarming_safe_responses.csv",
    "make tuned-eval"
);
input!(
    TUNED_ALARMING_HARMFUL,
    "tuned-eval/alarming_harmful_responses.csv",
    "make tuned-eval"
);
input!(
    DPO_ALARMING_SAFE,
    "tuned-dpo-eval/alarming_safe_responses.csv",
    "make tuned-dpo"
);
input!(
    DPO_ALARMING_HARMFUL,
    "tuned-dpo-eval/alarming_harmful_responses.csv",
    "make tuned-dpo"
);
input!(OVERREFUSAL, "overrefusal.csv", "make overrefusal");
input!(EXPOSURE, "exposure.csv", "make exposure");
input!(GUARD_RANK, "shift-guard/rank.csv", "make tuned-guard");
input!(
    GUARD_LAYERS,
    "label-guard/classify/layers.csv",
    "make tuned-guard"
);
input!(
    GUARD_BASE_LAYERS,
    "label-guard-base/classify/layers.csv",
    "make tuned-guard"
);
input!(
    GUARD_CENTERED_LAYERS,
    "label-guard-centered/classify/layers.csv",
    "make tuned-guard"
);
