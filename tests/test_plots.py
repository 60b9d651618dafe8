"""The figures: the numbers they draw (gap_table, sweep_grid) against hand
calculations, and each drawing function on its edge cases writing a PNG that
reads back."""

import math

import numpy as np
import pytest

from ugradsl_jax import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
METHODS11 = ["retrain", "ft", "ga", "rl", "l1_sparse", "salun", "neggrad_plus",
             "ugradsl", "ugradsl_plus", "extra_a", "extra_b"]


def _png(path):
  """The file's image array, after checking it is a real, non-trivial PNG."""
  from matplotlib.image import imread
  data = path.read_bytes()
  assert data[:8] == PNG_MAGIC
  img = imread(path)
  assert img.ndim == 3 and img.shape[2] in (3, 4)
  assert img.shape[0] > 100 and img.shape[1] > 100
  # Something was drawn: not a single flat colour.
  assert img[..., :3].std() > 0.01
  return img


# ---------------------------------------------------------------- gap_table

def _row(ua, mia, ra, ta, gap=1.0):
  return {"UA": ua, "MIA": mia, "RA": ra, "TA": ta, "avg_gap": gap}


# Seed by seed: retrain UA 10, 20, 30 and ga UA 12, 20, 40, so the per-seed
# differences are 2, 0, 10: mean 4, ddof=1 std sqrt(28) = 5.2915.
# The wrong formulas give other numbers on purpose:
#   std(ga UA) - std(retrain UA) = 14.422 - 10 = 4.422
#   ddof=0 std of the differences = sqrt(56/3) = 4.3205
PER_SEED = {
  "1": {"retrain": _row(10, 50, 90, 80), "ga": _row(12, 55, 88, 79),
        "ugradsl": _row(11, None, 90, 80)},
  "2": {"retrain": _row(20, 60, 92, 82), "ga": _row(20, 60, 90, 80),
        "ugradsl": _row(21, None, 91, 81)},
  "3": {"retrain": _row(30, 70, 94, 84), "ga": _row(40, 80, 92, 81),
        "ugradsl": _row(31, None, 92, 82)},
}


def _aggregate():
  names = ["retrain", "ga", "ugradsl"]
  methods, stds = {}, {}
  for n in names:
    methods[n], stds[n] = {}, {}
    for k in ("UA", "MIA", "RA", "TA", "avg_gap"):
      v = [s[n][k] for s in PER_SEED.values() if s[n][k] is not None]
      if v:
        methods[n][k] = float(np.mean(v))
        stds[n][k] = float(np.std(v, ddof=1))
  return {"preset": "quick", "dataset": "cifar10", "scenario": "random",
          "model": "resnet18", "seeds": [1, 2, 3], "methods": methods, "stds": stds,
          "per_seed": PER_SEED}


def test_gap_table_multi_seed_hand_calculation():
  t = plots.gap_table(_aggregate())
  assert set(t) == {"ga", "ugradsl"}   # Retrain is the reference, not a row
  mean, std = t["ga"]["UA"]
  assert mean == pytest.approx(4.0)
  assert std == pytest.approx(math.sqrt(28.0))
  # Negative controls: the formulas this must not be.
  assert abs(std - (np.std([12, 20, 40], ddof=1) - np.std([10, 20, 30], ddof=1))) > 0.5
  assert abs(std - math.sqrt(56 / 3)) > 0.5
  # MIA: differences 5, 0, 10 -> mean 5, std 5.
  assert t["ga"]["MIA"] == pytest.approx((5.0, 5.0))
  # RA: -2, -2, -2 -> a constant gap has zero spread (while RA itself varies).
  assert t["ga"]["RA"] == pytest.approx((-2.0, 0.0))
  # TA: -1, -2, -3 -> mean -2, std 1.
  assert t["ga"]["TA"] == pytest.approx((-2.0, 1.0))
  assert t["ugradsl"]["UA"] == pytest.approx((1.0, 0.0))


def test_gap_table_skips_a_missing_metric():
  t = plots.gap_table(_aggregate())
  assert "MIA" not in t["ugradsl"]
  assert set(t["ugradsl"]) == {"UA", "RA", "TA"}


