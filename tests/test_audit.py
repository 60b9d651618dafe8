"""The forget score F and the LiRA audit against hand computations and a naive
re-implementation of the NeurIPS 2023 competition metric (metric.py of
google-deepmind/unlearning_evaluation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ugradsl_jax import audit

# ------------------------------------------------------------- confidences


def test_logit_scaled_confidence_matches_float64_hand_computation():
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 3, (3, 5, 4)).astype(np.float32)  # [models, examples, classes]
  labels = np.array([0, 3, 1, 2, 3])
  got = audit.logit_scaled_confidence(logits, labels)
  assert got.shape == (3, 5) and got.dtype == np.float64
  for m in range(3):
    for i in range(5):
      z = [float(v) for v in logits[m, i]]
      p = [math.exp(v) / sum(math.exp(w) for w in z) for v in z]
      wrong = sum(q for k, q in enumerate(p) if k != labels[i])
      want = math.log(p[labels[i]]) - math.log(wrong)
      assert got[m, i] == pytest.approx(want, rel=1e-12, abs=1e-12)
  # A single model's [num_examples, num_classes] works the same way.
  np.testing.assert_array_equal(audit.logit_scaled_confidence(logits[1], labels), got[1])


def test_logit_scaled_confidence_is_stable_for_huge_logits():
  two = audit.logit_scaled_confidence(np.array([[1000.0, -1000.0], [-1000.0, 1000.0]]),
                                      np.array([0, 0]))
  # p_wrong underflows to 0 in float64: the softmax-then-log form would give inf.
  np.testing.assert_allclose(two, [2000.0, -2000.0], rtol=0, atol=1e-9)
  three = audit.logit_scaled_confidence(
      np.array([[1000.0, -1000.0, -1000.0], [1000.0, 1000.0, 1000.0]]), np.array([0, 1]))
  # log p_y - log(p_1 + p_2) = 1000 - (-1000 + log 2); all equal: 0 - log 2.
  np.testing.assert_allclose(three, [2000.0 - math.log(2), -math.log(2)], rtol=0, atol=1e-9)


@pytest.mark.parametrize("logits, labels, match", [
    (np.zeros((3, 1)), np.zeros(3, int), "2 classes"),
    (np.zeros((3, 4)), np.zeros(2, int), "shape"),
    (np.zeros((3, 4)), np.array([0, 4, 1]), r"\[0, 4\)"),
    (np.zeros((3, 4)), np.zeros(3), "integers"),
    (np.array([[0.0, np.inf], [0.0, 1.0]]), np.zeros(2, int), "finite"),
    (np.zeros(4), np.zeros(4, int), "num_classes"),
])
def test_logit_scaled_confidence_rejects_bad_input(logits, labels, match):
  with pytest.raises(ValueError, match=match):
    audit.logit_scaled_confidence(logits, labels)


# ------------------------------------------ a naive copy of the reference rule


def _naive_rates_epsilon(count_pairs, n_pos, n_neg, delta):
  """max epsilon over (false positives, false negatives) counts; None if none kept."""
  best = None
  for fp, fn in count_pairs:
    fpr, fnr = fp / n_neg, fn / n_pos
    if fp == 0 and fn == 0:
      e = math.inf
    elif fp == 0 or fn == 0:
      continue  # taken as too few samples
    else:
      terms = []
      if 1 - delta - fpr > 0:
        terms.append(math.log(1 - delta - fpr) - math.log(fnr))
      if 1 - delta - fnr > 0:
        terms.append(math.log(1 - delta - fnr) - math.log(fpr))
      if not terms:
        continue
      e = max(max(terms), 0.0)
    best = e if best is None else max(best, e)
  return best


def _naive_epsilon(u, r, delta=1e-5, cap=50.0):
  """One example's epsilon, written from reading metric.py, with plain loops."""
  u, r = list(map(float, u)), list(map(float, r))
  pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
  dp, dn = max(pos) - min(pos), max(neg) - min(neg)
  big, small = max(dp, dn), min(dp, dn)
  if big > 0 and small / big < 0.01:
    return cap
  pairs = set()
  # Single threshold: "conf >= t" is called positive.
  lo, hi = min(pos + neg), max(pos + neg)
  for t in np.linspace(lo, hi, int(math.ceil((hi - lo) * 100))):
    pairs.add((sum(c >= t for c in neg), sum(c < t for c in pos)))
  # Double threshold: "left <= conf <= right" is called the peakier fleet.
  peaky, wide = (neg, pos) if dp >= dn else (pos, neg)
  w = max(peaky) - min(peaky)
  r_lo, r_hi = min(peaky) + w - 2.0, max(peaky) + 2.0
  p, q = np.array(peaky), np.array(wide)
  for right in np.linspace(r_lo, r_hi, int(math.ceil((r_hi - r_lo) * 100))):
    lefts = np.linspace(right - w - 2.0, right - w + 2.0, 400)
    p_in = ((lefts[:, None] <= p) & (p <= right)).sum(1)
    q_in = ((lefts[:, None] <= q) & (q <= right)).sum(1)
    pairs.update(zip(q_in.tolist(), (len(p) - p_in).tolist()))
  # Positive/negative swap in the double rule leaves the fleet sizes equal here.
  best = _naive_rates_epsilon(pairs, len(pos), len(neg), delta)
  return 0.0 if best is None else min(max(best, 0.0), cap)


