#!/usr/bin/env bash
# overrefusal-table.sh NAME=DIR... : the over-refusal curve's table (make overrefusal) on stdout.
# One row per recipe NAME, evaluation set and type (and `all`, the whole set): how many of
# the set's prompts of that type the refusal judge calls refused. Sets: the held-out sets of
# data/prompts (heldout_safe, heldout_harmful) and the independent ones of data/eval
# (alarming_safe, alarming_harmful). Reads DIR/<set>_summary.txt (generate --summary).
set -euo pipefail
[ $# -gt 0 ] || { echo "overrefusal-table.sh: no NAME=DIR given" >&2; exit 2; }
sets="heldout_safe heldout_harmful alarming_safe alarming_harmful"
for nd in "$@"; do
  case $nd in *=*) ;; *) echo "overrefusal-table.sh: '$nd': expected NAME=DIR" >&2; exit 2 ;; esac
  for s in $sets; do
    [ -s "${nd#*=}/${s}_summary.txt" ] || { echo "overrefusal-table.sh: ${nd#*=}/${s}_summary.txt: missing or empty" >&2; exit 1; }
  done
done
echo "recipe,set,type,n,refused,rate"
for nd in "$@"; do
  for s in $sets; do
    awk -v r="${nd%%=*}" -v s="$s" '
      NR > 1 { printf "%s,%s,%s,%d,%d,%.4f\n", r, s, $1, $2, $3, $3 / $2; n += $2; k += $3 }
      END { printf "%s,%s,all,%d,%d,%.4f\n", r, s, n, k, k / n }' "${nd#*=}/${s}_summary.txt"
  done
done
