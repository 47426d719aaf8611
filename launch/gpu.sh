#!/usr/bin/env bash
# Runs rdmjax on GPU machines: one process per host, JAX's own
# multi-controller runtime across hosts (jax.distributed.initialize()).
#
# Usage (one host):
#   WORKDIR=/data/runs/mlp CONFIG=configs/default.py launch/gpu.sh [FLAGS...]
# Usage (several hosts: run the same command on every host):
#   COORDINATOR=host0:1234 NUM_PROCESSES=4 PROCESS_ID=$RANK \
#   WORKDIR=... CONFIG=... launch/gpu.sh --config.data.root=/data/algonauts
# Under SLURM (srun), leave COORDINATOR unset: jax.distributed.initialize()
# reads the SLURM environment itself.
#
# Required env: WORKDIR (shared by all hosts: checkpoints and metrics).
# Optional env: CONFIG (default configs/default.py), MODE (default: all),
#   COORDINATOR, NUM_PROCESSES, PROCESS_ID (multi-host without SLURM),
#   PYTHON (default python3), DRY_RUN=1 (print the command, environment
#   included, and run nothing).
# Several hosts under SLURM: launch/slurm.sbatch (srun runs this script once
# per task; tested on one machine by tests/multiprocess_test.py).
# Resume: rerun the same command with the same WORKDIR; training continues
# from the latest Orbax checkpoint in WORKDIR/ckpt.
set -euo pipefail

: "${WORKDIR:?set WORKDIR to the run directory (shared by all hosts)}"
CONFIG="${CONFIG:-configs/default.py}"
MODE="${MODE:-all}"
PYTHON="${PYTHON:-python3}"

# Let XLA take GPU memory as it needs (big RDM tiles, pair batches).
envs=("XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}")
distributed=()
if [[ -n "${COORDINATOR:-}" ]]; then
  : "${NUM_PROCESSES:?set NUM_PROCESSES with COORDINATOR}"
  : "${PROCESS_ID:?set PROCESS_ID with COORDINATOR}"
  envs+=("JAX_COORDINATOR_ADDRESS=$COORDINATOR"
    "JAX_NUM_PROCESSES=$NUM_PROCESSES" "JAX_PROCESS_ID=$PROCESS_ID")
  distributed=(--jax_distributed)
elif [[ -n "${SLURM_JOB_ID:-}" && "${SLURM_NTASKS:-1}" -gt 1 ]]; then
  distributed=(--jax_distributed)  # the coordinator from SLURM's variables
fi

# What runs, environment included (DRY_RUN prints exactly this).
cmd=(env "${envs[@]}" "$PYTHON" -m rdmjax.main --config="$CONFIG" \
  --workdir="$WORKDIR" --mode="$MODE" "${distributed[@]}" "$@")
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%q ' "${cmd[@]}"; echo
else
  exec "${cmd[@]}"
fi
