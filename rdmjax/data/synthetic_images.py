"""Images of the synthetic subject and the V1-like filter model of them.

`render` draws images from latent factors (a category's shapes at a position,
size and tilt over a background grating); `filter_channels` is the filter
model that drives the early visual ROIs: quadrature Gabor energy at 4
orientations x 3 spatial frequencies, luminance and two colour-opponent maps,
on a coarse pooling grid. `rdmjax.data.synthetic` describes the whole model.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

WORK_RES = 64  # filter-model resolution (pixels)
POOL_RES = 16  # receptive-field pooling grid

CATEGORIES = ('face', 'body', 'house', 'text', 'fruit', 'car', 'tree', 'flower')
N_SEMANTIC = 4
# Per category: base colour, then shapes (kind, cx, cy, a, b, colour) in the
# object's frame ([-1, 1]^2, y down); colour None = the base colour.
_DARK, _BROWN = (0.12, 0.1, 0.1), (0.45, 0.28, 0.12)
SHAPES = {
  'face': (
    (0.93, 0.74, 0.6),
    (
      ('ellipse', 0, 0, 0.72, 0.95, None),
      ('ellipse', -0.3, -0.22, 0.12, 0.12, _DARK),
      ('ellipse', 0.3, -0.22, 0.12, 0.12, _DARK),
      ('rect', 0, 0.45, 0.32, 0.06, (0.6, 0.15, 0.15)),
    ),
  ),
  'body': (
    (0.2, 0.4, 0.85),
    (
      ('rect', 0, -0.3, 0.7, 0.07, None),
      ('rect', -0.15, 0.65, 0.09, 0.32, _DARK),
      ('rect', 0.15, 0.65, 0.09, 0.32, _DARK),
      ('rect', 0, 0.0, 0.3, 0.45, None),
      ('ellipse', 0, -0.72, 0.22, 0.22, (0.93, 0.74, 0.6)),
    ),
  ),
  'house': (
    (0.8, 0.35, 0.25),
    (
      ('rect', 0, 0.35, 0.7, 0.6, None),
      ('triangle', 0, -0.55, 0.9, 0.35, _BROWN),
      ('rect', 0, 0.7, 0.15, 0.25, _DARK),
      ('rect', -0.4, 0.25, 0.15, 0.13, (0.85, 0.9, 1.0)),
      ('rect', 0.4, 0.25, 0.15, 0.13, (0.85, 0.9, 1.0)),
    ),
  ),
  'text': (
    (0.95, 0.95, 0.88),
    (
      ('rect', 0, 0, 0.95, 0.7, None),
      *(
        ('rect', cx, cy, w, 0.07, _DARK)
        for cy in (-0.4, 0.0, 0.4)
        for cx, w in ((-0.5, 0.3), (0.3, 0.42))
      ),
    ),
  ),
  'fruit': (
    (0.85, 0.12, 0.1),
    (
      ('ellipse', 0, 0.1, 0.8, 0.8, None),
      ('rect', 0, -0.78, 0.05, 0.15, _BROWN),
      ('ellipse', 0.22, -0.8, 0.2, 0.08, (0.2, 0.6, 0.2)),
    ),
  ),
  'car': (
    (0.15, 0.3, 0.75),
    (
      ('rect', 0, -0.35, 0.5, 0.22, None),
      ('rect', 0, 0.05, 0.95, 0.28, None),
      ('ellipse', -0.55, 0.35, 0.2, 0.2, _DARK),
      ('ellipse', 0.55, 0.35, 0.2, 0.2, _DARK),
    ),
  ),
  'tree': (
    (0.15, 0.55, 0.2),
    (
      ('rect', 0, 0.7, 0.12, 0.28, _BROWN),
      ('triangle', 0, -0.2, 0.75, 0.72, None),
    ),
  ),
  'flower': (
    (0.95, 0.5, 0.75),
    (
      *(
        ('ellipse', cx, cy, a, b, None)
        for cx, cy, a, b in (
          (0, -0.5, 0.25, 0.45),
          (0, 0.5, 0.25, 0.45),
          (-0.5, 0, 0.45, 0.25),
          (0.5, 0, 0.45, 0.25),
        )
      ),
      ('ellipse', 0, 0, 0.28, 0.28, (0.98, 0.85, 0.15)),
    ),
  ),
}
LATENT_NAMES = (
  *(f'is_{c}' for c in CATEGORIES),
  'x',
  'y',
  'size',
  'tilt_cos',
  'tilt_sin',
  'grating_cos',
  'grating_sin',
  'grating_log_sf',
  'grating_contrast',
  *(f'semantic_{i}' for i in range(N_SEMANTIC)),
)


def draw_latents(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
  """Draws the factors of n images (the nuisances too)."""
  cat = rng.integers(0, len(CATEGORIES), n)
  proto = rng.normal(0, 1, (len(CATEGORIES), N_SEMANTIC))
  return dict(
    category=cat,
    x=rng.uniform(0.28, 0.72, n),
    y=rng.uniform(0.28, 0.72, n),
    size=rng.uniform(0.16, 0.3, n),
    tilt=rng.uniform(-np.pi / 5, np.pi / 5, n),
    grating_ori=rng.uniform(0, np.pi, n),
    grating_sf=np.exp(rng.uniform(np.log(2), np.log(12), n)),
    contrast=rng.uniform(0.1, 0.6, n),
    semantic=proto[cat] + 0.6 * rng.normal(0, 1, (n, N_SEMANTIC)),
    phase=rng.uniform(0, 2 * np.pi, n),
    tint=rng.uniform(0.55, 1.0, (n, 3)),
    colour_jitter=rng.normal(0, 0.06, (n, 3)),
  )


def latent_matrix(lat: dict[str, np.ndarray]) -> np.ndarray:
  """The latents the higher ROIs see.

  Returns:
    [n, len(LATENT_NAMES)] f32, in the order of `LATENT_NAMES`.
  """
  n_cat = len(CATEGORIES)
  cols = [
    np.eye(n_cat)[lat['category']],
    np.stack(
      [
        lat['x'],
        lat['y'],
        lat['size'],
        np.cos(2 * lat['tilt']),
        np.sin(2 * lat['tilt']),
        np.cos(2 * lat['grating_ori']),
        np.sin(2 * lat['grating_ori']),
        np.log(lat['grating_sf']),
        lat['contrast'],
      ],
      1,
    ),
    lat['semantic'],
  ]
  return np.concatenate(cols, 1).astype(np.float32)


def _shape_alpha(kind, u, v, cx, cy, a, b, px_per_unit):
  """Anti-aliased coverage of one shape: [..., h, w] in [0, 1]."""
  du, dv = u - cx, v - cy
  if kind == 'ellipse':
    d = (1 - np.sqrt((du / a) ** 2 + (dv / b) ** 2)) * min(a, b)
  elif kind == 'rect':
    d = np.minimum(a - np.abs(du), b - np.abs(dv))
  else:  # triangle: apex up at cy - b, base of half-width a at cy + b
    half = a * (dv + b) / (2 * b)
    d = np.minimum(np.minimum(b - dv, dv + b), (half - np.abs(du)) * 0.7)
  return np.clip(d * px_per_unit + 0.5, 0, 1)


def _shape_box(kind, cx, cy, a, b, px, x, y, s, cos_t, sin_t, size):
  """Pixel rows and columns [r0, r1) x [c0, c1) outside which the shape's
  `_shape_alpha` is exactly 0 (float64, two pixels of margin: the
  anti-aliasing ramp is half a pixel), or None when that is off the image.
  px: pixels per object unit; x, y, s, cos_t, sin_t: the object's frame."""
  e = 2 / px
  if kind == 'ellipse':  # alpha > 0 inside radius 1 + 0.5 / (px min(a, b))
    r = 1 + e / min(a, b)
    ha, hb = a * r, b * r
  elif kind == 'rect':
    ha, hb = a + e, b + e
  else:  # the base's half-width grows with dv, up to dv = b + 0.5 / px
    ha, hb = a * (1 + e / b) + e, b + e
  us, vs = (cx - ha, cx + ha), (cy - hb, cy + hb)
  # Image coordinates of the box's corners (the inverse of the object frame).
  xs = [x + s * (cos_t * u - sin_t * v) for u in us for v in vs]
  ys = [y + s * (sin_t * u + cos_t * v) for u in us for v in vs]
  # Pixel i's centre is (i + 0.5) / size.
  c0 = max(0, int(np.floor(min(xs) * size - 0.5)) - 1)
  c1 = min(size, int(np.ceil(max(xs) * size - 0.5)) + 2)
  r0 = max(0, int(np.floor(min(ys) * size - 0.5)) - 1)
  r1 = min(size, int(np.ceil(max(ys) * size - 0.5)) + 2)
  return (r0, r1, c0, c1) if r0 < r1 and c0 < c1 else None


