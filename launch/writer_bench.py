"""Images per second of the synthetic subject's image writer.

Times `rdmjax.data.synthetic._images`, the whole image pipeline of
`write_subject` (rendering, PNG files, the filter model's channels), for
N images of SIZE px, and prints one JSON line: images/s, CPU time per
image, peak RSS, CPUs and the CPU model. To compare with another commit, run the same script
with that commit's package first on the path:

  python launch/writer_bench.py --n=320 --size=425
  git worktree add /tmp/old HEAD~1
  PYTHONPATH=/tmp/old python launch/writer_bench.py --n=320 --size=425
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from rdmjax.bench import cpu_model
from rdmjax.data import synthetic


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--n', type=int, default=320, help='images')
  ap.add_argument('--size', type=int, default=425, help='pixels')
  ap.add_argument('--seed', type=int, default=0)
  args = ap.parse_args()
  p = synthetic._params(
    'subj01', n_train=args.n - args.n // 10, image_size=args.size, seed=0
  )
  ids = np.arange(args.n)
  lat = synthetic.draw_latents(synthetic._rng(args.seed, 1), args.n)
  with tempfile.TemporaryDirectory() as tmp:
    t, cpu = time.perf_counter(), time.process_time()
    synthetic._images(p, Path(tmp), ids, lat, progress=False)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    mb = sum(f.stat().st_size for f in Path(tmp).rglob('*.png')) / 1e6
  print(
    json.dumps(
      dict(
        writer=synthetic.__file__,
        n=args.n,
        size=args.size,
        wall_s=round(wall, 2),
        images_per_s=round(args.n / wall, 1),
        # CPU time (all threads) per image: what a loaded machine still
        # measures fairly.
        cpu_ms_per_image=round(1e3 * cpu / args.n, 1),
        png_mb=round(mb, 1),
        peak_rss_gb=round(
          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2
        ),
        cpus=len(os.sched_getaffinity(0)),
        cpu=cpu_model(),
      )
    )
  )


if __name__ == '__main__':
  main()
