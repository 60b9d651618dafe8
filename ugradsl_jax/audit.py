"""Per-example unlearning audits over fleets of models.

Two audits compare the logit-scaled confidences that a fleet of unlearned
models and a fleet of retrained-from-scratch models give each forget example
(arrays shaped [num_models, num_examples]):

* the NeurIPS 2023 Machine Unlearning competition's forget score F (the
  `metric.py` of google-deepmind/unlearning_evaluation): an empirical
  (epsilon, delta) per example from a grid of single- and double-threshold
  tests, turned into points 2^-k and averaged; `final_score` adjusts F for
  utility;
* `lira`, a U-LiRA-style likelihood-ratio test (Hayes et al. 2024,
  arXiv 2403.01218): per-example Gaussians fitted on half of each fleet score
  the other halves.

Pure numpy (scikit-learn for the ROC in `lira`); nothing runs at import.
"""

from __future__ import annotations

import math

import numpy as np

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100  # threshold grid density, per unit of confidence
BUFFER = 2.0  # how far the double-threshold grid reaches past the peaky fleet
PEAKY_RATIO = 0.01  # spread ratio under which an example gets the cap
BUCKET = 0.5  # epsilon width of one points bucket
MIN_STD = 1e-3  # floor on the per-example std in `lira`


# ---------------------------------------------------------------- confidences


def logit_scaled_confidence(logits, labels) -> np.ndarray:
  """log p_y - log sum_{k != y} p_k for logits [..., num_examples, num_classes].

  Computed in float64 as z_y - logsumexp_{k != y} z_k, which equals the
  softmax form exactly but never takes the log of an underflowed
  probability. `labels` is [num_examples] of class indices; the result has
  the logits' shape without the class axis.
  """
  z = np.asarray(logits, dtype=np.float64)
  y = np.asarray(labels)
  if z.ndim < 2:
    raise ValueError(f"logits must be [..., num_examples, num_classes], got shape {z.shape}")
  n, k = z.shape[-2:]
  if k < 2:
    raise ValueError(f"need at least 2 classes, got {k}")
  if y.shape != (n,):
    raise ValueError(f"labels must have shape ({n},) to match logits {z.shape}, got {y.shape}")
  if not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"labels must be integers, got dtype {y.dtype}")
  if y.size and (y.min() < 0 or y.max() >= k):
    raise ValueError(f"labels must lie in [0, {k}), got range [{y.min()}, {y.max()}]")
  if not np.all(np.isfinite(z)):
    raise ValueError("logits must be finite")
  true_class = np.arange(k) == y[:, None]  # [num_examples, num_classes]
  z_y = np.sum(np.where(true_class, z, 0.0), axis=-1)
  others = np.where(true_class, -np.inf, z)
  top = np.max(others, axis=-1, keepdims=True)  # finite: k >= 2
  lse = top[..., 0] + np.log(np.sum(np.exp(others - top), axis=-1))
  return z_y - lse


# ----------------------------------------------------------- input checking


def _as_fleets(unlearned_confs, retrained_confs, min_models: int):
  """Both fleets as float64 [num_models, num_examples], validated."""
  u = np.asarray(unlearned_confs, dtype=np.float64)
  r = np.asarray(retrained_confs, dtype=np.float64)
  for name, a in (("unlearned_confs", u), ("retrained_confs", r)):
    if a.ndim != 2:
      raise ValueError(f"{name} must be [num_models, num_examples], got shape {a.shape}")
    if a.shape[0] < min_models:
      raise ValueError(f"{name} has {a.shape[0]} models; need at least {min_models}")
    if a.shape[1] < 1:
      raise ValueError(f"{name} has no examples")
    if not np.all(np.isfinite(a)):
      raise ValueError(f"{name} must be finite")
  return u, r


def _same_shape(u: np.ndarray, r: np.ndarray) -> None:
  if u.shape != r.shape:
    raise ValueError(f"unlearned_confs {u.shape} and retrained_confs {r.shape} "
                     "must have the same shape")


# ------------------------------------------------------- per-example epsilon


def _spread(x: np.ndarray) -> float:
  return float(x.max() - x.min())


def is_peaky(pos: np.ndarray, neg: np.ndarray) -> bool:
  """Whether one fleet's spread (max - min) is under 1% of the other's.

  Two constant fleets (0/0) are not peaky, as in the reference, where the
  ratio is nan and the comparison false.
  """
  a, b = _spread(pos), _spread(neg)
  largest, smallest = max(a, b), min(a, b)
  return largest > 0 and smallest / largest < PEAKY_RATIO


