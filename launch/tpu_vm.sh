#!/usr/bin/env bash
# Runs one rdmjax command on every worker of a Cloud TPU VM (single host or
# pod slice), as big_vision does: `gcloud ... tpu-vm ssh --worker=all`.
# Every worker runs the same program; jax.distributed.initialize() finds the
# others from the TPU metadata.
#
# Usage:
#   TPU_NAME=my-v5e-32 ZONE=us-west4-a WORKDIR=/mnt/shared/runs/mlp \
#   CONFIG=configs/default.py launch/tpu_vm.sh --config.data.root=/mnt/algonauts
# First time on a new TPU VM: SETUP=1 installs rdmjax on every worker from
# REPO (a git URL, default: this checkout's origin).
#
# Required env: TPU_NAME, ZONE, WORKDIR (reachable from every worker: a
#   shared disk or a gcsfuse mount of a bucket; rdmjax writes local paths).
# Optional env: CONFIG (default configs/default.py), MODE (default: all),
#   PROJECT (gcloud project), SETUP=1, REPO, DRY_RUN=1 (print only).
# Resume: rerun the same command; training continues from WORKDIR/ckpt.
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU VM zone}"
: "${WORKDIR:?set WORKDIR (a path every worker can reach: a shared mount)}"
CONFIG="${CONFIG:-configs/default.py}"
MODE="${MODE:-all}"
REPO="${REPO:-$(git config --get remote.origin.url || true)}"

project=()
[[ -n "${PROJECT:-}" ]] && project=(--project="$PROJECT")

run_all() {
  local remote="$1"
  local cmd=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" \
    "${project[@]}" --worker=all --command="$remote")
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' "${cmd[@]}"; echo
  else
    "${cmd[@]}"
  fi
}

if [[ "${SETUP:-0}" == 1 ]]; then
  : "${REPO:?set REPO to a git URL of rdmjax}"
  run_all "set -e; [ -d rdmjax ] || git clone $REPO rdmjax; cd rdmjax && \
python3 -m venv .venv && . .venv/bin/activate && \
pip install -q -e . 'jax[tpu]'"
fi

extra=$(printf '%q ' "$@")
run_all "cd rdmjax && . .venv/bin/activate && python -m rdmjax.main \
--config=$CONFIG --workdir=$WORKDIR --mode=$MODE --jax_distributed $extra"
