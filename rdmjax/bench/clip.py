"""Benchmark: CLIP image tower throughput (images/s), rdmjax vs PyTorch.

  rdmjax --mode=bench --config=configs/clip_embed.py:bench --workdir=DIR

Random weights of the architecture `config.embed.model` names (ViT-B/32 by
default, no checkpoint needed), random pixels made on the device, the jitted
forward to the projected embedding at every batch size in
`config.embed.bench_batch_sizes` and dtype in `config.embed.bench_dtypes`.
Compile and one warm-up call are excluded; the figure is the median of
`config.bench.repeats` timed calls with `block_until_ready`.

The baseline, measured in the same run where torch is installed: transformers'
`CLIPVisionModelWithProjection` in PyTorch (what THINGSvision-style
extraction runs) on the same device kind (CUDA if available, else CPU, where
only the smallest batch size is timed), same dtype, `torch.inference_mode`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from rdmjax import bench, sharding
from rdmjax.bench import time_fn
from rdmjax.embed import clip_vision as cv
from rdmjax.embed import clip_weights


def flops_per_image(cfg) -> float:
  """Forward FLOPs of one image (2 per multiply-add), analytic."""
  t, d, f = cfg.num_tokens, cfg.hidden_size, cfg.intermediate_size
  patch = (t - 1) * cfg.patch_size**2 * cfg.num_channels * d
  per_layer = t * (4 * d * d + 2 * d * f) + 2 * t * t * d
  return 2.0 * (patch + cfg.num_layers * per_layer + d * cfg.projection_dim)


def _jax_rows(config, hf, mesh) -> Iterator[dict]:

  cfg = cv.tower_config(hf)
  s = cfg.image_size
  for dtype in config.embed.bench_dtypes:
    ec = config.embed.copy_and_resolve_references()
    ec.dtype, ec.random_init = dtype, True
    model, _, _, _ = clip_weights.build_tower(ec)
    precision = None if dtype != 'float32' else ec.precision
    forward = cv.make_forward(model, ('image_embeds',), mesh)
    for batch in config.embed.bench_batch_sizes:
      sharding.check_divisible(
        'config.embed.bench_batch_sizes entry',
        batch,
        mesh,
        'use multiples of the device count',
      )
      make = jax.jit(
        functools.partial(
          jax.random.normal, shape=(batch, s, s, 3), dtype=jnp.float32
        ),
        out_shardings=sharding.batch_sharding(mesh),
      )
      pixels = make(jax.random.key(batch))
      with jax.transfer_guard('disallow'):
        t = bench.time_fn(forward, pixels, repeats=config.bench.repeats)
      out = np.asarray(forward(pixels)['image_embeds'])
      ips = batch / t['median_s']
      yield dict(
        impl='rdmjax',
        dtype=dtype,
        precision=precision or 'default',
        batch=batch,
        images_per_sec=ips,
        images_per_sec_per_device=ips / jax.device_count(),
        tflops=ips * flops_per_image(cfg) / 1e12,
        median_s=t['median_s'],
        first_call_s=t['first_s'],
        finite=bool(np.all(np.isfinite(out))),
      )


def _torch_rows(config, hf, batches) -> list[dict]:
  try:
    # PyTorch, on first use: only the hf backend and references need it.
    import torch
    import transformers
  except ImportError:
    return []

  dev = 'cuda' if torch.cuda.is_available() else 'cpu'
  if dev == 'cpu':
    batches = batches[:1]  # CPU PyTorch at ViT-B size is slow: one point
  s = hf.image_size
  rows = []
  for dtype in config.embed.bench_dtypes:
    tdt = {'float32': torch.float32, 'bfloat16': torch.bfloat16}[dtype]
    torch.manual_seed(0)
    m = transformers.CLIPVisionModelWithProjection(hf).eval().to(dev, tdt)
    for batch in batches:
      x = torch.randn(batch, 3, s, s, device=dev, dtype=tdt)

      def fn(m=m, x=x):
        with torch.inference_mode():
          return m(pixel_values=x).image_embeds

      def sync(y, dev=dev):
        if dev == 'cuda':
          torch.cuda.synchronize()
        return y

      t = time_fn(fn, repeats=config.bench.repeats, sync=sync)
      rows.append(
        dict(
          impl=f'transformers-torch-{dev}',
          dtype=dtype,
          batch=batch,
          images_per_sec=batch / t['median_s'],
          median_s=t['median_s'],
          first_call_s=t['first_s'],
          torch=torch.__version__,
          torch_threads=torch.get_num_threads(),
        )
      )
  return rows


def run(config: Any) -> Iterator[dict]:
  """Measures the CLIP tower: one dict per (impl, dtype, batch).

  The PyTorch baseline runs first, so every rdmjax figure is printed with
  `vs_torch` (its images/s over the baseline's at the same dtype and batch)
  where the baseline was measured.

  Args:
    config: the full config (sections embed, bench, mesh).
  """
  # transformers, on first use: heavy, and only some stages need it.
  from transformers import CLIPVisionConfig

  arch = config.embed.model
  if arch in cv.ARCHITECTURES:
    hf = CLIPVisionConfig(**cv.ARCHITECTURES[arch])
  else:
    folder = clip_weights.resolve(arch)
    hf = cv.vision_config(clip_weights.read_hf_config(folder))
  mesh = sharding.make_mesh(config.mesh)
  common = dict(
    suite='clip',
    model=arch,
    image_size=hf.image_size,
    repeats=config.bench.repeats,
    processes=jax.process_count(),
    flax=flax.__version__,
  )
  base = _torch_rows(config, hf, list(config.embed.bench_batch_sizes))
  for r in base:
    yield dict(common, **r)
  ref = {(r['dtype'], r['batch']): r['images_per_sec'] for r in base}
  for r in _jax_rows(config, hf, mesh):
    if (r['dtype'], r['batch']) in ref:
      r['vs_torch'] = r['images_per_sec'] / ref[r['dtype'], r['batch']]
    yield dict(common, **r)