def _fraction_at_least(sorted_x: np.ndarray, t: np.ndarray) -> np.ndarray:
  """Share of sorted_x that is >= each threshold t."""
  n = len(sorted_x)
  return (n - np.searchsorted(sorted_x, t, side="left")) / n


def _fraction_below(sorted_x: np.ndarray, t: np.ndarray) -> np.ndarray:
  """Share of sorted_x that is < each threshold t."""
  return np.searchsorted(sorted_x, t, side="left") / len(sorted_x)


def _count_inside(sorted_x: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
  """How many of sorted_x lie in each closed interval [left, right] (0 if empty)."""
  inside = (np.searchsorted(sorted_x, right, side="right")
            - np.searchsorted(sorted_x, left, side="left"))
  return np.maximum(inside, 0)


def single_threshold_rates(pos: np.ndarray, neg: np.ndarray):
  """(fpr, fnr) of the rules "conf >= t means positive" over the reference grid.

  The grid is ceil(100 * range) evenly spaced thresholds from the smallest
  to the largest confidence of both fleets (empty when all are equal).
  """
  both = np.concatenate([pos, neg])
  lo, hi = both.min(), both.max()
  num = int(np.ceil((hi - lo) * THRESHOLDS_PER_UNIT))
  t = np.linspace(lo, hi, num)
  fpr = _fraction_at_least(np.sort(neg), t)
  fnr = _fraction_below(np.sort(pos), t)
  return fpr, fnr


def double_threshold_rates(pos: np.ndarray, neg: np.ndarray):
  """(fpr, fnr) of the rules "left <= conf <= right means the peakier fleet".

  The peakier fleet (smaller spread; on a tie, `neg`) plays the positive
  class. With w its spread, the right thresholds are ceil(100 * (hi - lo))
  points from lo = min + w - 2 to hi = max + 2 of that fleet, and each
  right threshold r gets 400 left thresholds from r - w - 2 to r - w + 2.
  """
  if _spread(pos) >= _spread(neg):
    pos, neg = neg, pos
  width = _spread(pos)
  # Same float operations, in the same order, as the reference grid, so the
  # thresholds (and their number) agree bit for bit.
  lo = pos.min() + width - BUFFER
  hi = pos.max() + BUFFER
  right = np.linspace(lo, hi, int(np.ceil((hi - lo) * THRESHOLDS_PER_UNIT)))
  num_left = int(np.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT))
  left = np.linspace(right - width - BUFFER, right - width + BUFFER, num_left, axis=-1)
  right = np.broadcast_to(right[:, None], left.shape)
  left, right = left.reshape(-1), right.reshape(-1)
  fpr = _count_inside(np.sort(neg), left, right) / len(neg)
  fnr = (len(pos) - _count_inside(np.sort(pos), left, right)) / len(pos)
  return fpr, fnr


def threshold_epsilons(fpr: np.ndarray, fnr: np.ndarray, delta: float = DELTA) -> np.ndarray:
  """Epsilon each (fpr, fnr) pair certifies; nan where the threshold is dropped.

  fpr = fnr = 0 is perfect separation: inf. Exactly one of them 0 is taken
  as too few samples: dropped (nan). Otherwise
  max(log(1 - delta - fpr) - log(fnr), log(1 - delta - fnr) - log(fpr)),
  ignoring a term whose log argument is negative, floored at 0; nan if both
  terms are invalid (fpr = fnr = 1).
  """
  fpr = np.asarray(fpr, dtype=np.float64)
  fnr = np.asarray(fnr, dtype=np.float64)
  both_zero = (fpr == 0) & (fnr == 0)
  one_zero = (fpr * fnr == 0) & ~both_zero
  ok = ~(both_zero | one_zero)
  eps = np.full(fpr.shape, np.nan)
  eps[both_zero] = np.inf
  with np.errstate(invalid="ignore"):
    a = np.log((1.0 - delta) - fpr[ok]) - np.log(fnr[ok])
    b = np.log((1.0 - delta) - fnr[ok]) - np.log(fpr[ok])
  eps[ok] = np.maximum(np.fmax(a, b), 0.0)  # fmax skips a nan term; nan stays if both are
  return eps


