"""MIA-Efficacy, scores and Avg. Gap on cases worked out by hand."""

import dataclasses

import numpy as np
import pytest

from conftest import tiny_resnet
from ugradsl_jax import metrics


def test_mia_separable_case():
  rng = np.random.default_rng(0)
  members = rng.uniform(0.95, 1.0, 300)      # retain: confident
  nonmembers = rng.uniform(0.1, 0.4, 300)    # test: not confident
  assert metrics.mia_efficacy(members, nonmembers, rng.uniform(0.1, 0.4, 50)) == 100.0
  assert metrics.mia_efficacy(members, nonmembers, rng.uniform(0.96, 1.0, 50)) == 0.0
  half = np.concatenate([rng.uniform(0.1, 0.4, 25), rng.uniform(0.96, 1.0, 25)])
  assert metrics.mia_efficacy(members, nonmembers, half) == 50.0


def test_mia_uses_first_n_test_retain_samples():
  """Members are the *first* N_test retain samples. Here those are confident and
  the rest are not: only with the first N is a 0.3-confidence forget sample
  clearly a non-member (with all retain samples, 0.3 is as often a member)."""
  retain = np.concatenate([np.full(100, 0.99), np.full(300, 0.3)])
  test = np.full(100, 0.3)
  assert metrics.mia_efficacy(retain, test, np.full(10, 0.3)) == 100.0
  assert metrics.mia_efficacy(retain, test, np.full(10, 0.99)) == 0.0


def test_scores_and_gap_by_hand():
  out = {"forget": (np.array([1, 0, 0, 0], bool), np.array([.9, .2, .2, .2])),
         "retain": (np.array([1, 1, 1, 0], bool), np.array([.9, .9, .9, .9])),
         "members": (np.array([1, 1, 1, 0], bool), np.array([.9, .9, .9, .9])),
         "val": (np.array([1, 0], bool), np.array([.2, .2])),
         "test": (np.array([1, 1, 0, 0, 0], bool), np.array([.2, .2, .2, .2, .2]))}
  s = metrics.scores(out, "test")
  assert s["UA"] == pytest.approx(75.0) and s["RA"] == pytest.approx(75.0)
  assert s["TA"] == pytest.approx(40.0)
  assert s["MIA"] == pytest.approx(75.0)  # three of four forget samples look like test
  assert metrics.scores(out, "val")["TA"] == pytest.approx(50.0)
  ref = {"UA": 70.0, "MIA": 80.0, "RA": 75.0, "TA": 44.0}
  assert metrics.avg_gap(s, ref) == pytest.approx((5 + 5 + 0 + 4) / 4)


def test_predict_split_across_devices_equals_one_device():
  """Second code path: the forward pass partitioned over 4 fake devices
  (batch 10 rounded up to 12, a ragged last batch) against one device."""
  import jax
  from ugradsl_jax import models, parallel, train
  model = tiny_resnet()
  variables = train.init_variables(model, 0)
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (37, 32, 32, 3), dtype=np.uint8)
  y = rng.integers(0, 10, 37)
  par = parallel.make("shard_map", num_devices=4)
  assert par.n == 4 and len(jax.devices()) >= 4
  c1, p1 = metrics.predict(model, variables, x, y, batch=10)
  c4, p4 = metrics.predict(model, variables, x, y, batch=10, par=par)
  np.testing.assert_array_equal(c4, c1)
  np.testing.assert_allclose(p4, p1, rtol=1e-5, atol=1e-7)
  # Negative control: rows out of order would be caught.
  _, p_rev = metrics.predict(model, variables, x[::-1], y[::-1], batch=10, par=par)
  assert np.max(np.abs(p_rev[::-1] - p1)) < 1e-5
  assert np.max(np.abs(p_rev - p1)) > 1e-3