def test_gap_table_one_seed_has_no_std():
  res = {"preset": "quick", "seed": 0,
         "methods": {"retrain": _row(10, 50, 90, 80), "ft": _row(7.5, 40, 95, 81),
                     "ga": {"UA": 30.0, "RA": None}}}
  t = plots.gap_table(res)
  assert t["ft"] == {"UA": (-2.5, None), "MIA": (-10.0, None),
                     "RA": (5.0, None), "TA": (1.0, None)}
  assert t["ga"] == {"UA": (20.0, None)}


def test_gap_table_needs_retrain():
  with pytest.raises(ValueError, match="retrain"):
    plots.gap_table({"preset": "quick", "methods": {"ft": _row(1, 2, 3, 4)}})


# ---------------------------------------------------------------- gaps

def test_gaps_multi_seed_png(tmp_path):
  p = tmp_path / "gaps.png"
  plots.gaps(_aggregate(), p)
  _png(p)


def test_gaps_eleven_methods_one_seed_grows_taller(tmp_path):
  rng = np.random.default_rng(0)
  res = {"preset": "quick", "seed": 1, "methods": {
    n: _row(*rng.uniform(0, 100, 4), gap=float(rng.uniform(0, 5))) for n in METHODS11}}
  res["methods"]["ga"]["diverged"] = True
  del res["methods"]["ft"]["MIA"]
  few = {"preset": "quick", "seed": 1,
         "methods": {n: res["methods"][n] for n in METHODS11[:3]}}
  big, small = tmp_path / "big.png", tmp_path / "small.png"
  plots.gaps(res, big)
  plots.gaps(few, small)
  assert _png(big).shape[0] > _png(small).shape[0]


def test_gaps_only_retrain(tmp_path):
  p = tmp_path / "r.png"
  plots.gaps({"preset": "smoke", "seed": 0, "methods": {"retrain": _row(1, 2, 3, 4)}}, p)
  _png(p)


# ---------------------------------------------------------------- curves

def _hist(keys, n=6, start=0):
  rows = []
  for s in range(n):
    r = {"step": start + 10 * s, "lr": 0.01, "images_per_s": 800.0, "update_norm": 1.0}
    for k in keys:
      r[k] = (0.1 * s if k.endswith("acc") else 2.0 - 0.2 * s)
    rows.append(r)
  return rows


def test_roles_from_keys():
  assert plots.roles(_hist(["retain_loss", "retain_acc", "forget_loss", "forget_acc"])) \
    == ["retain", "forget"]
  assert plots.roles(_hist(["forget_loss", "forget_acc"])) == ["forget"]
  assert plots.roles(_hist(["train_loss"])) == ["train"]
  assert plots.roles([]) == []


def test_series_turns_none_and_inf_into_nan():
  s = plots.series([{"a": 1}, {"a": None}, {"a": float("inf")}, {}, {"a": "x"}], "a")
  assert s[0] == 1.0 and np.isnan(s[1:]).all()


def test_curves_eleven_methods_empty_and_nan(tmp_path):
  pair = ["retain_loss", "retain_acc", "forget_loss", "forget_acc"]
  hist = {n: _hist(pair) for n in METHODS11}
  hist["ft"] = _hist(["retain_loss", "retain_acc"])
  hist["ga"] = _hist(["forget_loss", "forget_acc"])
  hist["rl"] = _hist(["train_loss", "train_acc"])
  hist["salun"] = []                                    # no history at all
  hist["ugradsl"][2]["retain_loss"] = float("nan")       # a diverged step
  hist["ugradsl"][3]["forget_acc"] = None
  hist["ugradsl"][4]["forget_loss"] = float("inf")
  hist["extra_a"] = [{"step": 0, "retain_loss": None, "retain_acc": None}]  # all NaN
  p = tmp_path / "curves.png"
  plots.curves(hist, p, title="cifar10, random forgetting")
  img = _png(p)
  assert img.shape[1] > img.shape[0]  # 4 columns x 3 rows: wider than tall


def test_curves_single_method(tmp_path):
  p = tmp_path / "one.png"
  plots.curves({"ga": _hist(["forget_loss", "forget_acc"])}, p)
  _png(p)


# ---------------------------------------------------------------- sweep

def _trial(a, p, gap, ua, ra, beta=None, diverged=False):
  t = {"alpha": a, "p": p, "diverged": diverged, "val_avg_gap": gap,
       "val": {"UA": ua, "MIA": 20.0, "RA": ra, "TA": 70.0}}
  if beta is not None:
    t["beta"] = beta
  return t


