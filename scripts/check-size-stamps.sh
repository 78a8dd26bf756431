#!/usr/bin/env bash
# Checks the size stamps of pipelines/paper.mk (`make smoke` runs it): a sized stage runs once,
# not again while its settings stay, again when one changes, and a stage sized by other
# settings is left alone. The stages' tools are stubs that log their calls, in a scratch run
# whose inputs are older than everything make would build from them.
set -euo pipefail
cd "$(dirname "$0")/.."
x=$(mktemp -d)
trap 'rm -rf "$x"' EXIT
run=$x/run
mkdir -p "$run/data" "$run/tuned" "$x/bin"
# Each input a second newer than what it is made from (the prompt sets newer than the
# checkout's data/prompts/*.csv), and every tool present, so make builds none of them.
t=$(($(date +%s) - 60))
for f in data/analysis.csv data/train.csv data/test.csv data/train_need_answers.csv \
         data/train_answers.csv tuned/safety_tune.json; do
  t=$((t + 1))
  touch -d "@$t" "$run/$f"
done
for tool in prompt-set safety-tune generate; do
  printf '#!/bin/sh\necho "%s $*" >> "$(dirname "$0")/calls.log"\n' "$tool" > "$x/bin/$tool"
  chmod +x "$x/bin/$tool"
done
cat > "$x/bin/token-prune" <<'EOF'
#!/usr/bin/env bash
echo "token-prune $*" >> "$(dirname "$0")/calls.log"
while [ $# -gt 0 ]; do case $1 in --summary|--out) touch "$2"; shift;; esac; shift; done
EOF
chmod +x "$x/bin/token-prune"
target=$run/prune/summary.csv
calls() { wc -l < "$x/bin/calls.log" 2>/dev/null || echo 0; }
step() {  # step WHAT EXPECTED_CALLS MAKE_ARGS...
  local what=$1 want=$2; shift 2
  sleep 1  # a file system with whole-second times would see a stamp and its output as equal
  make --no-print-directory -s RUN="$run" BIN="$x/bin" "$@" "$target" > /dev/null
  if [ "$(calls)" -ne "$want" ]; then
    echo "check-size-stamps: $what: token-prune ran $(calls) times in all, expected $want" >&2
    tail -n 3 "$x/bin/calls.log" >&2 || true
    exit 1
  fi
}
step "first run" 1
step "same settings" 1
step "another stage's setting (SWEEP_GENERATE)" 1 SWEEP_GENERATE=4
step "PER_CATEGORY changed" 2 PER_CATEGORY=9
step "PER_CATEGORY kept" 2 PER_CATEGORY=9
step "PRUNE_METHODS changed" 3 PER_CATEGORY=9 PRUNE_METHODS=attribution
grep -q -- '--per-category 9 --methods attribution ' "$x/bin/calls.log" \
  || { echo "check-size-stamps: the last call lacks the new settings" >&2; exit 1; }
echo "check-size-stamps: ok" >&2
