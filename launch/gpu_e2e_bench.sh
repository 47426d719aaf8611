#!/usr/bin/env bash
# The default pipeline end to end at NSD size on one GPU: the synthetic
# subject of configs/default.py:nsd (9841 + 159 images, 19004 + 20544
# vertices, 425-px images), then data, rdm (2 ROIs x 2 metrics) and train
# (1000 steps of 1024-image blocks, evaluation, the leaked run, report),
# twice: with an empty compilation cache, then with it warm.
#
# Usage:   launch/gpu_e2e_bench.sh
# Env:     WORKDIR     output folder (default /tmp/rdmjax_e2e_bench)
#          STEPS       training steps (default 1000)
#          BLOCK_SIZE  images per block batch (default 1024)
#          PYTHON      interpreter (default python)
#          DRY_RUN=1   print the commands instead of running them
# Output:  one JSON line per stage and run on stdout (rdmjax prints
#          {"stage", "wall_s", "peak_rss_gb"} as each stage ends), also in
#          $WORKDIR/{cold,warm}/timings.jsonl; then one line per run with
#          its total. Writing the subject (once, into $WORKDIR/data) is
#          timed apart and not part of either run.
# Resume:  the subject is written once and reused; each run starts from an
#          empty workdir (cold/, warm/), so rerunning measures again.
set -euo pipefail

WORKDIR="${WORKDIR:-/tmp/rdmjax_e2e_bench}"
STEPS="${STEPS:-1000}"
BLOCK_SIZE="${BLOCK_SIZE:-1024}"
PYTHON="${PYTHON:-python}"
CONFIG=configs/default.py:nsd
CACHE="$WORKDIR/xla_cache"

run() {
  if [[ "${DRY_RUN:-0}" == "1" ]]; then
    echo "$*"
  else
    "$@"
  fi
}

# The subject only (the data stage writes it under <workdir>/data).
mkdir -p "$WORKDIR"
t0=$(date +%s.%N)
run "$PYTHON" -m rdmjax.main --mode=data --workdir="$WORKDIR" \
  --config="$CONFIG" --compilation_cache=
t1=$(date +%s.%N)
echo "{\"run\": \"subject\", \"wall_s\": $(awk "BEGIN {printf \"%.2f\", $t1 - $t0}")}"

rm -rf "$CACHE"
for name in cold warm; do
  dir="$WORKDIR/$name"
  if [[ "${DRY_RUN:-0}" != "1" ]]; then
    rm -rf "$dir" && mkdir -p "$dir" && ln -s "$WORKDIR/data" "$dir/data"
  fi
  t0=$(date +%s.%N)
  # stdout: rdmjax's stage lines as they come (logs go to $dir.log).
  run "$PYTHON" -m rdmjax.main --workdir="$dir" --config="$CONFIG" \
    --compilation_cache="$CACHE" \
    --config.train.steps="$STEPS" \
    --config.pairs.block_size="$BLOCK_SIZE" 2>"$WORKDIR/$name.log" |
    grep --line-buffered '"stage"\|--workdir' |
    sed -u "s/^{/{\"run\": \"$name\", /"
  t1=$(date +%s.%N)
  echo "{\"run\": \"$name\", \"total_wall_s\": $(awk "BEGIN {printf \"%.2f\", $t1 - $t0}")}"
done