def _sweep():
  trials = [_trial(-1.0, 0.5, 3.0, 10.0, 90.0), _trial(-0.5, 0.5, 2.0, 11.0, 91.0),
            _trial(0.0, 0.5, 4.0, 12.0, 92.0), _trial(-1.0, 0.8, 5.0, 13.0, 93.0),
            _trial(-0.5, 0.8, 1.0, 14.0, 94.0)]         # (0.0, 0.8) missing
  trials.append(_trial(0.0, 0.8, 99.0, 0.0, 10.0, diverged=True))
  return {"method": "ugradsl", "title": "cifar10, random forgetting, resnet18",
          "axes": {"alpha": [-1.0, -0.5, 0.0], "p": [0.5, 0.8], "beta": [0.2]},
          "trials": trials, "chosen": {"alpha": -0.5, "p": 0.8, "beta": 0.2}}


def test_sweep_grid_shuffled_and_missing():
  sw = _sweep()
  sw["trials"] = [t for t in sw["trials"] if not t["diverged"]]
  expect_gap = np.array([[3.0, 2.0, 4.0], [5.0, 1.0, np.nan]])   # rows p, cols alpha
  expect_ua = np.array([[10.0, 11.0, 12.0], [13.0, 14.0, np.nan]])
  rng = np.random.default_rng(1)
  for _ in range(3):
    sw["trials"] = [sw["trials"][i] for i in rng.permutation(len(sw["trials"]))]
    np.testing.assert_array_equal(plots.sweep_grid(sw, "val_avg_gap"), expect_gap)
    np.testing.assert_array_equal(plots.sweep_grid(sw, "UA"), expect_ua)
  # Orientation: p runs down the rows, alpha along the columns.
  assert plots.sweep_grid(sw, "RA")[1, 0] == 93.0


def test_sweep_grid_tolerates_float32_values():
  sw = _sweep()
  sw["trials"] = [{**t, "alpha": float(np.float32(t["alpha"])), "p": float(np.float32(t["p"]))}
                  for t in sw["trials"]]
  assert plots.sweep_grid(sw, "val_avg_gap")[1, 1] == 1.0


def test_sweep_diverged_and_chosen():
  sw = _sweep()
  div = plots.sweep_diverged(sw)
  assert div.tolist() == [[False, False, False], [False, False, True]]
  assert plots.chosen_cell(sw) == (0, 1, 1)
  assert plots.chosen_cell({**sw, "chosen": None}) is None


def _two_beta_sweep():
  trials = []
  for b, off in ((0.2, 0.0), (0.5, 100.0)):
    for a in (-1.0, -0.5):
      for p in (0.5, 0.8):
        trials.append(_trial(a, p, off + a + p, 10.0, 90.0, beta=b))
  trials[-1]["diverged"] = True
  trials.reverse()
  return {"method": "ugradsl_plus", "title": "t",
          "axes": {"alpha": [-1.0, -0.5], "p": [0.5, 0.8], "beta": [0.2, 0.5]},
          "trials": trials, "chosen": {"alpha": -1.0, "p": 0.5, "beta": 0.5}}


def test_sweep_grid_per_beta():
  sw = _two_beta_sweep()
  np.testing.assert_allclose(plots.sweep_grid(sw, "val_avg_gap", beta=0.2),
                             [[-0.5, 0.0], [-0.2, 0.3]])
  np.testing.assert_allclose(plots.sweep_grid(sw, "val_avg_gap", beta=0.5),
                             [[99.5, 100.0], [99.8, 100.3]])
  with pytest.raises(ValueError, match="beta"):
    plots.sweep_grid(sw, "UA")
  assert plots.chosen_cell(sw) == (1, 0, 0)
  assert plots.sweep_diverged(sw, beta=0.5)[1, 1]
  assert not plots.sweep_diverged(sw, beta=0.2).any()


def test_sweep_heatmap_png(tmp_path):
  p = tmp_path / "sweep.png"
  plots.sweep_heatmap(_sweep(), p)
  _png(p)


def test_sweep_heatmap_two_betas_taller(tmp_path):
  sw = _two_beta_sweep()
  one = {**sw, "axes": {**sw["axes"], "beta": [0.2]},
         "trials": [t for t in sw["trials"] if t["beta"] == 0.2],
         "chosen": {"alpha": -1.0, "p": 0.5, "beta": 0.2}}
  two_p, one_p = tmp_path / "two.png", tmp_path / "one.png"
  plots.sweep_heatmap(sw, two_p)
  plots.sweep_heatmap(one, one_p)
  assert _png(two_p).shape[0] > _png(one_p).shape[0]


