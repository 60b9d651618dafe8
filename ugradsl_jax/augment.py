"""Random crop (zero pad 4) and horizontal flip, applied inside jitted code.

The random draws are made on the host with numpy, per *global* batch, and
travel with the batch indices (a few bytes a step). So the augmentation of an
example depends neither on how the batch is split across devices nor on XLA's
RNG, resume needs no saved key, and no step pays threefry's compile time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def crop_flip_params(rng: np.random.Generator, n: int, pad: int = 4,
                     crop: bool = True) -> dict:
  """Per-example crop offsets in [0, 2*pad] and flip bits. crop=False gives
  the centre offset (pad, pad), so crop_flip only flips: one jitted step
  serves both kinds of augmentation."""
  if not crop:
    return {"off": np.full((n, 2), pad, np.int32), "flip": rng.random(n) < 0.5}
  return {"off": rng.integers(0, 2 * pad + 1, (n, 2)).astype(np.int32),
          "flip": rng.random(n) < 0.5}


def crop_flip(images: jax.Array, off: jax.Array, flip: jax.Array,
              pad: int = 4) -> jax.Array:
  """images uint8 [B, H, W, C]; padding is black, as torchvision's RandomCrop."""
  b, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

  def one(img, o, f):
    img = jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c))
    return jnp.where(f, img[:, ::-1], img)

  return jax.vmap(one)(padded, off, flip)
