"""The protocol split: sizes, determinism, disjointness (METHOD.md s.3, s.6)."""

import numpy as np
import pytest

from ugradsl_jax import split as S

LABELS = np.repeat(np.arange(10), 5000)  # CIFAR-10 training labels' shape
TEST_LABELS = np.repeat(np.arange(10), 1000)
FIELDS = ("train", "val", "forget", "retain", "test", "forgotten_test", "forgotten_val")


def test_protocol_sizes_and_disjointness():
  s = S.make_split(LABELS, 10000, seed=1)
  assert (len(s.train), len(s.val), len(s.forget), len(s.retain)) == (45000, 5000, 4500, 40500)
  assert len(s.test) == 10000
  assert np.bincount(LABELS[s.val]).tolist() == [500] * 10  # per-class 10%
  assert len(np.intersect1d(s.train, s.val)) == 0
  assert len(np.intersect1d(s.forget, s.retain)) == 0
  np.testing.assert_array_equal(np.union1d(s.forget, s.retain), s.train)
  np.testing.assert_array_equal(np.union1d(s.train, s.val), np.arange(50000))
  assert s.sizes() == dict(train=45000, val=5000, forget=4500, retain=40500, test=10000)


def test_deterministic_and_seed_dependent():
  a = S.make_split(LABELS, 10000, seed=3)
  b = S.make_split(LABELS, 10000, seed=3)
  c = S.make_split(LABELS, 10000, seed=4)
  for f in ("train", "val", "forget", "retain", "test"):
    np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
  assert S.fingerprint(a) == S.fingerprint(b) != S.fingerprint(c)
  assert not np.array_equal(a.forget, c.forget)


def test_class_wise_forgetting():
  s = S.make_split(LABELS, 10000, seed=1, scenario="class", forget_classes=(3,),
                   test_strata=TEST_LABELS)
  assert len(s.forget) == 4500 and set(LABELS[s.forget]) == {3}
  assert 3 not in set(LABELS[s.retain])


def test_stratified_subsets():
  s = S.make_split(LABELS, 10000, seed=1, train_per_class=200, test_size=500,
                   test_strata=TEST_LABELS)
  assert len(s.train) + len(s.val) == 2000 and len(s.val) == 200
  assert np.bincount(TEST_LABELS[s.test]).tolist() == [50] * 10


# Random forgetting: the draw order from before the scenarios existed. These
# values were computed with the pre-scenario make_split (git HEAD before this
# change: make_split(train_labels, ..., test_labels=...)); the current code
# must reproduce them, so old checkpoints' split fingerprints still match.
SMALL = np.repeat(np.arange(10), 50)
SMALL_TEST = np.repeat(np.arange(10), 10)


def test_random_split_is_pinned_to_the_old_draw_order():
  s = S.make_split(SMALL, 100, seed=1, test_size=50, test_strata=SMALL_TEST)
  assert S.fingerprint(s) == "46675aad3a2870f4"
  assert s.forget.tolist()[:12] == [6, 11, 24, 44, 71, 98, 105, 111, 128, 156, 161, 182]
  assert s.val.tolist()[:10] == [20, 34, 38, 43, 46, 51, 67, 86, 88, 89]
  assert s.test.tolist()[:10] == [0, 1, 4, 7, 9, 12, 14, 15, 17, 19]
  assert s.sizes() == dict(train=450, val=50, forget=45, retain=405, test=50)
  assert len(s.forgotten_test) == len(s.forgotten_val) == 0
  assert s.forgotten_test.dtype == np.int64
  # Subset of train, unstratified test subset, another fraction.
  t = S.make_split(SMALL, 100, seed=7, train_per_class=20, test_size=30, forget_fraction=0.2)
  assert S.fingerprint(t) == "17baed83176265e5"
  assert t.forget.tolist()[:8] == [17, 35, 41, 42, 53, 61, 91, 93]
  assert t.test.tolist()[:8] == [1, 5, 10, 11, 12, 14, 17, 18]


def _pool_of(strata, cls, s):
  """All sampled images of classes `cls` (train + val, before any removal)."""
  pool = np.union1d(np.union1d(s.train, s.val), s.forgotten_val)
  return pool[np.isin(strata[pool], cls)]


