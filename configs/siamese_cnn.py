"""The reference study's Siamese CNN on V1, 1 - Pearson targets.

  rdmjax --config=configs/siamese_cnn.py --workdir=DIR --mode=train
  rdmjax --config=configs/siamese_cnn.py:output=sigmoid2 --workdir=DIR
  rdmjax --config=configs/siamese_cnn.py:tiny --workdir=DIR

Grayscale images min-max normalised, loss alpha * (1 - r) + (1 - alpha) *
MSE as in the study; `output` is 'linear' or 'sigmoid2' (2 * sigmoid).
"""

from rdmjax import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, tiny=False, output='linear')
  c = config_lib.load_sibling(__file__, 'default', f'tiny={arg.tiny}')
  c.model.name = 'siamese_cnn'
  c.model.output = arg.output
  c.data.roi = 'V1'
  c.pairs.metric = 'correlation'
  c.train.loss = 'pearson_mse'
  c.train.alpha = 0.5
  c.train.run_leaked = False
  # The study's input: 128 x 128 grayscale (the default's image_size).
  c.pairs.block_size = 64
  c.train.steps = 300
  if arg.tiny:
    c.model.image_size = 32
    c.pairs.block_size = 32
    c.train.steps = 30
  return c
