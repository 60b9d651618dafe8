"""Data order as a pure function of (seed, step): exact resume needs no saved iterator.

Each helper returns `batches(step) -> dict` holding `idx`, indices into the
device-resident arrays, and with augmentation the crop/flip draws for them
(augment.crop_flip_params), and the number of steps per epoch. Partial batches
are dropped (every step has the same shape, so one compilation serves all);
the next epoch's permutation reaches the dropped examples.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from .augment import crop_flip_params

Batches = Callable[[int], dict]


def _perm(indices: np.ndarray, seed: int, stream: int, k: int) -> np.ndarray:
  return np.random.default_rng([seed, stream, k]).permutation(indices)


def _cycled(indices, batch, seed, stream):
  """Slice [s*batch, (s+1)*batch) of an endless stream of fresh permutations."""
  n = len(indices)
  perm = functools.lru_cache(maxsize=4)(lambda k: _perm(indices, seed, stream, k))

  def take(step: int) -> np.ndarray:
    start = step * batch
    out, pos = [], start
    while pos < start + batch:
      k, off = divmod(pos, n)
      chunk = perm(k)[off: off + (start + batch - pos)]
      out.append(chunk)
      pos += len(chunk)
    return np.concatenate(out)
  return take


def _with_aug(idx, augment, seed, stream, step):
  """augment: False, True (crop + flip) or "flip" (flip only)."""
  out = {"idx": idx}
  if augment:
    out.update(crop_flip_params(np.random.default_rng([seed, stream, 0xA06, step]),
                                len(idx), crop=augment != "flip"))
  return out


def epochs(indices: np.ndarray, batch: int, seed: int, stream: int = 0,
           augment: bool | str = False):
  """One pass over `indices` per epoch, reshuffled each epoch."""
  indices = np.asarray(indices)
  steps = len(indices) // batch
  if steps == 0:
    raise ValueError(f"batch size {batch} is larger than the {len(indices)} "
                     "examples it draws from")
  perm = functools.lru_cache(maxsize=2)(lambda e: _perm(indices, seed, stream, e))

  def batches(step: int) -> dict:
    e, i = divmod(step, steps)
    return _with_aug(perm(e)[i * batch:(i + 1) * batch], augment, seed, stream, step)
  return batches, steps


def paired(primary: np.ndarray, secondary: np.ndarray, batch_primary: int,
           batch_secondary: int, seed: int, names=("forget", "retain"),
           stream: int = 0, augment: bool | str = False):
  """Epochs over `primary`; each batch paired with the next batch of a cycled
  `secondary` (UGradSL: primary = forget; UGradSL+: primary = retain)."""
  prim, steps = epochs(primary, batch_primary, seed, stream, augment)
  if len(secondary) < batch_secondary:
    raise ValueError(f"batch size {batch_secondary} is larger than the "
                     f"{len(secondary)} examples it draws from")
  sec = _cycled(np.asarray(secondary), batch_secondary, seed, stream + 1)

  def batches(step: int) -> dict:
    return {names[0]: prim(step),
            names[1]: _with_aug(sec(step), augment, seed, stream + 1, step)}
  return batches, steps