def _col(idx, a):
  return a[idx].astype(np.float32)[:, None, None]


def render(
  lat: dict[str, np.ndarray], size: int, rng: np.random.Generator
) -> np.ndarray:
  """Renders images from their latents.

  Per category in groups of up to 16 (the noise is drawn in that order),
  an image at a time: each shape blended only on the pixels it can cover
  (its `_shape_box`: elsewhere its alpha is 0 and blending it changes no
  bit), channels first (numpy's loops then run along rows, not over 3
  channels); the pixels are those of blending every shape over the whole
  image, and the same whatever the batch (elementwise float32 operations).

  Returns:
    [n, size, size, 3] uint8 RGB.
  """
  n = lat['category'].shape[0]
  g = (np.arange(size, dtype=np.float32) + 0.5) / size
  yy, xx = g[:, None], g[None, :]
  out = np.empty((n, size, size, 3), np.uint8)
  noise = np.empty((size, size, 3), np.float32)
  for k, name in enumerate(CATEGORIES):
    base, shapes = SHAPES[name]
    members = np.flatnonzero(lat['category'] == k)
    for idx in np.array_split(members, 1 + members.size // 16):
      if not idx.size:
        continue
      # The group's per-image factors; each image's pixels one at a time.
      ori, sf = _col(idx, lat['grating_ori']), _col(idx, lat['grating_sf'])
      freq, cos_o, sin_o = 2 * np.pi * sf, np.cos(ori), np.sin(ori)
      phase, amp = _col(idx, lat['phase']), 0.45 * _col(idx, lat['contrast'])
      tint = lat['tint'][idx].astype(np.float32)
      # Object frame: centred at (x, y), rotated by tilt, unit = size.
      s, t = _col(idx, lat['size']), _col(idx, lat['tilt'])
      cos_t, sin_t = np.cos(t), np.sin(t)
      dx, dy = xx - _col(idx, lat['x']), yy - _col(idx, lat['y'])
      px = s * size
      own = np.clip(np.asarray(base) + lat['colour_jitter'][idx], 0, 1)
      for j, i in enumerate(idx):
        wave = np.sin(freq[j] * (xx * cos_o[j] + yy * sin_o[j]) + phase[j])
        img = (0.5 + amp[j] * wave) * tint[j, :, None, None]  # [3, H, W]
        frame = [float(f[j, 0, 0]) for f in (s, cos_t, sin_t)]
        for kind, cx, cy, a, b, c in shapes:
          box = _shape_box(
            kind, cx, cy, a, b, float(px[j, 0, 0]),
            lat['x'][i], lat['y'][i], *frame, size,
          )  # fmt: skip
          if box is None:
            continue
          r0, r1, c0, c1 = box
          dxj, dyj = dx[j, :, c0:c1], dy[j, r0:r1, :]
          u = (cos_t[j] * dxj + sin_t[j] * dyj) / s[j]
          v = (-sin_t[j] * dxj + cos_t[j] * dyj) / s[j]
          alpha = _shape_alpha(kind, u, v, cx, cy, a, b, px[j])
          rgb = own[j] if c is None else np.asarray(c)
          part = img[:, r0:r1, c0:c1]
          part += alpha * (rgb.astype(np.float32)[:, None, None] - part)
        rng.standard_normal(dtype=np.float32, out=noise)
        noise *= 0.015
        noise += img.transpose(1, 2, 0)
        np.clip(noise, 0, 1, out=noise)
        noise *= 255
        out[i] = np.rint(noise, out=noise)
  return out


def png_bytes(image: np.ndarray) -> bytes:
  """A PNG file of an image, its pixels stored uncompressed.

  The pixel noise leaves little to compress (zlib level 1 after PNG's Sub
  filter: 352 instead of 543 kB at 425 px) for much time: storing costs
  ~1 ms an image, against 13 ms for that and 29 ms for PIL's level 1.

  Args:
    image: [H, W, 3] uint8 RGB.
  """
  h, w, _ = image.shape
  rows = np.zeros((h, 1 + 3 * w), np.uint8)  # filter byte 0: none
  rows[:, 1:] = image.reshape(h, 3 * w)

  def chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', crc)

  return b''.join(
    (
      b'\x89PNG\r\n\x1a\n',
      chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)),
      chunk(b'IDAT', zlib.compress(rows, 0)),
      chunk(b'IEND', b''),
    )
  )