def test_sweep_heatmap_single_alpha_and_single_p(tmp_path):
  col = {"method": "ugradsl", "title": "t", "axes": {"alpha": [-1.0], "p": [0.5, 0.8]},
         "trials": [_trial(-1.0, 0.8, 2.0, 5.0, 90.0), _trial(-1.0, 0.5, 3.0, 6.0, 91.0)],
         "chosen": {"alpha": -1.0, "p": 0.8}}
  row = {"method": "ugradsl", "title": "t", "axes": {"alpha": [-1.0, -0.5], "p": [0.5]},
         "trials": [_trial(-1.0, 0.5, 2.0, 5.0, 90.0, diverged=True)], "chosen": None}
  assert plots.sweep_grid(col, "val_avg_gap").tolist() == [[3.0], [2.0]]
  assert plots.chosen_cell(col) == (0, 1, 0)
  for i, sw in enumerate((col, row)):
    p = tmp_path / f"s{i}.png"
    plots.sweep_heatmap(sw, p)
    _png(p)


def test_a_beta_grid_over_one_alpha_and_p_is_one_heatmap(tmp_path):
  """Three betas at one (alpha, p) are one 1 x 3 grid with beta along x, not
  three 1 x 1 panels; the chosen beta is boxed in its column."""
  trials = [_trial(-2.0, 0.5, g, 99.0, 78.0, beta=b) for b, g in ((0.3, 3.0), (0.05, 1.0),
                                                                   (0.15, 2.0))]
  sw = {"method": "ugradsl_adaptive", "title": "t", "trials": trials,
        "axes": {"alpha": [-2.0], "p": [0.5], "beta": [0.05, 0.15, 0.3]},
        "chosen": {"alpha": -2.0, "p": 0.5, "beta": 0.15}}
  flat, names = plots.oriented(sw)
  assert names == ("beta", "p", "alpha")
  np.testing.assert_array_equal(plots.sweep_grid(flat, "val_avg_gap"), [[1.0, 2.0, 3.0]])
  assert plots.chosen_cell(flat) == (0, 0, 1)
  # A beta grid over several p at one alpha: p stays on y, beta takes x.
  sw2 = {**sw, "axes": {"alpha": [-2.0], "p": [0.5, 0.9], "beta": [0.05, 0.3]},
         "trials": [_trial(-2.0, p, p + b, 99.0, 78.0, beta=b) for p in (0.5, 0.9)
                    for b in (0.05, 0.3)], "chosen": None}
  flat2, names2 = plots.oriented(sw2)
  assert names2 == ("beta", "p", "alpha")
  np.testing.assert_allclose(plots.sweep_grid(flat2, "val_avg_gap"), [[0.55, 0.8], [0.95, 1.2]])
  # Negative control: a full alpha x p x beta grid keeps its rows per beta.
  full = _two_beta_sweep()
  assert plots.oriented(full) == (full, ("alpha", "p", "beta"))
  plots.sweep_heatmap(sw, tmp_path / "b.png")
  _png(tmp_path / "b.png")


def test_curves_share_one_loss_range_that_ignores_a_runaway():
  """Every panel's loss axis spans the same range, taken from the bulk of
  all logged losses, so one method's exploding forget loss cannot flatten
  the others (hand-computed percentiles)."""
  steady = [{"step": i, "retain_loss": 1.0 + 0.01 * i, "retain_acc": 0.5} for i in range(100)]
  runaway = [{"step": i, "forget_loss": 1.0 + 0.01 * i, "forget_acc": 0.1} for i in range(97)]
  runaway += [{"step": 97 + i, "forget_loss": v, "forget_acc": 0.1}
              for i, v in enumerate((1e3, 1e4, float("inf")))]
  lo, hi = plots.loss_limits({"ft": steady, "ga": runaway})
  vals = np.array([1.0 + 0.01 * i for i in range(100)] + [1.0 + 0.01 * i for i in range(97)]
                  + [1e3, 1e4])
  p2, p98 = np.percentile(vals, [2, 98])
  assert (lo, hi) == pytest.approx((p2 - 0.05 * (p98 - p2), p98 + 0.05 * (p98 - p2)))
  assert hi < 10  # the runaway's 1e3 and 1e4 are outside the range
  assert plots.loss_limits({"ft": [{"step": 0, "retain_acc": 0.5}]}) is None
