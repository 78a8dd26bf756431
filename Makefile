# hidden-dims: `make setup` once, then `make demo` (the study on the default model) and
# `make test`. Stages are file targets (pipelines/*.mk), so make reruns only what changed.
SHELL := bash
.DELETE_ON_ERROR:
MODEL ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
BIN := target/release
CARGO_TEST := cargo test --release --locked --workspace

.PHONY: setup test lint demo smoke bench oracle clean-runs docs package install-check
setup:
	bash scripts/setup.sh

# Tests use the release profile: the binaries `make setup` built are reused, and candle is
# compiled once.
test:
	$(CARGO_TEST)

lint:
	cargo fmt --all --check
	cargo clippy --release --locked --workspace --all-targets -- -D warnings

# Reuse (README, "One tool or one library in another project"): the crate docs without a
# warning, every library and tool packaged (no verify: a verify builds each crate's
# dependencies afresh, about 15 minutes), and one tool installed alone into a scratch root.
# The install reuses target/ but resolves act-dump's features alone, so it relinks
# target/release/act-dump; the workspace build after it puts the workspace's own binary back
# (with its old time, so no stage reruns).
docs:
	RUSTDOCFLAGS="-D warnings" cargo doc --release --no-deps --workspace --locked
package:
	cargo package --workspace --no-verify --locked --no-metadata --allow-dirty
install-check:
	@root=$$(mktemp -d) && trap 'rm -rf "$$root"' EXIT \
	  && CARGO_TARGET_DIR=target cargo install --locked --path tools/act-dump --root "$$root" \
	  && "$$root/bin/act-dump" --version && $(BUILD_TOOLS) \
	  && echo "install-check: act-dump installs alone ($$root/bin/act-dump)"

# The Hugging Face transformers environment, for the parity test and the benchmarks only.
oracle:
	bash bench/setup-oracle.sh

bench:
	bash bench/run.sh

clean-runs:
	rm -rf runs

include pipelines/quick.mk
include pipelines/paper.mk
