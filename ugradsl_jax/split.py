"""Seeded protocol split for the three forgetting scenarios (METHOD.md s.3, s.6).

  random    a seeded `forget_fraction` of the training set
  class     every training image of `forget_classes`; the test set (TA, MIA
            non-members) and the validation set leave those classes out, as
            the OPTML data loaders do, and `forgotten_test` holds them
  subclass  every training image of one fine class (CIFAR-100 trained on its
            coarse labels); the fine class stays in the test set, and
            `forgotten_test` names its test images

The split works on *strata*: the fine class of each image (the only labels of
CIFAR-10; CIFAR-100's 100 fine classes in the sub-class scenario). Which
labels the model trains on is the caller's (Dataset.coarse()).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np

from . import files

SCENARIOS = ("random", "class", "subclass")
_EMPTY = np.zeros(0, np.int64)


class SplitError(ValueError):
  """A split spec that cannot be honoured; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class Split:
  """Sorted int64 indices into the full training array (test: the test array)."""
  train: np.ndarray
  val: np.ndarray
  forget: np.ndarray
  retain: np.ndarray
  test: np.ndarray  # a subset in CPU presets; class-wise: without the forgotten classes
  # Held-out images of what was forgotten (class / subclass scenarios): their
  # accuracy is reported apart (Retrain: ~0 class-wise).
  # (default_factory: an ndarray default is refused by dataclasses.)
  forgotten_test: np.ndarray = dataclasses.field(default_factory=_EMPTY.copy)
  forgotten_val: np.ndarray = dataclasses.field(default_factory=_EMPTY.copy)
  # MIA-Efficacy's members: the retain set in a seeded random order (not
  # sorted); the SVC takes the first N_holdout. METHOD.md s.4: the reference
  # code's "first N_test retain samples" are an arbitrary sample because
  # CIFAR's training set is stored shuffled; here images are sorted by class,
  # so the first N of `retain` would be one or two classes. Uniform, not
  # stratified: the reference's sample is uniform too.
  mia_members: np.ndarray = dataclasses.field(default_factory=_EMPTY.copy)

  def sizes(self) -> dict[str, int]:
    out = {k: int(len(v)) for k, v in dataclasses.asdict(self).items()
           if k != "mia_members"}
    for k in ("forgotten_test", "forgotten_val"):
      if not out[k]:
        del out[k]  # random forgetting: the five sets only
    return out


