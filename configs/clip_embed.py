"""CLIP embeddings of a subject's images, and the CLIP tower benchmark.

  rdmjax --mode=embed --config=configs/clip_embed.py --workdir=DIR \
    --config.data.root=/path/to/algonauts_2023_challenge_data
  rdmjax --mode=embed --config=configs/clip_embed.py:layers=all --workdir=DIR
  rdmjax --mode=bench --config=configs/clip_embed.py:bench --workdir=DIR
  rdmjax --mode=bench --config=configs/clip_embed.py:bench,cpu --workdir=DIR

Args: `layers=all` embeds the projection, the pooled output and every
block's class and mean token (ViT-B/32: 12 blocks); `bench` selects the CLIP
benchmark with random ViT-B/32 weights (no checkpoint needed); `cpu` shrinks
the benchmark's batch sizes to what a laptop CPU finishes in seconds;
`tiny` as configs/default.py.
"""

from rdmjax import config_lib


def get_config(arg=None):
  a = config_lib.parse_arg(arg, tiny=False, bench=False, cpu=False, layers='')
  c = config_lib.load_sibling(__file__, 'default', 'tiny' if a.tiny else None)
  c.data.embeddings = 'clip'
  if a.layers == 'all':
    c.embed.layers = ('image_embeds', 'pooled') + tuple(
      f'block{k}_{t}' for k in range(12) for t in ('cls', 'mean')
    )
  elif a.layers:
    c.embed.layers = tuple(a.layers.split('+'))
  if a.bench:
    c.bench.suite = 'clip'
    c.embed.random_init = True
    c.bench.repeats = 5
  if a.cpu:
    c.embed.bench_batch_sizes = (8, 32)
    c.bench.repeats = 2
  return c