@pytest.mark.parametrize("classes", [(3,), (3, 5)])
def test_class_scenario(classes):
  s = S.make_split(LABELS, 10000, seed=2, scenario="class", forget_classes=classes,
                   train_per_class=2000, test_size=2000, test_strata=TEST_LABELS)
  k = len(classes)
  # Hand-built expectation: the training images of those classes, all of them.
  expect_forget = s.train[np.isin(LABELS[s.train], classes)]
  np.testing.assert_array_equal(s.forget, expect_forget)
  assert len(s.forget) == 1800 * k  # 2000 per class, 10% held out for validation
  assert np.bincount(LABELS[s.forget], minlength=10)[list(classes)].tolist() == [1800] * k
  assert not np.isin(LABELS[s.retain], classes).any()
  np.testing.assert_array_equal(np.union1d(s.forget, s.retain), s.train)
  # Test and val leave the forgotten classes out; they go to forgotten_*.
  assert not np.isin(TEST_LABELS[s.test], classes).any()
  assert not np.isin(LABELS[s.val], classes).any()
  assert len(s.test) == 2000 - 200 * k and len(s.forgotten_test) == 200 * k
  assert set(TEST_LABELS[s.forgotten_test]) == set(classes)
  assert np.bincount(TEST_LABELS[s.test], minlength=10).tolist() == \
      [0 if c in classes else 200 for c in range(10)]
  assert set(LABELS[s.forgotten_val]) == set(classes) and len(s.forgotten_val) == 200 * k
  # forgotten_test is exactly the stratified subset's images of those classes:
  # the same seed's random-scenario split draws the same test subset.
  r = S.make_split(LABELS, 10000, seed=2, train_per_class=2000, test_size=2000,
                   test_strata=TEST_LABELS)
  np.testing.assert_array_equal(s.forgotten_test, r.test[np.isin(TEST_LABELS[r.test], classes)])
  np.testing.assert_array_equal(s.test, r.test[~np.isin(TEST_LABELS[r.test], classes)])
  np.testing.assert_array_equal(s.train, r.train)  # the forget set draws nothing
  np.testing.assert_array_equal(s.val, r.val[~np.isin(LABELS[r.val], classes)])
  np.testing.assert_array_equal(s.forgotten_val, r.val[np.isin(LABELS[r.val], classes)])
  np.testing.assert_array_equal(_pool_of(LABELS, classes, s), np.union1d(s.forget, s.forgotten_val))
  assert s.sizes() == dict(train=18000, val=2000 - 200 * k, forget=1800 * k,
                           retain=18000 - 1800 * k, test=2000 - 200 * k,
                           forgotten_test=200 * k, forgotten_val=200 * k)


def test_class_scenario_full_test_set():
  s = S.make_split(LABELS, 10000, seed=1, scenario="class", forget_classes=(3,),
                   test_strata=TEST_LABELS)
  np.testing.assert_array_equal(s.forgotten_test, np.arange(3000, 4000))
  np.testing.assert_array_equal(s.test, np.setdiff1d(np.arange(10000), np.arange(3000, 4000)))
  assert len(s.val) == 4500 and len(s.forgotten_val) == 500


FINE = np.repeat(np.arange(100), 500)   # CIFAR-100's fine labels' shape
FINE_TEST = np.repeat(np.arange(100), 100)


def test_subclass_scenario():
  s = S.make_split(FINE, 10000, seed=1, scenario="subclass", forget_classes=(81,),
                   test_strata=FINE_TEST)
  expect = s.train[FINE[s.train] == 81]
  np.testing.assert_array_equal(s.forget, expect)
  assert len(s.forget) == 450 and set(FINE[s.forget]) == {81}
  assert 81 not in set(FINE[s.retain])
  # The fine class stays in test and val; forgotten_* name its images there.
  np.testing.assert_array_equal(s.test, np.arange(10000))
  np.testing.assert_array_equal(s.forgotten_test, np.arange(8100, 8200))
  assert len(s.val) == 5000 and np.bincount(FINE[s.val]).tolist() == [50] * 100
  np.testing.assert_array_equal(s.forgotten_val, s.val[FINE[s.val] == 81])
  assert len(s.forgotten_val) == 50
  assert s.sizes() == dict(train=45000, val=5000, forget=450, retain=44550, test=10000,
                           forgotten_test=100, forgotten_val=50)
  # With a stratified test subset: 10 per fine class, 81's among them.
  t = S.make_split(FINE, 10000, seed=1, scenario="subclass", forget_classes=(81,),
                   test_size=1000, test_strata=FINE_TEST)
  assert len(t.test) == 1000 and np.bincount(FINE_TEST[t.test]).tolist() == [10] * 100
  np.testing.assert_array_equal(t.forgotten_test, t.test[FINE_TEST[t.test] == 81])
  assert len(t.forgotten_test) == 10