def test_example_epsilons_match_a_naive_reimplementation():
  rng = np.random.default_rng(1)
  n_models = 6
  u = np.stack([
      rng.normal(0, 1, n_models),           # same distribution
      rng.normal(1, 1, n_models),           # shifted by one std
      rng.normal(0, 0.3, n_models),         # narrower than the other fleet
      rng.normal(-4, 2, n_models),          # far apart, wide
      np.round(rng.normal(0, 1, n_models), 2),  # on the 0.01 grid: ties with thresholds
      rng.normal(3, 1e-3, n_models),        # peaky
      rng.normal(0, 0.5, n_models),
  ], axis=1)
  r = np.stack([
      rng.normal(0, 1, n_models),
      rng.normal(0, 1, n_models),
      rng.normal(0, 1, n_models),
      rng.normal(0, 2, n_models),
      np.round(rng.normal(0.2, 1, n_models), 2),
      rng.normal(3, 1, n_models),
      rng.normal(0.4, 0.5, n_models),
  ], axis=1)
  got = audit.example_epsilons(u, r)
  want = [_naive_epsilon(u[:, i], r[:, i]) for i in range(u.shape[1])]
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
  # Example 0: by chance an interval holds all of one fleet and none of the
  # other (perfect separation, eps = inf -> 50); 5 is peaky; the rest overlap.
  assert got[0] == 50.0 and got[5] == 50.0 and np.all((0 < got[1:5]) & (got[1:5] < 50))


def test_example_epsilons_match_naive_on_random_fleets():
  # Varied sizes, scales and shifts; every third example on a 0.1 grid so that
  # confidences tie with each other and with thresholds.
  rng = np.random.default_rng(7)
  n_models, n_examples = 10, 12
  shift, scale = rng.normal(0, 1, n_examples), rng.uniform(0.05, 2, n_examples)
  u = rng.normal(shift, scale, (n_models, n_examples))
  r = rng.normal(0, rng.uniform(0.05, 2, n_examples), (n_models, n_examples))
  u[:, ::3], r[:, ::3] = np.round(u[:, ::3], 1), np.round(r[:, ::3], 1)
  want = [_naive_epsilon(u[:, i], r[:, i]) for i in range(n_examples)]
  np.testing.assert_allclose(audit.example_epsilons(u, r), want, rtol=1e-12, atol=0)
  assert len(set(np.round(want, 6))) > 4  # not one trivial value


def test_hand_worked_epsilon():
  # Example 0: retrained [0, 1, 2, 3], unlearned [1.5, 2.5, 3.5, 4.5]. The
  # unlearned median (3.0) is larger, so it is the positive fleet; spreads are
  # equal (3 and 3), so not peaky. No rule separates the fleets (1.5 < 3 for
  # the single threshold; 1.5 lies inside any interval holding all of
  # retrained), so there is no inf. With 4 models the smallest non-zero rates
  # are 1/4 and 1/4, reached by the single threshold t in (2, 2.5]
  # (fp: 3 >= t; fn: 1.5 < t) and by the interval [l <= 0, r in [2, 2.5))
  # (retrained 3 outside, unlearned 1.5 inside):
  #   eps = log(1 - 1e-5 - 1/4) - log(1/4) = log(0.74999 / 0.25) = log(2.99996).
  # Any other kept threshold has a rate >= 1/2 and so a smaller epsilon.
  # Example 1 swaps the fleets: the same epsilon by symmetry.
  r = np.array([[0.0, 1.5], [1.0, 2.5], [2.0, 3.5], [3.0, 4.5]])
  u = np.array([[1.5, 0.0], [2.5, 1.0], [3.5, 2.0], [4.5, 3.0]])
  eps = audit.example_epsilons(u, r)
  np.testing.assert_allclose(eps, [math.log(2.99996)] * 2, rtol=1e-12)
  # 4 models: 2 * ceil(ln 3) = 4 buckets; 1.0986 is in [1.0, 1.5), k = 2.
  points, eps2 = audit.forget_points(u, r)
  np.testing.assert_array_equal(points, [0.25, 0.25])
  np.testing.assert_array_equal(eps2, eps)
  assert audit.forget_score(u, r) == 0.25


