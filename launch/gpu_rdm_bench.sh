#!/usr/bin/env bash
# Full-subject correlation RDM on one GPU: time, TFLOP/s, error vs float64,
# each precision beside a plain jitted 1 - z @ z.T measured in the same run.
#
# Usage:   WORKDIR=/tmp/rdm_bench bash launch/gpu_rdm_bench.sh [FLAGS...]
# Env (all optional):
#   WORKDIR  output folder, bench.jsonl there     (default /tmp/rdmjax_rdm_bench)
#   N, D     responses shape                      (default: 9841 39548,
#            subj01 of Algonauts 2023, random data)
#   TILE     rdm block-row height, 0 = default    (default: 0)
#   REPEATS  timed calls after one warm-up call   (default: 5)
#   PYTHON   interpreter with rdmjax and jax[cuda] (default: python)
#   DRY_RUN=1  print the command instead of running it
# About 1-2 minutes of GPU time. The float64 reference is a host product of
# the first 1024 rows against all rows (--config.bench.ref_rows). Output:
# one JSON line per figure, printed as measured; compare speedup_vs_plain,
# and milliseconds only on the same card. Resume: nothing; rerun appends.
set -euo pipefail
cd "$(dirname "$0")/.."

cmd=("${PYTHON:-python}" -m rdmjax.main --mode=bench
  --workdir="${WORKDIR:-/tmp/rdmjax_rdm_bench}"
  --config="configs/bench.py:suite=rdm,n=${N:-9841},d=${D:-39548}"
  --config.bench.baselines="('plain',)"
  --config.bench.tile="${TILE:-0}"
  --config.bench.repeats="${REPEATS:-5}" "$@")
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%q ' "${cmd[@]}"; echo
else
  exec "${cmd[@]}"
fi
