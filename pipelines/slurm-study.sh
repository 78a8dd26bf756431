#!/usr/bin/env bash
# The study on a Slurm cluster: `make demo`'s stages with act-dump split into a job array.
#
#   N=16 RUN=runs/cluster MODEL=models/your-model.gguf bash pipelines/slurm-study.sh
#
# Run it from the repository root on a login node after `make setup` (the binaries and data
# must be on a filesystem every node sees). It submits three steps, each after the last
# succeeded (sbatch --dependency=afterok):
#   1. prep:   `make study-prep`: prompt sets, the base model's answers and safety-tune;
#   2. acts:   a job array of N tasks; task K runs `make study-part K=K`: `act-dump --shard
#              K/N` for the base and the tuned model on the analysis prompts;
#   3. study:  `make study-merge`: `act-dump merge` of each model's shards into the files an
#              unsharded run writes, then `make demo`, which finds the activations up to date
#              and runs the rest.
# SBATCH_FLAGS (e.g. "--partition=cpu --time=02:00:00 --cpus-per-task=8") go to every step.
# DRY_RUN=1 prints the sbatch commands instead of submitting them.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-8}
RUN=${RUN:-runs/default}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
BATCH=${BATCH:-16}
SBATCH_FLAGS=${SBATCH_FLAGS:-}
# The run folder's layout lives in pipelines/paper.mk only: each step is a make target there.
# The prep step builds the tools; the array's tasks and the last step only check them
# (BUILD_TOOLS=:), so N tasks do not each run cargo on the shared filesystem.
MK="make RUN=$RUN MODEL=$MODEL BATCH=$BATCH N=$N"

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
mkdir -p "$RUN"

prep=$(submit prep "" "$MK study-prep")
# One task per shard; each dumps both models so the array is N tasks, not 2N.
acts=$(submit acts "--array=0-$((N - 1)) --dependency=afterok:$prep" \
  "$MK BUILD_TOOLS=: study-part K=\$SLURM_ARRAY_TASK_ID")
study=$(submit study "--dependency=afterok:$acts" "set -e; $MK BUILD_TOOLS=: study-merge; $MK demo")

echo "slurm-study: submitted prep $prep, acts $acts (array of $N), study $study; report: $RUN/report/index.html" >&2