# --------------------------------------------------------- special cases


def test_identical_fleets_score_full_points():
  rng = np.random.default_rng(2)
  confs = rng.normal(0, 1.5, (32, 20)) + rng.normal(0, 4, 20)
  # Every threshold then has fpr = 1 - fnr, so every epsilon is clipped to 0.
  np.testing.assert_array_equal(audit.example_epsilons(confs, confs.copy()), 0.0)
  assert audit.forget_score(confs, confs.copy()) == 1.0


def test_separable_fleets_score_zero():
  rng = np.random.default_rng(3)
  r = rng.normal(0, 1, (16, 10))
  u = r + 20.0  # same spread, no overlap: some threshold has fpr = fnr = 0
  np.testing.assert_array_equal(audit.example_epsilons(u, r), 50.0)
  assert audit.forget_score(u, r) == 0.0
  assert audit.forget_score(r, u) == 0.0


def test_peaky_fleet_gets_the_cap():
  rng = np.random.default_rng(4)
  r = rng.normal(0, 1, (16, 3))
  noise = rng.normal(0, 1, 16)
  u = np.stack([np.full(16, r[:, 0].mean()),  # constant, in the middle of r
                # spread 0.5% of r's: peaky; 5%: not
                r[:, 1].mean() + noise * (0.005 * np.ptp(r[:, 1]) / np.ptp(noise)),
                r[:, 2].mean() + noise * (0.05 * np.ptp(r[:, 2]) / np.ptp(noise))],
               axis=1)
  eps = audit.example_epsilons(u, r)
  assert eps[0] == 50.0 and eps[1] == 50.0 and eps[2] < 50.0
  assert audit.example_epsilons(r, u)[:2].tolist() == [50.0, 50.0]  # either fleet may be peaky


def test_two_equal_constant_fleets_score_zero_epsilon():
  # The reference has no kept threshold here (it stops on an assertion); this
  # module calls that epsilon 0: nothing tells the fleets apart.
  c = np.full((8, 1), 0.7)
  assert audit.example_epsilons(c, c.copy()).tolist() == [0.0]


def test_epsilon_points_and_buckets():
  # 2 * ceil(ln(N - 1)) buckets (natural log): N = 2 -> 0, 3 -> 2, 32 -> 8, 512 -> 14.
  assert [audit.num_buckets(n) for n in (2, 3, 32, 512)] == [0, 2, 8, 14]
  eps = [0.0, 0.49, 0.5, 1.2, 3.99, 4.0, 50.0, np.inf]
  np.testing.assert_array_equal(audit.epsilon_points(eps, 32),
                                [1, 1, 0.5, 0.25, 2.0 ** -7, 0, 0, 0])
  np.testing.assert_array_equal(audit.epsilon_points([0.0, 0.3], 2), [0, 0])


def test_final_score_by_hand():
  want = 0.5 * (0.9 / 0.95) * (0.8 / 0.85)
  assert audit.final_score(0.5, 0.9, 0.95, 0.8, 0.85) == pytest.approx(want, rel=1e-15)
  with pytest.raises(ValueError, match="ra_r"):
    audit.final_score(0.5, 0.9, 0.0, 0.8, 0.85)
  with pytest.raises(ValueError, match="finite"):
    audit.final_score(float("nan"), 0.9, 0.9, 0.8, 0.85)


@pytest.mark.parametrize("u, r, match", [
    (np.zeros((4, 3)), np.zeros((4, 2)), "same shape"),
    (np.zeros((1, 3)), np.zeros((1, 3)), "at least 2"),
    (np.zeros(3), np.zeros(3), "num_models, num_examples"),
    (np.array([[0.0, np.nan], [1.0, 2.0]]), np.zeros((2, 2)), "finite"),
])
def test_forget_score_rejects_bad_input(u, r, match):
  with pytest.raises(ValueError, match=match):
    audit.forget_score(u, r)


# ------------------------------------------------------- fleets and LiRA


def _fleets(shift_in_stds, n_models=32, n_examples=100, seed=5):
  """Two fleets drawing every example from the same Gaussian, the first shifted."""
  rng = np.random.default_rng(seed)
  mu = rng.normal(0, 3, n_examples)
  sd = rng.uniform(0.5, 2.0, n_examples)
  u = mu + sd * (rng.normal(size=(n_models, n_examples)) + shift_in_stds)
  r = mu + sd * rng.normal(size=(n_models, n_examples))
  return u, r


