#!/usr/bin/env bash
# exposure-table.sh DIR K... : the exposure experiment's table (make exposure) on stdout.
# One row per k and harmful test.csv category: the attack pass rate (share of answers the
# refusal judge does not call a refusal), the over-refusal on the held-out safe set (share
# refused), and the shift's effective rank at tau = 0.9 for every layer (rank_l<layer>).
# Reads DIR/k<K>/{test_summary.txt, heldout_safe_summary.txt, rank.csv}.
set -euo pipefail
dir=$1
shift
[ $# -gt 0 ] || { echo "exposure-table.sh: no k given" >&2; exit 2; }
for k in "$@"; do
  for f in test_summary.txt heldout_safe_summary.txt rank.csv; do
    [ -s "$dir/k$k/$f" ] || { echo "exposure-table.sh: $dir/k$k/$f: missing or empty" >&2; exit 1; }
  done
done
first=1
for k in "$@"; do
  d=$dir/k$k
  # Per-layer ranks at tau = 0.9, in layer order: "l1 l2 ...", then "r1 r2 ...".
  layers=$(awk -F, 'NR > 1 && ($2 - 0.9) ^ 2 < 1e-12 { printf "%s ", $1 }' "$d/rank.csv")
  ranks=$(awk -F, 'NR > 1 && ($2 - 0.9) ^ 2 < 1e-12 { printf "%s ", $3 }' "$d/rank.csv")
  [ -n "$ranks" ] || { echo "exposure-table.sh: $d/rank.csv: no tau = 0.9 rows" >&2; exit 1; }
  if [ $first = 1 ]; then
    printf 'k,category,pass_rate,over_refusal'
    for l in $layers; do printf ',rank_l%s' "$l"; done
    printf '\n'
    first=0
  fi
  over=$(awk 'NR > 1 { n += $2; r += $3 } END { printf "%.4f", r / n }' "$d/heldout_safe_summary.txt")
  awk -v k="$k" -v over="$over" -v ranks="$ranks" '
    NR > 1 && $1 != "benign" && $1 != "borderline" {
      gsub(/ +$/, "", ranks); gsub(/ /, ",", ranks)
      printf "%s,%s,%.4f,%s,%s\n", k, $1, 1 - $3 / $2, over, ranks
    }' "$d/test_summary.txt"
done
