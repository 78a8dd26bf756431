#!/usr/bin/env bash
# Runs the study's stages in order, one make target each, and records how long each took:
#   run-stages.sh TIMES_FILE NAME=TARGET...
# A stage whose target is up to date takes ~0 s (make reruns only what changed). Each target
# is built by a sub-make, so `make -jN demo` still runs a stage's independent parts in
# parallel. Writes TIMES_FILE (stage<TAB>seconds<TAB>target) atomically and prints the table.
set -euo pipefail
times=$1; shift
make_cmd=${MAKE:-make}
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
tmp="$times.tmp.$$"
trap 'rm -f "$tmp"' EXIT
mkdir -p "$(dirname "$times")"
printf 'stage\tseconds\ttarget\n' > "$tmp"
total_start=$(date +%s.%N)
for s in "$@"; do
  name=${s%%=*}; target=${s#*=}
  start=$(date +%s.%N)
  echo "== stage $name: $target" >&2
  $make_cmd --no-print-directory "$target"
  end=$(date +%s.%N)
  printf '%s\t%s\t%s\n' "$name" "$(elapsed "$start" "$end")" "$target" >> "$tmp"
done
printf 'total\t%s\t\n' "$(elapsed "$total_start" "$(date +%s.%N)")" >> "$tmp"
echo "stage times (s):" >&2
column -t -s $'\t' < "$tmp" >&2
# `make -n demo` still runs this script (its recipe names $(MAKE)); the sub-makes only print,
# so keep the times of the last real run.
first=${MAKEFLAGS:-}
first=${first%% *}
if [[ "$first" != -* && "$first" == *n* ]]; then
  echo "(dry run: $times left as it was)" >&2
else
  mv "$tmp" "$times"
fi
