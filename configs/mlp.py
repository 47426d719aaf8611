"""The symmetric MLP over image embeddings (any embedding cache).

  rdmjax --config=configs/mlp.py --workdir=DIR --mode=train
  rdmjax --config=configs/mlp.py:tiny --workdir=DIR
  rdmjax --config=configs/mlp.py:emb=clip --workdir=DIR \
    --config.data.root=/path/to/algonauts_2023_challenge_data

`emb` is 'synthetic' (the synthetic subject's embeddings), 'clip'
(WORKDIR/embeddings/clip.npz from --mode=embed) or a cache path.
"""

from rdmjax import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, tiny=False, emb='synthetic')
  c = config_lib.load_sibling(
    __file__, 'default', f'tiny={arg.tiny},emb={arg.emb}'
  )
  c.model.name = 'mlp'
  return c
