"""Seeded protocol split: validation hold-out, forget set, retain set (index arrays)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np


class SplitError(ValueError):
  """A split spec that cannot be honoured; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class Split:
  """Sorted int64 indices into the full training array."""
  train: np.ndarray
  val: np.ndarray
  forget: np.ndarray
  retain: np.ndarray
  test: np.ndarray  # indices into the test array (a subset in CPU presets)

  def sizes(self) -> dict[str, int]:
    return {k: int(len(v)) for k, v in dataclasses.asdict(self).items()}


def make_split(train_labels: np.ndarray, num_test: int, *, seed: int,
               val_fraction: float = 0.1, forget_fraction: float | None = 0.1,
               forget_class: int | None = None,
               train_per_class: int | None = None,
               test_size: int | None = None, test_labels=None) -> Split:
  """Pure function of (labels, seed, spec): the same inputs give the same split.

  Order of draws: optional stratified subset -> per-class validation hold-out
  -> forget set (random `forget_fraction` of train, or all of `forget_class`).
  """
  labels = np.asarray(train_labels)
  classes = np.unique(labels)
  if forget_class is not None:
    if forget_class not in classes:
      raise SplitError(f"--forget_class {forget_class}: must be one of "
                       f"{classes.min()}..{classes.max()}")
  elif forget_fraction is None or not (0.0 < forget_fraction < 1.0):
    raise SplitError(f"--forget_fraction {forget_fraction}: must be in (0, 1)")
  if not (0.0 <= val_fraction < 1.0):
    raise SplitError(f"val_fraction {val_fraction}: must be in [0, 1)")
  rng = np.random.default_rng([seed, 0x5EED])

  pool = []
  for c in classes:
    idx = np.flatnonzero(labels == c)
    if train_per_class is not None:
      idx = np.sort(rng.permutation(idx)[:train_per_class])
    pool.append(idx)
  train, val = [], []
  for idx in pool:
    n_val = int(round(val_fraction * len(idx)))
    perm = rng.permutation(idx)
    val.append(perm[:n_val])
    train.append(perm[n_val:])
  train = np.sort(np.concatenate(train))
  val = np.sort(np.concatenate(val))

  if forget_class is not None:
    forget = train[labels[train] == forget_class]
  else:
    n_forget = int(math.floor(forget_fraction * len(train)))
    forget = np.sort(rng.choice(train, n_forget, replace=False)) if n_forget else train[:0]
  if len(forget) == 0:
    raise SplitError("the forget set is empty: raise --forget_fraction")
  if len(forget) == len(train):
    raise SplitError("the forget set is the whole training set: nothing to retain")
  retain = np.setdiff1d(train, forget, assume_unique=True)

  if test_size is None or test_size >= num_test:
    test = np.arange(num_test)
  else:
    # Stratified when labels are given, so a small test subset stays balanced.
    trng = np.random.default_rng([seed, 0x7E57])
    if test_labels is None:
      test = np.sort(trng.choice(num_test, test_size, replace=False))
    else:
      tl = np.asarray(test_labels)
      per = test_size // len(classes)
      test = np.sort(np.concatenate(
          [trng.permutation(np.flatnonzero(tl == c))[:per] for c in classes]))
  return Split(train=train.astype(np.int64), val=val.astype(np.int64),
               forget=forget.astype(np.int64), retain=retain.astype(np.int64),
               test=test.astype(np.int64))


def fingerprint(split: Split) -> str:
  """Short content hash, stored with checkpoints to catch a changed split."""
  import hashlib
  h = hashlib.sha256()
  for name in ("train", "val", "forget", "retain", "test"):
    h.update(name.encode())
    h.update(np.ascontiguousarray(getattr(split, name), np.int64).tobytes())
  return h.hexdigest()[:16]
