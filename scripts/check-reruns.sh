#!/usr/bin/env bash
# Checks when pipelines/paper.mk reruns a stage (`make smoke` runs it): a sized stage runs once,
# not again while its settings stay, again when one changes, and a stage sized by other
# settings is left alone; editing a tool's source reruns the stages that use it and no other,
# and without an edit nothing reruns. The stages' tools are stubs that log their calls,
# "built" (BUILD_TOOLS) by copying src/TOOL over bin/TOOL only when it differs, as cargo
# relinks a binary only when its sources changed; the run is a scratch one whose inputs are
# older than everything make would build from them.
set -euo pipefail
cd "$(dirname "$0")/.."
x=$(mktemp -d)
trap 'rm -rf "$x"' EXIT
run=$x/run
mkdir -p "$run/data" "$run/tuned" "$x/bin" "$x/src"
for tool in prompt-set safety-tune generate dir-label; do
  printf '#!/bin/sh\necho "%s $*" >> "$(dirname "$0")/calls.log"\n' "$tool" > "$x/src/$tool"
done
cat > "$x/src/token-prune" <<'EOF'
#!/usr/bin/env bash
echo "token-prune $*" >> "$(dirname "$0")/calls.log"
while [ $# -gt 0 ]; do case $1 in --summary|--out) touch "$2"; shift;; esac; shift; done
EOF
chmod +x "$x"/src/*
cat > "$x/build.sh" <<'EOF'
for f in "$(dirname "$0")"/src/*; do
  b=$(dirname "$0")/bin/$(basename "$f")
  cmp -s "$f" "$b" || cp -p "$f" "$b"
done
EOF
# The tools built a minute ago, then each input a second newer than what it is made from (the
# prompt sets newer than the tools and the checkout's data/prompts/*.csv).
t=$(($(date +%s) - 60))
cp -p "$x"/src/* "$x/bin/"
touch -d "@$t" "$x"/bin/*
for f in data/analysis.csv data/train.csv data/test.csv data/train_need_answers.csv \
         data/train_answers.csv tuned/safety_tune.json; do
  t=$((t + 1))
  touch -d "@$t" "$run/$f"
done
target=$run/prune/summary.csv
calls() { wc -l < "$x/bin/calls.log" 2>/dev/null || echo 0; }
step() {  # step WHAT EXPECTED_CALLS MAKE_ARGS...
  local what=$1 want=$2; shift 2
  sleep 1  # a file system with whole-second times would see a stamp and its output as equal
  make --no-print-directory -s RUN="$run" BIN="$x/bin" BUILD_TOOLS="sh $x/build.sh" "$@" "$target" \
    > /dev/null
  if [ "$(calls)" -ne "$want" ]; then
    echo "check-reruns: $what: token-prune ran $(calls) times in all, expected $want" >&2
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
  || { echo "check-reruns: the last call lacks the new settings" >&2; exit 1; }
size=(PER_CATEGORY=9 PRUNE_METHODS=attribution)
step "no edit" 3 "${size[@]}"
echo '# an edit' >> "$x/src/dir-label"
step "another stage's tool edited (dir-label)" 3 "${size[@]}"
cmp -s "$x/src/dir-label" "$x/bin/dir-label" \
  || { echo "check-reruns: the edited dir-label was not rebuilt" >&2; exit 1; }
echo '# an edit' >> "$x/src/token-prune"
step "the stage's tool edited (token-prune)" 4 "${size[@]}"
step "no edit since" 4 "${size[@]}"
echo "check-reruns: ok" >&2