def pair_epsilon(pos: np.ndarray, neg: np.ndarray, delta: float = DELTA,
                 cap: float = EPSILON_CAP) -> float:
  """Epsilon of one example from the positive and negative fleets' confidences.

  `cap` if the example is peaky; else the largest epsilon over the kept
  thresholds of both rule families, clipped to [0, cap]. If no threshold is
  kept the result is 0 (the reference stops with an assertion there; it
  happens only in degenerate cases such as two equal constant fleets).
  """
  pos = np.asarray(pos, dtype=np.float64).reshape(-1)
  neg = np.asarray(neg, dtype=np.float64).reshape(-1)
  if is_peaky(pos, neg):
    # The grid can miss a near-constant fleet; the reference charges it the cap.
    return float(cap)
  eps = np.concatenate([threshold_epsilons(*double_threshold_rates(pos, neg), delta),
                        threshold_epsilons(*single_threshold_rates(pos, neg), delta)])
  eps = eps[~np.isnan(eps)]
  if eps.size == 0:
    return 0.0
  return float(np.clip(eps.max(), 0.0, cap))


def orient(unlearned: np.ndarray, retrained: np.ndarray):
  """(pos, neg): per example, the fleet with the larger median is positive.

  On equal medians the unlearned fleet is positive, as in the reference.
  """
  retrained_is_pos = np.median(retrained, axis=0) > np.median(unlearned, axis=0)
  pos = np.where(retrained_is_pos, retrained, unlearned)
  neg = np.where(retrained_is_pos, unlearned, retrained)
  return pos, neg


def example_epsilons(unlearned_confs, retrained_confs, delta: float = DELTA,
                     cap: float = EPSILON_CAP) -> np.ndarray:
  """Per-example empirical epsilon [num_examples], float64 in [0, cap]."""
  u, r = _as_fleets(unlearned_confs, retrained_confs, min_models=2)
  _same_shape(u, r)
  pos, neg = orient(u, r)
  return np.array([pair_epsilon(pos[:, i], neg[:, i], delta, cap) for i in range(u.shape[1])])


# ------------------------------------------------------------------- points


def num_buckets(num_models: int) -> int:
  """How many 0.5-wide epsilon buckets earn points: 2 * ceil(ln(num_models - 1)).

  The reference's bound on a measurable epsilon is ceil(ln(N - 1)) (natural
  log); N = 2 gives 0 buckets, so every example then scores 0.
  """
  if num_models < 2:
    raise ValueError(f"need at least 2 models, got {num_models}")
  return int(round(2 * math.ceil(math.log(num_models - 1))))


def epsilon_points(epsilons, num_models: int) -> np.ndarray:
  """2^-k for epsilon in [0.5k, 0.5(k+1)) with k < num_buckets, else 0."""
  eps = np.asarray(epsilons, dtype=np.float64)
  if np.any(np.isnan(eps)) or np.any(eps < 0):
    raise ValueError("epsilons must be non-negative numbers")
  k = np.floor(eps / BUCKET)
  return np.where(k < num_buckets(num_models), np.exp2(-np.minimum(k, 1074.0)), 0.0)


def forget_points(unlearned_confs, retrained_confs, delta: float = DELTA,
                  cap: float = EPSILON_CAP):
  """(points, epsilons), both [num_examples]: each forget example's share of F."""
  u, r = _as_fleets(unlearned_confs, retrained_confs, min_models=2)
  _same_shape(u, r)
  eps = example_epsilons(u, r, delta, cap)
  # The reference sizes the buckets by the unlearned fleet (both are equal here).
  return epsilon_points(eps, u.shape[0]), eps


def forget_score(unlearned_confs, retrained_confs, delta: float = DELTA,
                 cap: float = EPSILON_CAP) -> float:
  """F: the mean of `forget_points` over the forget examples, in [0, 1]."""
  points, _ = forget_points(unlearned_confs, retrained_confs, delta, cap)
  return float(points.mean())


def final_score(forget: float, ra_u: float, ra_r: float, ta_u: float, ta_r: float) -> float:
  """F * (RA_u / RA_r) * (TA_u / TA_r): the forget score adjusted for utility.

  RA / TA are retain / test accuracies, averaged over the unlearned (u) and
  the retrained (r) fleet.
  """
  values = dict(forget=forget, ra_u=ra_u, ra_r=ra_r, ta_u=ta_u, ta_r=ta_r)
  for name, v in values.items():
    if not math.isfinite(v):
      raise ValueError(f"{name} must be finite, got {v}")
  for name in ("ra_r", "ta_r"):
    if values[name] == 0:
      raise ValueError(f"{name} must be non-zero")
  return float(forget * (ra_u / ra_r) * (ta_u / ta_r))


