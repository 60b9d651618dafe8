"""MIA-Efficacy, scores and Avg. Gap on cases worked out by hand."""

import numpy as np
import pytest

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
         "val": (np.array([1, 0], bool), np.array([.2, .2])),
         "test": (np.array([1, 1, 0, 0, 0], bool), np.array([.2, .2, .2, .2, .2]))}
  s = metrics.scores(out, "test")
  assert s["UA"] == pytest.approx(75.0) and s["RA"] == pytest.approx(75.0)
  assert s["TA"] == pytest.approx(40.0)
  assert s["MIA"] == pytest.approx(75.0)  # three of four forget samples look like test
  assert metrics.scores(out, "val")["TA"] == pytest.approx(50.0)
  ref = {"UA": 70.0, "MIA": 80.0, "RA": 75.0, "TA": 44.0}
  assert metrics.avg_gap(s, ref) == pytest.approx((5 + 5 + 0 + 4) / 4)
