#!/usr/bin/env bash
# Spreads one kimi-lab sweep over a Slurm job array: task i of n trains the points whose index is
# i modulo n (`sweep --shard i/n`), and a last job, started when every task has ended, writes the
# merged summary and plots (`sweep --summarize`). The sweep directory must be on a filesystem
# every node sees (the shards write into it side by side; points are locked one by one).
#   bash tools/slurm_sweep.sh SWEEP.yaml N [sbatch options ...]
#   bash tools/slurm_sweep.sh experiments/paper/figure4_mqar.yaml 8 --gres=gpu:1 --time=04:00:00
# Without Slurm, the same split by hand (one line per machine, then the merge anywhere):
#   kimi-lab sweep SWEEP.yaml --shard 0/2 --device cuda ;  kimi-lab sweep SWEEP.yaml --shard 1/2 --device cuda
#   kimi-lab sweep SWEEP.yaml --summarize
# KIMI_LAB picks the binary (default: build-cuda/kimi-lab, else build/kimi-lab).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash tools/slurm_sweep.sh SWEEP.yaml N [sbatch options ...]" >&2
  exit 2
fi
sweep="$1"; n="$2"; shift 2
[ -f "$sweep" ] || { echo "slurm_sweep: $sweep: no such file" >&2; exit 2; }
case "$n" in '' | *[!0-9]* | 0) echo "slurm_sweep: N=$n: give a positive number of tasks" >&2; exit 2 ;; esac
command -v sbatch >/dev/null || { echo "slurm_sweep: sbatch not found (is this a Slurm login node?)" >&2; exit 2; }
bin="${KIMI_LAB:-}"
if [ -z "$bin" ]; then
  bin="$PWD/build-cuda/kimi-lab"; [ -x "$bin" ] || bin="$PWD/build/kimi-lab"
fi
[ -x "$bin" ] || { echo "slurm_sweep: $bin is not an executable kimi-lab (set KIMI_LAB)" >&2; exit 2; }
# Every point is validated once here, before anything is queued.
"$bin" sweep "$sweep" --dry-run >/dev/null
array=$(sbatch --parsable --job-name=kimi-sweep --array=0-$((n - 1)) "$@" \
  --wrap="'$bin' sweep '$sweep' --shard \$SLURM_ARRAY_TASK_ID/$n --no-progress --no-plot")
merge=$(sbatch --parsable --job-name=kimi-sweep-merge --dependency=afterany:"$array" \
  --wrap="'$bin' sweep '$sweep' --summarize --no-progress")
echo "queued: job array $array ($n tasks), merge job $merge (after every task ends)"
