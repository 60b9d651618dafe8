"""The protocol split: sizes, determinism, disjointness (METHOD.md s.3)."""

import numpy as np
import pytest

from ugradsl_jax import split as S

LABELS = np.repeat(np.arange(10), 5000)  # CIFAR-10 training labels' shape


def test_protocol_sizes_and_disjointness():
  s = S.make_split(LABELS, 10000, seed=1)
  assert (len(s.train), len(s.val), len(s.forget), len(s.retain)) == (45000, 5000, 4500, 40500)
  assert len(s.test) == 10000
  assert np.bincount(LABELS[s.val]).tolist() == [500] * 10  # per-class 10%
  assert len(np.intersect1d(s.train, s.val)) == 0
  assert len(np.intersect1d(s.forget, s.retain)) == 0
  np.testing.assert_array_equal(np.union1d(s.forget, s.retain), s.train)
  np.testing.assert_array_equal(np.union1d(s.train, s.val), np.arange(50000))


def test_deterministic_and_seed_dependent():
  a = S.make_split(LABELS, 10000, seed=3)
  b = S.make_split(LABELS, 10000, seed=3)
  c = S.make_split(LABELS, 10000, seed=4)
  for f in ("train", "val", "forget", "retain", "test"):
    np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
  assert S.fingerprint(a) == S.fingerprint(b) != S.fingerprint(c)
  assert not np.array_equal(a.forget, c.forget)


def test_class_wise_forgetting():
  s = S.make_split(LABELS, 10000, seed=1, forget_class=3)
  assert len(s.forget) == 4500 and set(LABELS[s.forget]) == {3}
  assert 3 not in set(LABELS[s.retain])


def test_stratified_subsets():
  tl = np.repeat(np.arange(10), 1000)
  s = S.make_split(LABELS, 10000, seed=1, train_per_class=200, test_size=500, test_labels=tl)
  assert len(s.train) + len(s.val) == 2000 and len(s.val) == 200
  assert np.bincount(tl[s.test]).tolist() == [50] * 10


@pytest.mark.parametrize("kw,msg", [
    (dict(forget_fraction=0.0), "forget_fraction"),
    (dict(forget_fraction=-0.1), "forget_fraction"),
    (dict(forget_fraction=1.0), "forget_fraction"),
    (dict(forget_fraction=float("nan")), "forget_fraction"),
    (dict(forget_class=10), "forget_class"),
    (dict(forget_class=-1), "forget_class"),
    (dict(forget_fraction=1e-6), "forget set is empty"),
])
def test_bad_specs(kw, msg):
  with pytest.raises(S.SplitError, match=msg):
    S.make_split(LABELS, 10000, seed=1, **kw)