def filter_channels(images: np.ndarray) -> np.ndarray:
  """The V1-like filter model's channel maps, on a coarse pooling grid.

  Args:
    images: [n, H, W, 3] uint8.

  Returns:
    [n, 15, POOL_RES**2] f32: 12 Gabor energies (4 orientations x 3
    frequencies, quadrature pairs), luminance, red-green, blue-yellow.
  """
  # Resized a few images at a time: the float copy of a block of 32 images
  # of 425 px would take 69 MB (an image's sums do not depend on the batch).
  x = np.concatenate(
    [_work_res(images[i : i + 8]) for i in range(0, max(len(images), 1), 8)]
  )
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  lum = 0.299 * r + 0.587 * g + 0.114 * b
  spec = np.fft.fft2(lum - lum.mean((1, 2), keepdims=True))
  f = np.fft.fftfreq(WORK_RES, 1 / WORK_RES)
  fy, fx = f[:, None], f[None, :]
  maps = []
  for sf in (4.0, 8.0, 16.0):  # cycles per image
    for th in np.arange(4) * np.pi / 4:
      # A one-sided Gaussian in frequency: its complex response's modulus
      # is the energy of an even/odd (quadrature) Gabor pair.
      h = np.exp(
        -((fx - sf * np.cos(th)) ** 2 + (fy - sf * np.sin(th)) ** 2)
        / (2 * (0.4 * sf) ** 2)
      )
      maps.append(_pool(np.abs(np.fft.ifft2(spec * h.astype(np.float32)))))
  maps += [_pool(lum - 0.5), _pool(r - g), _pool(b - (r + g) / 2)]
  return np.stack(maps, 1)


