"""The tests' CLIP tower: 16 patches of 8x8 on 32 px images, width 32."""

from pathlib import Path

TINY = dict(
  hidden_size=32,
  intermediate_size=64,
  num_hidden_layers=2,
  num_attention_heads=4,
  image_size=32,
  patch_size=8,
  projection_dim=16,
)


def write_config(folder: Path) -> str:
  """Writes the tiny tower's config.json into folder; returns the folder."""
  import transformers

  transformers.CLIPVisionConfig(**TINY).save_pretrained(folder)
  return str(folder)