# --------------------------------------------------------------------- LiRA


def _gaussian_logpdf(x: np.ndarray, mu: np.ndarray, std: np.ndarray) -> np.ndarray:
  return -0.5 * ((x - mu) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)


def _fit(x: np.ndarray, min_std: float):
  """Per-example (mean, std) over the models axis; std (ddof=1) floored at min_std."""
  return x.mean(axis=0), np.maximum(x.std(axis=0, ddof=1), min_std)


def _split(num_models: int, rng: np.random.Generator):
  """(fit rows, held-out rows): a random half of the models, and the rest."""
  perm = rng.permutation(num_models)
  return perm[:num_models // 2], perm[num_models // 2:]


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
  """Best TPR among ROC points with FPR <= target."""
  return float(tpr[fpr <= target].max())


def lira(unlearned_confs, retrained_confs, seed: int = 0, min_std: float = MIN_STD) -> dict:
  """U-LiRA-style per-example likelihood-ratio test of unlearned vs retrained.

  Each fleet's models are split in half by `np.random.default_rng(seed)`.
  Per-example Gaussians (mean, std with ddof=1, floored at `min_std`) are
  fitted on the first half of each fleet; every (model, example) pair of the
  held-out halves is scored with log N(x; mu_u, s_u) - log N(x; mu_r, s_r),
  label 1 for an unlearned model and 0 for a retrained one. The fleets may
  differ in size but must cover the same examples.

  Returns a dict: `auc`, `tpr_at_1fpr`, `tpr_at_5fpr` (floats), `fpr`, `tpr`
  (the ROC curve), `scores` and `labels` (the held-out pairs, flattened).
  Indistinguishable fleets give an AUC near 0.5.
  """
  from sklearn.metrics import roc_auc_score, roc_curve  # only this audit needs it

  u, r = _as_fleets(unlearned_confs, retrained_confs, min_models=4)
  if u.shape[1] != r.shape[1]:
    raise ValueError(f"unlearned_confs {u.shape} and retrained_confs {r.shape} "
                     "must cover the same number of examples")
  if not min_std > 0:
    raise ValueError(f"min_std must be positive, got {min_std}")
  rng = np.random.default_rng(seed)
  u_fit, u_held = _split(u.shape[0], rng)
  r_fit, r_held = _split(r.shape[0], rng)
  mu_u, s_u = _fit(u[u_fit], min_std)
  mu_r, s_r = _fit(r[r_fit], min_std)

  def llr(x):
    return _gaussian_logpdf(x, mu_u, s_u) - _gaussian_logpdf(x, mu_r, s_r)

  held_u, held_r = llr(u[u_held]), llr(r[r_held])
  scores = np.concatenate([held_u.reshape(-1), held_r.reshape(-1)])
  labels = np.concatenate([np.ones(held_u.size, int), np.zeros(held_r.size, int)])
  fpr, tpr, _ = roc_curve(labels, scores)
  return dict(auc=float(roc_auc_score(labels, scores)),
              tpr_at_1fpr=_tpr_at(fpr, tpr, 0.01), tpr_at_5fpr=_tpr_at(fpr, tpr, 0.05),
              fpr=fpr, tpr=tpr, scores=scores, labels=labels)


# ------------------------------------------------ the SVC against the audit


def rank_agreement(forget_scores: dict, mia_gaps: dict) -> dict:
  """How far the population SVC ranks methods as the per-example audit does.

  `forget_scores`: {method: F} (larger: closer to Retrain); `mia_gaps`:
  {method: |MIA-Efficacy - Retrain's|} (smaller: closer). Returns the
  Spearman rank correlation between F and -gap (1: the same order, -1: the
  reverse; None with fewer than 3 methods or a constant column) and both
  orders, best first.
  """
  from scipy.stats import spearmanr  # scikit-learn's dependency
  names = sorted(forget_scores)
  if sorted(mia_gaps) != names:
    raise ValueError("forget_scores and mia_gaps must name the same methods")
  f = np.array([forget_scores[n] for n in names], float)
  g = np.array([mia_gaps[n] for n in names], float)
  rho = None
  if len(names) >= 3 and np.ptp(f) > 0 and np.ptp(g) > 0:
    rho = float(spearmanr(f, -g).statistic)
  return {"spearman": rho, "num_methods": len(names),
          "audit_order": [names[i] for i in np.argsort(-f, kind="stable")],
          "svc_order": [names[i] for i in np.argsort(g, kind="stable")]}