def _work_res(images: np.ndarray) -> np.ndarray:
  """[n, H, W, 3] uint8 -> [n, WORK_RES, WORK_RES, 3] f32 in [0, 1]."""
  x = images.astype(np.float32)
  x /= 255
  k = x.shape[1] // WORK_RES
  if k * WORK_RES == x.shape[1]:
    return _block_mean(x, k)
  if x.shape[1] < WORK_RES:  # nearest-neighbour upsampling
    at = (np.arange(WORK_RES) + 0.5) * x.shape[1] // WORK_RES
    return x[:, at.astype(int)][:, :, at.astype(int)]
  # Area resize: a mean over a source pixel grid.
  edges = np.linspace(0, x.shape[1], WORK_RES + 1).astype(int)
  x = np.add.reduceat(np.add.reduceat(x, edges[:-1], 1), edges[:-1], 2)
  x /= np.diff(edges)[None, :, None, None] * np.diff(edges)[None, None, :, None]
  return x


def _pool(m: np.ndarray) -> np.ndarray:
  """[n, WORK_RES, WORK_RES] -> [n, POOL_RES**2], block means."""
  return _block_mean(m, WORK_RES // POOL_RES).reshape(m.shape[0], -1)


def _block_mean(x: np.ndarray, k: int) -> np.ndarray:
  """Means over k x k blocks of axes 1, 2 (one axis at a time: fast)."""
  n, h, w = x.shape[:3]
  x = x.reshape(n, h // k, k, w, *x.shape[3:]).sum(2)
  x = x.reshape(n, h // k, w // k, k, *x.shape[3:]).sum(3)
  return x / (k * k)