def test_retrained_vs_retrained_scores_near_perfect():
  u, r = _fleets(0.0)
  # With 32 models the reference metric is far from 1 even for exact
  # unlearning: an interval holding ~5 of one fleet and 1 of the other
  # already certifies eps ~ ln 5 = 1.6, so the median epsilon is ~1.6 and
  # F ~ 0.17 (0.16-0.18 over seeds and N = 8..512). A shifted fleet scores
  # ~0.002 (below), so F > 0.1 separates the two with a wide margin.
  f = audit.forget_score(u, r)
  assert 0.1 < f < 0.3
  out = audit.lira(u, r, seed=0)
  assert abs(out["auc"] - 0.5) < 0.05
  assert out["tpr_at_1fpr"] < 0.05 and out["tpr_at_5fpr"] < 0.12


def test_shifted_fleet_is_caught():
  u, r = _fleets(5.0)
  assert audit.forget_score(u, r) < 0.02
  out = audit.lira(u, r, seed=0)
  assert out["auc"] > 0.95 and out["tpr_at_1fpr"] > 0.5


def test_lira_outputs_and_scores_by_hand():
  from scipy.stats import norm
  u, r = _fleets(1.0, n_models=8, n_examples=5)
  out = audit.lira(u, r, seed=3)
  # The split: one permutation per fleet from default_rng(seed), unlearned first;
  # Gaussians (ddof=1) on the first half, scores on the second.
  rng = np.random.default_rng(3)
  pu, pr = rng.permutation(8), rng.permutation(8)
  fit_u, fit_r = u[pu[:4]], r[pr[:4]]
  def llr(x):
    return (norm.logpdf(x, fit_u.mean(0), fit_u.std(0, ddof=1))
            - norm.logpdf(x, fit_r.mean(0), fit_r.std(0, ddof=1)))
  want = np.concatenate([llr(u[pu[4:]]).ravel(), llr(r[pr[4:]]).ravel()])
  np.testing.assert_allclose(out["scores"], want, rtol=1e-10, atol=1e-10)
  np.testing.assert_array_equal(out["labels"], [1] * 20 + [0] * 20)
  # AUC as the share of (unlearned, retrained) pairs ordered correctly.
  a, b = want[:20], want[20:]
  auc = np.mean((a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :]))
  assert out["auc"] == pytest.approx(auc)
  assert out["fpr"][0] == 0 and out["tpr"][-1] == 1 and len(out["fpr"]) == len(out["tpr"])
  assert 0 <= out["tpr_at_1fpr"] <= out["tpr_at_5fpr"] <= 1


def test_lira_floors_the_std_of_a_constant_fleet():
  rng = np.random.default_rng(6)
  u = np.full((8, 3), 2.0)
  r = rng.normal(2.0, 1.0, (8, 3))
  out = audit.lira(u, r)
  assert np.all(np.isfinite(out["scores"])) and out["auc"] > 0.95


@pytest.mark.parametrize("u, r, match", [
    (np.zeros((3, 2)), np.zeros((4, 2)), "at least 4"),
    (np.zeros((4, 2)), np.zeros((4, 3)), "same number of examples"),
    (np.full((4, 2), np.inf), np.zeros((4, 2)), "finite"),
])
def test_lira_rejects_bad_input(u, r, match):
  with pytest.raises(ValueError, match=match):
    audit.lira(u, r)


def test_rank_agreement_by_hand():
  """Spearman by hand: the same order is 1, the reverse -1; one swap of
  adjacent ranks among 4 gives 1 - 6 * 2 / (4 * 15) = 0.8."""
  f = {"a": 0.3, "b": 0.2, "c": 0.1, "d": 0.05}
  same = audit.rank_agreement(f, {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
  assert same["spearman"] == pytest.approx(1.0)
  assert same["audit_order"] == same["svc_order"] == ["a", "b", "c", "d"]
  rev = audit.rank_agreement(f, {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0})
  assert rev["spearman"] == pytest.approx(-1.0)
  assert rev["svc_order"] == ["d", "c", "b", "a"]
  swap = audit.rank_agreement(f, {"a": 2.0, "b": 1.0, "c": 3.0, "d": 4.0})
  assert swap["spearman"] == pytest.approx(0.8)
  # Too few methods, or a constant column: no correlation to report.
  assert audit.rank_agreement({"a": 1.0, "b": 0.5}, {"a": 1.0, "b": 2.0})["spearman"] is None
  assert audit.rank_agreement(f, dict.fromkeys(f, 1.0))["spearman"] is None
  with pytest.raises(ValueError, match="same methods"):
    audit.rank_agreement(f, {"a": 1.0})
