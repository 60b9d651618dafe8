"""experiments.tune: selection on validation, agreement with the experiment."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT


def test_tune_picks_the_smallest_validation_gap_and_matches_the_experiment(cifar, tmp_path):
  from ugradsl_jax import configs, protocol
  cfg = configs.get("smoke")
  res = protocol.tune(cfg, cifar, tmp_path, "ga", {"lr": [1e-3, 3e-2]}, [1],
                      progress=False)
  gaps = [r["avg_gap"] for r in res["rows"]]
  assert gaps[0] != gaps[1]  # the grid changes the outcome
  assert res["best"] == res["rows"][int(np.argmin(gaps))]["setting"]
  assert "test" not in json.dumps(res)  # nothing from the test set leaks into selection
  # Second code path: the experiment run with each setting reports the same
  # validation Avg. Gap for GA as the tuner measured.
  for row in res["rows"]:
    run_cfg = configs.with_method(cfg, "ga", **row["setting"])
    out = protocol.run_seed(run_cfg, cifar, tmp_path / f"exp_{row['setting']['lr']}",
                            ["retrain", "ga"], progress=False)
    assert out["methods"]["ga"]["val"]["avg_gap"] == pytest.approx(row["avg_gap"], abs=1e-9)


def test_tune_bad_grid_is_one_line(tmp_path):
  p = subprocess.run([sys.executable, "-m", "experiments.tune", "--method", "ga",
                      "--grid", "speed=1,2", "--workdir", str(tmp_path / "w")],
                     cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert p.returncode == 2
  assert p.stderr.strip().splitlines() == [p.stderr.strip()]
  assert "--grid 'speed=1,2'" in p.stderr and "Traceback" not in p.stderr
  assert not (tmp_path / "w").exists()
