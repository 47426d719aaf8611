"""CLIP tower vs transformers' PyTorch CLIPVisionModelWithProjection.

The reference model is initialised randomly (and every weight perturbed, so
LayerNorm scales and biases are not the trivial 1 and 0); its state dict is
converted into the Flax tower, so the conversion is tested with the forward.
"""

import json

import numpy as np
import pytest
import tiny_clip

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

from rdmjax.embed import clip_vision as cv  # noqa: E402
from rdmjax.embed import clip_weights as cw  # noqa: E402
from rdmjax.errors import InputError  # noqa: E402

pytestmark = pytest.mark.torch

ALL_LAYERS = (
  'image_embeds',
  'pooled',
  'embeddings_cls',
  'embeddings_mean',
  'block0_cls',
  'block0_mean',
  'block1_cls',
  'block1_mean',
)


def _hf_config(**kw):
  return transformers.CLIPVisionConfig(**dict(tiny_clip.TINY, **kw))


def _torch_model(hf_config, seed=0):
  torch.manual_seed(seed)
  m = transformers.CLIPVisionModelWithProjection(hf_config).eval()
  with torch.no_grad():
    for p in m.parameters():
      p.add_(0.1 * torch.randn_like(p))
  return m


def _reference(m, pixels_nchw):
  """Every selectable layer, from HF outputs: {name: [batch, d]}."""
  with torch.no_grad():
    o = m(pixel_values=torch.from_numpy(pixels_nchw), output_hidden_states=True)
    pooled = m.vision_model.post_layernorm(o.last_hidden_state[:, 0])
  ref = {'image_embeds': o.image_embeds, 'pooled': pooled}
  for i, h in enumerate(o.hidden_states):
    name = 'embeddings' if i == 0 else f'block{i - 1}'
    ref[f'{name}_cls'] = h[:, 0]
    ref[f'{name}_mean'] = h[:, 1:].mean(1)  # patch tokens, as THINGSvision
  return {k: v.numpy() for k, v in ref.items()}


def _pixels(n=5, size=32, seed=0):
  x = np.random.default_rng(seed).normal(size=(n, 3, size, size))
  return x.astype(np.float32)


def _max_err(tower, m, x):
  out = tower(x.transpose(0, 2, 3, 1), ALL_LAYERS)
  ref = _reference(m, x)
  return {k: float(np.abs(np.asarray(out[k]) - ref[k]).max()) for k in ref}


@pytest.mark.parametrize('act', ['quick_gelu', 'gelu'])
def test_every_layer_matches_transformers(act):
  hf = _hf_config(hidden_act=act)
  m = _torch_model(hf)
  tower = cw.from_state_dict(
    {k: v.numpy() for k, v in m.state_dict().items()}, hf
  )
  err = _max_err(tower, m, _pixels())
  assert set(err) == set(ALL_LAYERS)
  assert max(err.values()) < 1e-4, err


def test_output_shapes_and_dims():
  hf = _hf_config()
  tower = cv.random_tower(hf, seed=1)
  out = tower(np.zeros((3, 32, 32, 3), np.float32), ('image_embeds', 'pooled'))
  assert out['image_embeds'].shape == (3, 16)
  assert out['pooled'].shape == (3, 32)
  assert out['image_embeds'].dtype == np.float32


def test_only_requested_layers_and_order():
  tower = cv.random_tower(_hf_config())
  out = tower(np.zeros((2, 32, 32, 3), np.float32), ('block0_mean', 'pooled'))
  assert list(out) == ['block0_mean', 'pooled']


@pytest.mark.parametrize(
  'bad', ['block2_cls', 'block_cls', 'pooler', 'block0_max', 'image_embed']
)
def test_unknown_layer_is_input_error(bad):
  with pytest.raises(InputError, match='unknown'):
    cv.parse_layers((bad,), num_layers=2)


def test_wrong_image_size_is_input_error():
  tower = cv.random_tower(_hf_config())
  with pytest.raises(InputError, match='NHWC'):
    tower(np.zeros((2, 3, 32, 32), np.float32))


def test_load_vision_checkpoint_from_dir_safetensors(tmp_path):
  hf = _hf_config()
  m = _torch_model(hf, seed=3)
  m.save_pretrained(tmp_path)
  assert (tmp_path / 'model.safetensors').is_file()
  tower, cfg = cw.load_pretrained(str(tmp_path))
  assert cfg.projection_dim == 16
  assert max(_max_err(tower, m, _pixels(seed=1)).values()) < 1e-4


