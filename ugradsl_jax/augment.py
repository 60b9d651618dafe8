"""Random crop (zero pad 4) and horizontal flip, inside jitted code."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def crop_flip_params(key: jax.Array, n: int, pad: int = 4):
  """Per-example (dy, dx, flip) for a *global* batch of n.

  Drawn for the global batch and sliced per device, so the augmentation of an
  example does not depend on how the batch is split across devices.
  """
  k_off, k_flip = jax.random.split(key)
  off = jax.random.randint(k_off, (n, 2), 0, 2 * pad + 1)
  flip = jax.random.bernoulli(k_flip, 0.5, (n,))
  return off, flip


def crop_flip(images: jax.Array, off: jax.Array, flip: jax.Array,
              pad: int = 4) -> jax.Array:
  """images uint8 [B, H, W, C]; padding is black, as torchvision's RandomCrop."""
  b, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

  def one(img, o, f):
    img = jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c))
    return jnp.where(f, img[:, ::-1], img)

  return jax.vmap(one)(padded, off, flip)
