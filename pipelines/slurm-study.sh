#!/usr/bin/env bash
# The study on a Slurm cluster: `make demo`'s stages with act-dump split into a job array.
#
#   N=16 RUN=runs/cluster MODEL=models/your-model.gguf bash pipelines/slurm-study.sh
#
# Run it from the repository root on a login node after `make setup` (the binaries and data
# must be on a filesystem every node sees). It submits three steps, each after the last
# succeeded (sbatch --dependency=afterok):
#   1. prep:   prompt sets, the base model's answers and safety-tune (`make` of the tuned
#              model's file target);
#   2. acts:   a job array of N tasks; task K runs `act-dump --shard K/N` for the base and the
#              tuned model on the analysis prompts;
#   3. study:  `act-dump merge` of each model's shards into the files an unsharded run writes,
#              then `make demo`, which finds the activations up to date and runs the rest.
# SBATCH_FLAGS (e.g. "--partition=cpu --time=02:00:00 --cpus-per-task=8") go to every step.
# DRY_RUN=1 prints the sbatch commands instead of submitting them.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-8}
RUN=${RUN:-runs/default}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
BATCH=${BATCH:-16}
SBATCH_FLAGS=${SBATCH_FLAGS:-}
BIN=target/release
DATA=$RUN/data
SHARDS=$RUN/slurm-shards
MK="make RUN=$RUN MODEL=$MODEL BATCH=$BATCH"

submit() { # name, extra sbatch flags, command -> prints the job id
  local name=$1 extra=$2 cmd=$3
  if [ -n "${DRY_RUN:-}" ]; then
    echo "sbatch --parsable --job-name=hd-$name $SBATCH_FLAGS $extra --wrap=\"$cmd\"" >&2
    echo "DRY-$name"
    return
  fi
  # shellcheck disable=SC2086
  sbatch --parsable --job-name="hd-$name" --output="$RUN/slurm-%x-%A_%a.log" $SBATCH_FLAGS $extra \
    --wrap="$cmd"
}

command -v sbatch >/dev/null 2>&1 || [ -n "${DRY_RUN:-}" ] \
  || { echo "slurm-study: sbatch not found (run this on a Slurm login node)" >&2; exit 1; }
mkdir -p "$RUN" "$SHARDS"

prep=$(submit prep "" \
  "$MK $DATA/analysis.csv $RUN/base/test_responses.csv $RUN/tuned/safety_tune.json")

# One task per shard; each dumps both models so the array is N tasks, not 2N.
acts_cmd='set -e; k=$SLURM_ARRAY_TASK_ID'
for m in base tuned; do
  model=$MODEL; [ "$m" = tuned ] && model=$RUN/tuned
  acts_cmd+="; $BIN/act-dump --model $model --prompts $DATA/analysis.csv --batch-size $BATCH"
  acts_cmd+=" --shard \$k/$N --out $SHARDS/$m-\$k.safetensors --rows $SHARDS/$m-\${k}_rows.csv"
done
acts=$(submit acts "--array=0-$((N - 1)) --dependency=afterok:$prep" "$acts_cmd")

study_cmd='set -e'
for m in base tuned; do
  parts=""
  for ((k = 0; k < N; k++)); do parts+=" $SHARDS/$m-$k.safetensors"; done
  study_cmd+="; $BIN/act-dump merge --out $RUN/$m/analysis.safetensors --rows $RUN/$m/analysis_rows.csv$parts"
done
study_cmd+="; $MK demo"
study=$(submit study "--dependency=afterok:$acts" "$study_cmd")

echo "slurm-study: submitted prep $prep, acts $acts (array of $N), study $study; report: $RUN/report/index.html" >&2