def test_outputs_one_stream_equals_set_by_set():
  """outputs() runs the four sets as one stream; each slice must be that
  set's own predictions, in order."""
  from types import SimpleNamespace
  from ugradsl_jax import models, train
  model = tiny_resnet()
  variables = train.init_variables(model, 1)
  rng = np.random.default_rng(1)
  data = SimpleNamespace(
      train_x=rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8),
      train_y=rng.integers(0, 10, 50),
      test_x=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
      test_y=rng.integers(0, 10, 20))
  perm = rng.permutation(50)
  from ugradsl_jax.split import Split
  split = Split(train=perm[:40], forget=perm[:7], retain=perm[7:40], val=perm[40:],
                test=rng.permutation(20)[:13], mia_members=rng.permutation(perm[7:40]))
  out = metrics.outputs(model, variables, data, split, batch=8)
  # The members' outputs are their own predictions, in the members' order.
  c, p = metrics.predict(model, variables, data.train_x[split.mia_members],
                         data.train_y[split.mia_members], batch=8)
  np.testing.assert_array_equal(out["members"][0], c)
  np.testing.assert_allclose(out["members"][1], p, rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="mia_members"):
    metrics.outputs(model, variables, data, dataclasses.replace(
        split, mia_members=split.mia_members[:0]), batch=8)
  for name, xs, ys in (("forget", data.train_x, data.train_y),
                       ("retain", data.train_x, data.train_y),
                       ("val", data.train_x, data.train_y),
                       ("test", data.test_x, data.test_y)):
    idx = getattr(split, name)
    c, p = metrics.predict(model, variables, xs[idx], ys[idx], batch=8)
    np.testing.assert_array_equal(out[name][0], c)
    np.testing.assert_allclose(out[name][1], p, rtol=1e-5, atol=1e-7)
  # Negative control: a neighbouring set's confidences do not pass for these.
  assert not np.allclose(out["val"][1], out["retain"][1][:len(split.val)], atol=1e-3)


def test_mia_members_are_a_random_sample_of_sorted_data():
  """The loaders sort images by class, so `retain` is sorted by class: its
  first 2,000 images were ~1,620 airplanes and ~380 automobiles at the quick
  preset's sizes. The members are a seeded random order of the retain set:
  every class is represented about equally, whatever the data's order."""
  from ugradsl_jax import split as split_lib
  labels = np.repeat(np.arange(10), 5000)  # CIFAR-10 as the loaders store it
  s = split_lib.make_split(labels, 10000, seed=1, train_per_class=2000, test_size=2000,
                           test_strata=np.repeat(np.arange(10), 1000))
  n = len(s.test)
  counts = np.bincount(labels[s.mia_members[:n]], minlength=10)
  assert counts.min() > 140 and counts.max() < 260, counts
  # What "the first N retain samples" gave (the old members): two classes.
  assert np.count_nonzero(np.bincount(labels[s.retain[:n]], minlength=10)) <= 2
  assert sorted(s.mia_members) == list(s.retain)  # a reordering, nothing else
  again = split_lib.make_split(labels, 10000, seed=1, train_per_class=2000,
                               test_size=2000, test_strata=np.repeat(np.arange(10), 1000))
  np.testing.assert_array_equal(again.mia_members, s.mia_members)
  other = split_lib.make_split(labels, 10000, seed=2, train_per_class=2000,
                               test_size=2000, test_strata=np.repeat(np.arange(10), 1000))
  assert not np.array_equal(other.mia_members[:n], s.mia_members[:n])


def test_scores_take_members_in_their_random_order():
  """Retain confidences sorted high-then-low (as class-sorted data can be):
  the SVC must see the members' random sample, not the first N."""
  c = np.ones(400, bool)
  p_retain = np.concatenate([np.full(100, 0.99), np.full(300, 0.3)])
  order = np.random.default_rng(0).permutation(400)
  test = (np.ones(100, bool), np.concatenate([np.full(50, 0.3), np.full(50, 0.6)]))
  forget = (np.ones(10, bool), np.full(10, 0.3))
  out = {"forget": forget, "retain": (c, p_retain), "test": test,
         "members": (c[order], p_retain[order])}
  # ~75 of the 100 random members sit at 0.3 against 50 non-members there:
  # a 0.3 forget sample looks like a member.
  assert metrics.scores(out)["MIA"] == 0.0
  # Negative control: members = the first N retain rows (all at 0.99) make
  # 0.3 a non-member's confidence.
  out["members"] = (c, p_retain)
  assert metrics.scores(out)["MIA"] == 100.0


def test_avg_gap_by_hand():
  from ugradsl_jax import metrics
  m = {"UA": 10.0, "MIA": 20.0, "RA": 90.0, "TA": 80.0}
  ref = {"UA": 12.0, "MIA": 16.0, "RA": 91.0, "TA": 80.0}
  # |10 - 12| + |20 - 16| + |90 - 91| + |80 - 80| = 2 + 4 + 1 + 0 = 7, over 4 metrics
  assert metrics.avg_gap(m, ref) == 1.75
  assert metrics.avg_gap({**m, "UA": None}, ref) is None
