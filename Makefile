# hidden-dims: `make setup` once, then `make demo` (the study on the default model) and
# `make test`. Stages are file targets (pipelines/*.mk), so make reruns only what changed.
SHELL := bash
.DELETE_ON_ERROR:
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
BIN := target/release
CARGO_TEST := cargo test --release --locked --workspace

.PHONY: setup test lint demo smoke bench oracle clean-runs
setup:
	bash scripts/setup.sh

# Tests use the release profile: the binaries `make setup` built are reused, and candle is
# compiled once.
test:
	$(CARGO_TEST)

lint:
	cargo fmt --all --check
	cargo clippy --release --locked --workspace --all-targets -- -D warnings

# The Hugging Face transformers environment, for the parity test and the benchmarks only.
oracle:
	bash bench/setup-oracle.sh

bench:
	bash bench/run.sh

clean-runs:
	rm -rf runs

include pipelines/quick.mk
include pipelines/paper.mk
