#!/usr/bin/env bash
# The README's numbers table is the report's numbers.md, verbatim, between the markers
# <!-- numbers:begin --> and <!-- numbers:end -->.
#   readme-numbers.sh NUMBERS_MD          rewrite the README's block from it
#   readme-numbers.sh --check NUMBERS_MD  exit 1 (with a diff) when the README differs
set -euo pipefail
cd "$(dirname "$0")/.."
check=""
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
numbers=${1:?usage: readme-numbers.sh [--check] NUMBERS_MD}
[ -f "$numbers" ] || { echo "readme-numbers: $numbers not found (make report first)" >&2; exit 1; }
grep -q '^<!-- numbers:begin -->$' README.md && grep -q '^<!-- numbers:end -->$' README.md \
  || { echo "readme-numbers: README.md has no numbers:begin/end markers" >&2; exit 1; }
new=$(mktemp)
trap 'rm -f "$new"' EXIT
awk -v f="$numbers" '
  /^<!-- numbers:begin -->$/ { print; while ((getline l < f) > 0) print l; skip = 1; next }
  /^<!-- numbers:end -->$/ { skip = 0 }
  !skip { print }' README.md > "$new"
if [ -n "$check" ]; then
  diff -u README.md "$new" >&2 || { echo "readme-numbers: README.md's numbers differ from $numbers (run make readme-numbers)" >&2; exit 1; }
  echo "readme-numbers: README.md matches $numbers" >&2
else
  cat "$new" > README.md
fi
