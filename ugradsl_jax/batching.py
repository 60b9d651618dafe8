"""Data order as a pure function of (seed, step): exact resume needs no saved iterator.

Each helper returns `batches(step) -> dict` holding `idx`, indices into the
device-resident arrays, `w`, each row's weight in the loss (1 for a real
example, 0 for padding), with augmentation the crop/flip draws for them
(augment.crop_flip_params), and the number of steps per epoch.

An epoch covers every example of its set, as the reference's DataLoaders
(drop_last=False) do: ceil(n / batch) steps, the last one padded to the
batch's shape with weight-0 repeats of its own rows, so that one compiled
step serves all and the loss is the mean over the real rows only. The
padding rows do pass through the network, so BatchNorm's statistics of a
padded batch count its repeated rows twice (a choice where the reference
has a smaller batch instead; the loss and its gradient are exact).
"""

from __future__ import annotations

import functools
import numpy as np

from .augment import crop_flip_params

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


def steps_per_epoch(n: int, batch: int) -> int:
  return -(-n // batch)


def padded(idx: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray]:
  """(idx repeated cyclically to `batch` rows, weights 1 on the real rows)."""
  w = np.zeros(batch, np.float32)
  w[:len(idx)] = 1.0
  return np.resize(idx, batch), w


def epochs(indices: np.ndarray, batch: int, seed: int, stream: int = 0,
           augment: bool | str = False):
  """One pass over every example of `indices` per epoch, reshuffled each
  epoch; the last batch of an epoch padded (weight 0) when it is partial."""
  indices = np.asarray(indices)
  if len(indices) == 0:
    raise ValueError("the set to iterate is empty")
  steps = steps_per_epoch(len(indices), batch)
  perm = functools.lru_cache(maxsize=2)(lambda e: _perm(indices, seed, stream, e))

  def batches(step: int) -> dict:
    e, i = divmod(step, steps)
    idx, w = padded(perm(e)[i * batch:(i + 1) * batch], batch)
    return {**_with_aug(idx, augment, seed, stream, step), "w": w}
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

  ones = np.ones(batch_secondary, np.float32)

  def batches(step: int) -> dict:
    return {names[0]: prim(step),
            names[1]: {**_with_aug(sec(step), augment, seed, stream + 1, step), "w": ones}}
  return batches, steps


def relabelled(forget: np.ndarray, retain: np.ndarray, batch: int, seed: int,
               stream: int, labels: np.ndarray, num_classes: int, loop: str,
               augment: bool | str = False):
  """RL's epochs: batches carry their labels ("y"), uniformly random classes
  (the true one may come up) on forget rows, the true labels on retain rows.

  loop "sequential": a pass over `forget`, labels drawn afresh for each
  batch, then a pass over `retain` (the reference's CIFAR-10 and SVHN loop);
  "union": one shuffled pass over both, the forget labels drawn afresh each
  epoch (its CIFAR-100 and Tiny-ImageNet loop)."""
  forget, retain = np.asarray(forget), np.asarray(retain)
  labels = np.asarray(labels, np.int32)
  if loop == "sequential":
    f_steps = steps_per_epoch(len(forget), batch)
    steps = f_steps + steps_per_epoch(len(retain), batch)
    perm_f = functools.lru_cache(maxsize=2)(lambda e: _perm(forget, seed, stream, e))
    perm_r = functools.lru_cache(maxsize=2)(lambda e: _perm(retain, seed, stream + 1, e))

    def batches(step: int) -> dict:
      e, i = divmod(step, steps)
      if i < f_steps:
        idx, w = padded(perm_f(e)[i * batch:(i + 1) * batch], batch)
        y = np.random.default_rng([seed, stream, 0x41, step]).integers(
            0, num_classes, batch).astype(np.int32)
      else:
        j = i - f_steps
        idx, w = padded(perm_r(e)[j * batch:(j + 1) * batch], batch)
        y = labels[idx]
      return {**_with_aug(idx, augment, seed, stream, step), "w": w, "y": y}
    return batches, steps
  if loop == "union":
    union = np.concatenate([forget, retain])
    steps = steps_per_epoch(len(union), batch)
    pos = np.arange(len(union))
    perm = functools.lru_cache(maxsize=2)(lambda e: _perm(pos, seed, stream, e))

    @functools.lru_cache(maxsize=2)
    def epoch_labels(e: int) -> np.ndarray:
      y = labels[union].copy()
      y[:len(forget)] = np.random.default_rng([seed, stream, 0x41, e]).integers(
          0, num_classes, len(forget))
      return y

    def batches(step: int) -> dict:
      e, i = divmod(step, steps)
      p, w = padded(perm(e)[i * batch:(i + 1) * batch], batch)
      return {**_with_aug(union[p], augment, seed, stream, step), "w": w,
              "y": epoch_labels(e)[p]}
    return batches, steps
  raise ValueError(f"RL loop {loop!r}: sequential or union")