SCENARIO_KW = [
    dict(scenario="random"),
    dict(scenario="class", forget_classes=(3,)),
    dict(scenario="class", forget_classes=(3, 5)),
    dict(scenario="subclass", forget_classes=(7,)),
]


@pytest.mark.parametrize("kw", SCENARIO_KW)
def test_every_scenario_deterministic_and_disjoint(kw):
  args = (SMALL, 100)
  common = dict(test_size=50, test_strata=SMALL_TEST, **kw)
  a = S.make_split(*args, seed=5, **common)
  b = S.make_split(*args, seed=5, **common)
  c = S.make_split(*args, seed=6, **common)
  for f in FIELDS:
    np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert getattr(a, f).dtype == np.int64
    assert np.all(np.diff(getattr(a, f)) > 0)  # sorted, no duplicates
  assert S.fingerprint(a) == S.fingerprint(b) != S.fingerprint(c)
  assert len(np.intersect1d(a.forget, a.retain)) == 0
  np.testing.assert_array_equal(np.union1d(a.forget, a.retain), a.train)
  pairs = [("train", "val"), ("train", "forgotten_val")]
  if kw["scenario"] == "class":  # sub-class: forgotten_* lie inside val / test
    pairs += [("val", "forgotten_val"), ("test", "forgotten_test")]
  for x, y in pairs:
    assert len(np.intersect1d(getattr(a, x), getattr(a, y))) == 0, (x, y)
  # Every training image is in exactly one of train / val / forgotten_val
  # (class-wise) or train / val (others).
  everything = np.concatenate([a.train, a.val] +
                              ([a.forgotten_val] if kw["scenario"] == "class" else []))
  np.testing.assert_array_equal(np.sort(everything), np.arange(500))
  if kw["scenario"] != "class":
    assert np.isin(a.forgotten_val, a.val).all() and np.isin(a.forgotten_test, a.test).all()


@pytest.mark.parametrize("kw,msg", [
    (dict(forget_fraction=0.0), "forget_fraction"),
    (dict(forget_fraction=-0.1), "forget_fraction"),
    (dict(forget_fraction=1.0), "forget_fraction"),
    (dict(forget_fraction=float("nan")), "forget_fraction"),
    (dict(forget_fraction=1e-6), "forget set is empty"),
    (dict(scenario="class", forget_classes=(10,)), "--forget_class 10: must be one of 0..9"),
    (dict(scenario="class", forget_classes=(-1,)), "--forget_class -1"),
    (dict(scenario="class", forget_classes=(2, 11)), "--forget_class 11"),
    (dict(scenario="subclass", forget_classes=(10,)), "--forget_subclass 10"),
    (dict(scenario="subclass", forget_classes=(1, 2)), "--forget_subclass: give one"),
    (dict(scenario="class"), "--scenario class needs --forget_class"),
    (dict(scenario="subclass"), "--scenario subclass needs --forget_subclass"),
    (dict(scenario="classwise", forget_classes=(3,)), "--scenario 'classwise': unknown"),
    (dict(scenario="class", forget_classes=tuple(range(10))), "nothing to retain"),
    (dict(val_fraction=1.0), "val_fraction"),
])
def test_bad_specs(kw, msg):
  with pytest.raises(S.SplitError, match=msg):
    S.make_split(LABELS, 10000, seed=1, test_strata=TEST_LABELS, **kw)


def test_class_scenario_needs_test_labels():
  with pytest.raises(S.SplitError, match="needs the test set's labels"):
    S.make_split(LABELS, 10000, seed=1, scenario="class", forget_classes=(3,))


@pytest.mark.parametrize("classes", [(9,), (3, 9)])
def test_a_class_with_no_training_images(classes):
  # Class 9 has one image, and validation takes it (round(0.6 * 1) = 1).
  strata = np.concatenate([np.repeat(np.arange(9), 10), [9]])
  with pytest.raises(S.SplitError, match="--forget_class 9 has no training images"):
    S.make_split(strata, 91, seed=1, scenario="class", forget_classes=classes,
                 val_fraction=0.6, test_strata=strata)
