#!/usr/bin/env bash
# Pair throughput at full-subject scale on one GPU: 9841 images x 39548
# vertices, 512-d embeddings, the default MLP, bf16 then float32.
#
# Usage:   launch/gpu_pairs_bench.sh
# Env:     WORKDIR     output folder (default /tmp/rdmjax_pairs_bench)
#          BLOCK_SIZE  images per block batch (default 1024: 523776 pairs)
#          GATHER_MB   row-gather memory of uniform (default 8192)
#          NAIVE_PAIRS pairs per naive host gather (default 4096)
#          REPEATS     timed calls per figure (default 5)
#          PYTHON      interpreter (default python)
#          DRY_RUN=1   print the commands instead of running them
# Output:  one JSON line per figure on stdout and in $WORKDIR/bench.jsonl;
#          block first, then uniform and naive with block_speedup; compare
#          pairs_per_s only on the same card.
# Resume:  nothing to resume; rerunning appends new lines.
set -euo pipefail

WORKDIR="${WORKDIR:-/tmp/rdmjax_pairs_bench}"
BLOCK_SIZE="${BLOCK_SIZE:-1024}"
GATHER_MB="${GATHER_MB:-8192}"
NAIVE_PAIRS="${NAIVE_PAIRS:-4096}"
REPEATS="${REPEATS:-5}"
PYTHON="${PYTHON:-python}"

run() {
  if [[ "${DRY_RUN:-0}" == "1" ]]; then
    echo "$*"
  else
    "$@"
  fi
}

for dtype in bfloat16 float32; do
  run "$PYTHON" -m rdmjax.main --mode=bench --workdir="$WORKDIR" \
    --config=configs/bench.py:suite=pairs,n=9841,d=39548 \
    --config.bench.emb_dim=512 \
    --config.bench.gather_mb="$GATHER_MB" \
    --config.bench.naive_pairs="$NAIVE_PAIRS" \
    --config.bench.repeats="$REPEATS" \
    --config.pairs.block_size="$BLOCK_SIZE" \
    --config.model.dtype="$dtype"
done
