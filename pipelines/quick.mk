# make smoke: a small real-model pipeline (CI runs it after the tests): a handful of prompts
# through act-dump, generate and shift-svd on the default model.
SMOKE := runs/smoke
SMOKE_PROMPTS := testdata/smoke/prompts.csv

.PHONY: smoke
smoke:
	@mkdir -p $(SMOKE)
	$(BIN)/act-dump --model $(MODEL) --prompts $(SMOKE_PROMPTS) --out $(SMOKE)/acts.safetensors \
	  --rows $(SMOKE)/rows.csv --batch-size 4
	$(BIN)/generate --model $(MODEL) --prompts $(SMOKE_PROMPTS) --out $(SMOKE)/responses.csv \
	  --max-new-tokens 32 --batch-size 6
	$(BIN)/shift-svd --contrast $(SMOKE)/acts.safetensors --rows $(SMOKE_PROMPTS) --by label \
	  --out $(SMOKE)/svd.safetensors --spectrum $(SMOKE)/spectrum.csv --rank $(SMOKE)/rank.csv --k 3
	@grep -q 'Paris' $(SMOKE)/responses.csv \
	  || { echo "smoke: the answer to 'What is the capital of France?' does not mention Paris" >&2; exit 1; }
	@echo "smoke: ok ($(SMOKE))"
