# make smoke: a small real-model pipeline (CI runs it after the tests): a handful of prompts
# through act-dump, generate, shift-svd and dir-interact relevance on the default model, the
# guard pair in miniature (smoke-guard, ~25 s), the example crate (examples/dump-layer)
# against act-dump's row, and the report over that run (so the report reads what the tools really write); then when
# paper.mk reruns a stage (scripts/check-reruns.sh: size stamps and edited tools, stub tools,
# ~10 s), and that the always-run `cargo build` leaves unchanged binaries untouched.
# Then the bad-input sweep (scripts/bad-inputs.sh: every tool, wrong inputs, expected exit
# code and message; ~15 s), `make pair` on two small models (scripts/pair-smoke.sh, ~2 min),
# and every model-running tool on each family's small random model, HF and GGUF
# (scripts/family-smoke.sh, ~15 s, on pair-smoke's prompt sets).
SMOKE := runs/smoke
SMOKE_PROMPTS := testdata/smoke/prompts.csv
ALL_TOOLS := $(addprefix $(BIN)/,$(notdir $(wildcard tools/*)))

.PHONY: smoke
smoke: $(ALL_TOOLS) $(BIN)/dump-layer
	@mkdir -p $(SMOKE)
	$(BIN)/act-dump --model $(MODEL) --prompts $(SMOKE_PROMPTS) --out $(SMOKE)/acts.safetensors \
	  --rows $(SMOKE)/rows.csv --batch-size 4
	$(BIN)/generate --model $(MODEL) --prompts $(SMOKE_PROMPTS) --out $(SMOKE)/responses.csv \
	  --max-new-tokens 32 --batch-size 6
	$(MAKE) --no-print-directory smoke-guard
	$(BIN)/shift-svd --contrast $(SMOKE)/acts.safetensors --rows $(SMOKE_PROMPTS) --by label \
	  --out $(SMOKE)/svd.safetensors --spectrum $(SMOKE)/spectrum.csv --rank $(SMOKE)/rank.csv --k 3
	$(BIN)/dir-interact relevance --model $(MODEL) --components $(SMOKE)/svd.safetensors \
	  --prompts $(SMOKE_PROMPTS) --target 10 --k-source 3 --k-target 3 --out-dir $(SMOKE)/interact
	$(BIN)/dump-layer $(MODEL) 10 "What is the capital of France?" $(SMOKE)/example.safetensors
	python3 scripts/same-row.py $(SMOKE)/example.safetensors $(SMOKE)/acts.safetensors resid.10 0
	$(BIN)/report --run $(SMOKE) --out $(SMOKE)/report --layer 10 --no-png
	@grep -q 'L9-C1' $(SMOKE)/report/index.html \
	  || { echo "smoke: the report shows no relevance heatmap of L9 -> L10" >&2; exit 1; }
	@grep -q 'Paris' $(SMOKE)/responses.csv \
	  || { echo "smoke: the answer to 'What is the capital of France?' does not mention Paris" >&2; exit 1; }
	@bash scripts/check-reruns.sh
	@before=$$(stat -c '%n %y' $(ALL_TOOLS)); $(BUILD_TOOLS) 2>/dev/null; \
	  [ "$$before" = "$$(stat -c '%n %y' $(ALL_TOOLS))" ] \
	  || { echo "smoke: a cargo build without an edit touched a binary (every stage would rerun)" >&2; exit 1; }
	@BIN=$(BIN) MODEL=$(MODEL) bash scripts/bad-inputs.sh
	@BIN=$(BIN) bash scripts/pair-smoke.sh $(MODEL)
	@BIN=$(BIN) bash scripts/family-smoke.sh runs/pair-smoke/data
	@echo "smoke: ok ($(SMOKE))"

# The guard pair in miniature (`make tuned-guard` at smoke size: 2 steps of LoRA on the last
# two blocks): safety-tune --objective guard, both models' states in the guard template and
# their shift, the tuned model's verdicts, and the check that a guard dump never pairs with
# the chat dump of the same prompts.
.PHONY: smoke-guard
smoke-guard: $(BIN)/safety-tune $(BIN)/act-dump $(BIN)/shift-svd $(BIN)/generate
	@mkdir -p $(SMOKE)
	$(BIN)/safety-tune --objective guard --model $(MODEL) --train $(SMOKE_PROMPTS) --out $(SMOKE)/guard \
	  --method lora --rank 2 --first-layer 28 --epochs 1 --batch-size 3 --save-every 0 -q
	$(BIN)/act-dump --model $(MODEL) --prompts $(SMOKE_PROMPTS) --template guard --layers 29,30 \
	  --out $(SMOKE)/guard-base.safetensors --batch-size 6
	$(BIN)/act-dump --model $(SMOKE)/guard --prompts $(SMOKE_PROMPTS) --template guard --layers 29,30 \
	  --out $(SMOKE)/guard-tuned.safetensors --batch-size 6
	$(BIN)/shift-svd --base $(SMOKE)/guard-base.safetensors --tuned $(SMOKE)/guard-tuned.safetensors \
	  --out $(SMOKE)/guard-svd.safetensors --k 3
	$(BIN)/generate --model $(SMOKE)/guard --prompts $(SMOKE_PROMPTS) --template guard --judge guard \
	  --max-new-tokens 3 --out $(SMOKE)/guard-verdicts.csv
	@if $(BIN)/shift-svd --base $(SMOKE)/acts.safetensors --tuned $(SMOKE)/guard-tuned.safetensors \
	    --layers 29 --out $(SMOKE)/mixed.safetensors 2> $(SMOKE)/mixed.err \
	  || ! grep -q prompt_format $(SMOKE)/mixed.err; then \
	  echo "smoke: a guard-template dump was paired with a chat dump" >&2; exit 1; fi
