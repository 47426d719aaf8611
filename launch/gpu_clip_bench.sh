#!/usr/bin/env bash
# CLIP image tower throughput on one GPU: random ViT-B/32 weights at 224 px
# (no checkpoint, no network), bf16 and f32, batch sizes 256, 512, 1024,
# against transformers' PyTorch tower on the same GPU. About 2 to 3 minutes
# on an H100, most of it compilation.
#
# Usage:
#   WORKDIR=/tmp/clip_bench launch/gpu_clip_bench.sh [FLAGS...]
#   WORKDIR=... launch/gpu_clip_bench.sh --config.embed.bench_batch_sizes='(2048,)'
#   WORKDIR=... launch/gpu_clip_bench.sh --config.embed.model=openai/clip-vit-large-patch14
#
# Required env: WORKDIR (results.json and the bench JSON lines go there).
# Optional env: PYTHON (default python3), DRY_RUN=1 (print, run nothing).
# Output: one JSON object per (implementation, dtype, batch size) with
#   images_per_sec, tflops, vs_torch (ratio over PyTorch at that point).
# Resume: nothing to resume; rerun.
set -euo pipefail

: "${WORKDIR:?set WORKDIR to a folder for the benchmark output}"
PYTHON="${PYTHON:-python3}"

export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"

cmd=("$PYTHON" -m rdmjax.main --config=configs/clip_embed.py:bench \
  --workdir="$WORKDIR" --mode=bench "$@")
if [[ "${DRY_RUN:-0}" == 1 ]]; then
  printf '%q ' "${cmd[@]}"; echo
else
  exec "${cmd[@]}"
fi
