#!/bin/sh
# Regenerates the golden files of tools/prompt-set/tests/cli.rs after an intended change.
# Run from the repository root; review the diff before committing.
set -eu
cargo build --release -p prompt-set
bin=target/release/prompt-set
d=testdata/prompt-set
env -i "$bin" --help > "$d/help.txt"
env -i "$bin" --vendor "$d/vendor" --ours "$d/ours" --out-dir "$d/expected" --seed 42 \
  --analysis-behaviours 3 --train-behaviours 2 --test-behaviours 2 \
  --analysis-benign 3 --train-benign 2 --test-benign 2 \
  --analysis-borderline 2 --train-borderline 1 --test-borderline 1