def make_split(strata: np.ndarray, num_test: int, *, seed: int,
               scenario: str = "random", val_fraction: float = 0.1,
               forget_fraction: float | None = 0.1, forget_classes=(),
               train_per_class: int | None = None, test_size: int | None = None,
               test_strata=None, forget_indices=None) -> Split:
  """Pure function of (strata, seed, spec): the same inputs give the same split.

  Order of draws: optional stratified subset -> per-class validation hold-out
  -> forget set (random `forget_fraction` of train, or all of
  `forget_classes`) -> stratified test subset; the MIA members' order comes
  from a stream of its own.

  `forget_indices` (random scenario only): the forget set given, as indices
  into the training array, instead of drawn. Validation is drawn as usual,
  and any given index it holds moves from validation back to train, so that
  the indices of another run's split reproduce that split exactly.
  """
  labels = np.asarray(strata)
  classes = np.unique(labels)
  if scenario not in SCENARIOS:
    raise SplitError(f"--scenario {scenario!r}: unknown; known: {', '.join(SCENARIOS)}")
  forget_classes = tuple(int(c) for c in forget_classes)
  flag = "--forget_subclass" if scenario == "subclass" else "--forget_class"
  if forget_indices is not None and scenario != "random":
    raise SplitError(f"--forget_indices replaces the random draw; --scenario {scenario} "
                     "forgets whole classes")
  if scenario == "random" and forget_indices is not None:
    if forget_classes:
      raise SplitError("--forget_class needs --scenario class")
  elif scenario == "random":
    if forget_classes:
      raise SplitError("--forget_class needs --scenario class (random forgetting "
                       "draws a fraction)")
    if forget_fraction is None or not (0.0 < forget_fraction < 1.0):
      raise SplitError(f"--forget_fraction {forget_fraction}: must be in (0, 1)")
  else:
    if not forget_classes:
      raise SplitError(f"--scenario {scenario} needs {flag}")
    for c in forget_classes:
      if c not in classes:
        raise SplitError(f"{flag} {c}: must be one of {classes.min()}..{classes.max()}")
    if scenario == "subclass" and len(forget_classes) != 1:
      raise SplitError("--forget_subclass: give one fine class")
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

  if forget_indices is not None:
    forget = _given_forget(forget_indices, len(labels), train, val)
    val = np.setdiff1d(val, forget, assume_unique=True)
    train = np.union1d(train, forget)
  elif scenario == "random":
    n_forget = int(math.floor(forget_fraction * len(train)))
    forget = np.sort(rng.choice(train, n_forget, replace=False)) if n_forget else train[:0]
  else:
    forget = train[np.isin(labels[train], forget_classes)]
    for c in forget_classes:  # each one, not only all of them together
      if not np.any(labels[forget] == c):
        raise SplitError(f"the forget set is empty: {flag} {c} has no training images")
  if len(forget) == 0:
    raise SplitError("the forget set is empty: raise --forget_fraction"
                     if scenario == "random" else
                     f"the forget set is empty: {flag} has no training images")
  if len(forget) == len(train):
    raise SplitError("the forget set is the whole training set: nothing to retain")
  retain = np.setdiff1d(train, forget, assume_unique=True)

  if test_size is None or test_size >= num_test:
    test = np.arange(num_test)
  else:
    # Stratified when labels are given, so a small test subset stays balanced.
    trng = np.random.default_rng([seed, 0x7E57])
    if test_strata is None:
      test = np.sort(trng.choice(num_test, test_size, replace=False))
    else:
      tl = np.asarray(test_strata)
      per = test_size // len(classes)
      test = np.sort(np.concatenate(
          [trng.permutation(np.flatnonzero(tl == c))[:per] for c in classes]))

  forgotten_test = forgotten_val = _EMPTY
  if scenario != "random":
    if test_strata is None:
      raise SplitError(f"--scenario {scenario} needs the test set's labels")
    hit_test = np.isin(np.asarray(test_strata)[test], forget_classes)
    hit_val = np.isin(labels[val], forget_classes)
    forgotten_test, forgotten_val = test[hit_test], val[hit_val]
    if scenario == "class":  # what Retrain never saw leaves TA and MIA
      test, val = test[~hit_test], val[~hit_val]
  # Its own stream: drawing it leaves every other draw as it was.
  members = np.random.default_rng([seed, 0x3A1A]).permutation(retain)
  i64 = lambda a: np.asarray(a, np.int64)  # noqa: E731
  return Split(train=i64(train), val=i64(val), forget=i64(forget), retain=i64(retain),
               test=i64(test), forgotten_test=i64(forgotten_test),
               forgotten_val=i64(forgotten_val), mia_members=i64(members))


def _given_forget(indices, n: int, train: np.ndarray, val: np.ndarray) -> np.ndarray:
  idx = np.asarray(indices)
  if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
    raise SplitError(f"--forget_indices: expected a 1-D array of integers, got "
                     f"{idx.dtype} of shape {idx.shape}")
  if len(np.unique(idx)) != len(idx):
    raise SplitError("--forget_indices: the indices repeat")
  if len(idx) and (idx.min() < 0 or idx.max() >= n):
    raise SplitError(f"--forget_indices: indices must be in [0, {n}) (the training set "
                     f"holds {n}); got {idx.min()}..{idx.max()}")
  pool = np.union1d(train, val)
  outside = np.setdiff1d(idx, pool)
  if len(outside):
    raise SplitError(f"--forget_indices: {len(outside)} of them (e.g. {outside[0]}) are "
                     "outside this preset's training subset; use a preset without one or "
                     "indices from its split.npz")
  return np.sort(idx.astype(np.int64))


def save(split: Split, path) -> None:
  """split.npz: every index array of the split, by name."""
  files.write_npz(path, {k: np.asarray(v, np.int64)
                         for k, v in dataclasses.asdict(split).items()})


def fingerprint(split: Split) -> str:
  """Short content hash, stored with checkpoints to catch a changed split."""
  h = hashlib.sha256()
  for name in ("train", "val", "forget", "retain", "test"):
    h.update(name.encode())
    h.update(np.ascontiguousarray(getattr(split, name), np.int64).tobytes())
  for name in ("forgotten_test", "forgotten_val"):  # absent in random forgetting
    if len(getattr(split, name)):
      h.update(name.encode())
      h.update(np.ascontiguousarray(getattr(split, name), np.int64).tobytes())
  return h.hexdigest()[:16]