def test_load_clipmodel_checkpoint_pytorch_bin(tmp_path):
  """A full CLIPModel (text tower too) saved as pytorch_model.bin."""
  text = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    vocab_size=50,
    max_position_embeddings=8,
  )
  cfg = transformers.CLIPConfig(
    text_config=text, vision_config=tiny_clip.TINY, projection_dim=12
  )
  torch.manual_seed(4)
  full = transformers.CLIPModel(cfg).eval()
  cfg.save_pretrained(tmp_path)
  torch.save(full.state_dict(), tmp_path / 'pytorch_model.bin')
  tower, vcfg = cw.load_pretrained(str(tmp_path))
  assert vcfg.projection_dim == 12
  x = _pixels(seed=2)
  with torch.no_grad():
    ref = full.get_image_features(pixel_values=torch.from_numpy(x))
  ref = getattr(ref, 'pooler_output', ref).numpy()
  out = tower(x.transpose(0, 2, 3, 1))['image_embeds']
  np.testing.assert_allclose(np.asarray(out), ref, atol=1e-4, rtol=0)


def test_hub_cache_is_read_offline(tmp_path):
  """A snapshot laid out as huggingface_hub caches it loads with no network."""
  hf = _hf_config()
  m = _torch_model(hf, seed=5)
  repo = tmp_path / 'models--someorg--tiny-clip'
  snap = repo / 'snapshots' / ('a' * 40)
  m.save_pretrained(snap)
  (repo / 'refs').mkdir(parents=True)
  (repo / 'refs' / 'main').write_text('a' * 40)
  folder = cw.resolve('someorg/tiny-clip', cache_dir=str(tmp_path))
  assert folder == snap
  assert json.loads((folder / 'config.json').read_text())['model_type'] == (
    'clip_vision_model'
  )


def test_missing_weights_offline_is_one_line_error(tmp_path):
  with pytest.raises(InputError) as e:
    cw.load_pretrained('openai/clip-vit-base-patch32', cache_dir=str(tmp_path))
  msg = str(e.value)
  assert '\n' not in msg
  assert 'hf download openai/clip-vit-base-patch32' in msg
  assert '--config.embed.model=' in msg


def test_checkpoint_without_projection_is_input_error(tmp_path):
  hf = _hf_config()
  m = _torch_model(hf)
  sd = {
    k: v.numpy()
    for k, v in m.state_dict().items()
    if not k.startswith('visual_projection')
  }
  with pytest.raises(InputError, match='visual_projection'):
    cw.from_state_dict(sd, hf)


def test_config_weight_mismatch_is_input_error():
  m = _torch_model(_hf_config())
  sd = {k: v.numpy() for k, v in m.state_dict().items()}
  with pytest.raises(InputError, match='does not match'):
    cw.from_state_dict(sd, _hf_config(intermediate_size=48))


@pytest.mark.slow
def test_vit_b32_size_matches_transformers():
  """The real ViT-B/32 shape (12 blocks, 768 wide, 224 px), random weights."""
  hf = transformers.CLIPVisionConfig(
    **cv.ARCHITECTURES['openai/clip-vit-base-patch32']
  )
  torch.manual_seed(0)
  m = transformers.CLIPVisionModelWithProjection(hf).eval()
  with torch.no_grad():
    for p in m.parameters():
      p.add_(0.02 * torch.randn_like(p))
  tower = cw.from_state_dict(
    {k: v.numpy() for k, v in m.state_dict().items()}, hf
  )
  x = _pixels(n=2, size=224)
  layers = ('image_embeds', 'pooled', 'block5_mean', 'block11_cls')
  out = tower(x.transpose(0, 2, 3, 1), layers)
  ref = _reference(m, x)
  assert out['image_embeds'].shape == (2, 512)
  for k in layers:
    np.testing.assert_allclose(np.asarray(out[k]), ref[k], atol=1e-4, rtol=0)


@pytest.mark.bench
def test_bench_smoke_tiny_tower(tmp_path):
  import ml_collections

  from rdmjax.bench import clip as bench_clip

  embed = dict(
    model=tiny_clip.write_config(tmp_path),
    dtype='float32',
    precision='highest',
    random_init=True,
    layers=('image_embeds',),
    batch_size=8,
    bench_batch_sizes=(8,),
    bench_dtypes=('float32',),
  )
  c = ml_collections.ConfigDict(
    dict(embed=embed, bench=dict(repeats=1), mesh=(('data', -1),))
  )
  rows = list(bench_clip.run(c))
  ours = [r for r in rows if r['impl'] == 'rdmjax']
  assert len(ours) == 1 and ours[0]['finite'] and ours[0]['batch'] == 8
  assert ours[0]['images_per_sec'] > 0
  assert any(r['impl'].startswith('transformers-torch') for r in rows)
  assert 'vs_torch' in ours[0]


def test_flops_per_image_counts_vit_b32():
  """ViT-B/32 at 224 px is 4.4 GMACs (the figure CLIP papers quote)."""
  cfg = cv.tower_config(
    transformers.CLIPVisionConfig(
      **cv.ARCHITECTURES['openai/clip-vit-base-patch32']
    )
  )
  from rdmjax.bench import clip as bench_clip

  assert 4.3e9 < bench_clip.flops_per_image(cfg) / 2 < 4.5e9
