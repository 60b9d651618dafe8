"""Aggregates across seeds: one std convention, and every quoted number kept."""

import numpy as np
import pytest

from ugradsl_jax import report


def _run(seed, ua, ta, wall):
  row = {"UA": ua, "MIA": 50.0, "RA": 90.0, "TA": ta, "avg_gap": 1.0, "rte_s": 2.0,
         "compile_s": 1.0, "mask_s": 0.0, "io_s": 0.1, "hparams": {"lr": 0.1}}
  return {"seed": seed, "preset": "quick", "methods": {"retrain": dict(row), "ga": dict(row)},
          "original": {"UA": 1.0 * seed, "MIA": 2.0, "RA": 99.0, "TA": 70.0 + seed},
          "wall_s": wall}


def test_mean_std_is_the_sample_std():
  assert report.mean_std([1.0, 2.0, 6.0]) == pytest.approx((3.0, np.sqrt(7.0)))
  assert report.mean_std([4.0]) == (4.0, 0.0)
  # Negative control: not the population std.
  assert report.mean_std([1.0, 2.0, 6.0])[1] != pytest.approx(np.std([1.0, 2.0, 6.0]))


def test_aggregate_keeps_each_seed_and_uses_ddof1():
  runs = [_run(1, 10.0, 70.0, 600.0), _run(2, 14.0, 72.0, 610.0), _run(3, 18.0, 71.0, 620.0)]
  agg = report.aggregate(runs)
  assert agg["methods"]["ga"]["UA"] == pytest.approx(14.0)
  assert agg["stds"]["ga"]["UA"] == pytest.approx(4.0)  # ddof=1 of 10, 14, 18
  assert agg["original"]["UA"] == pytest.approx(2.0)
  assert agg["original_std"]["TA"] == pytest.approx(1.0)
  assert agg["original_per_seed"]["3"] == runs[2]["original"]
  assert agg["wall_s_per_seed"] == {"1": 600.0, "2": 610.0, "3": 620.0}
  assert "wall_s" not in agg  # one seed's wall time must not pass for all
  assert agg["per_seed"]["2"]["ga"]["TA"] == 72.0
  md = report.markdown(agg)
  assert "Original model (before unlearning): UA 2.00 ± 1.00" in md
