"""Fleets of models on one split and the audit built from them (smoke sizes)."""

import json

import numpy as np
import pytest

from conftest import ROOT  # noqa: F401  (puts the repository on sys.path)
from ugradsl_jax import configs, fleet, protocol
from ugradsl_jax import methods, phases


@pytest.fixture(scope="module")
def audited(cifar, tmp_path_factory):
  from experiments import audit
  wd = tmp_path_factory.mktemp("audit")
  res = audit.run(configs.get("smoke"), cifar, wd, ["ga"], 4)
  return wd, res


def test_audit_writes_every_score_in_range(audited):
  wd, res = audited
  saved = json.loads((wd / "audit.json").read_text())
  assert set(saved["methods"]) == {fleet.CONTROL, "ga"}
  for name, row in saved["methods"].items():
    for k in ("forget_score", "final_score", "lira_auc", "lira_tpr_at_1fpr",
              "lira_tpr_at_5fpr"):
      assert 0.0 <= row[k] <= 1.0, (name, k, row[k])
    assert row["num_models"] == 4 and len(row["epsilons"]) == res["forget_size"]
    assert 0.0 <= row["MIA_u"] <= 100.0 and row["MIA_r"] == saved["retrain"]["MIA"]
    assert row["mia_gap"] == pytest.approx(abs(row["MIA_u"] - row["MIA_r"]))
  # One method: no rank correlation to report, and both orders name it.
  assert saved["provenance"]["platform"] == "cpu"
  assert saved["svc_vs_audit"] == {"spearman": None, "num_methods": 1,
                                   "audit_order": ["ga"], "svc_order": ["ga"]}
  assert (wd / "audit.md").read_text().count("| Retrain (control) |") == 1
  assert (wd / "audit.png").stat().st_size > 10_000
  # 4 Retrains, 4 control Retrains, 4 GA runs: each its own phase directory.
  members = sorted(p.name for p in (wd / "fleet").iterdir())
  assert members == [f"member_{i}" for i in range(8)]
  assert all((wd / "fleet" / f"member_{i}" / "ga" / "outcome.json").exists() for i in range(4))


def test_members_differ_and_a_rerun_reuses_them(audited, cifar):
  """Members differ in their own randomness (a member is not a copy); a
  fleet trained again from the workdir is the same models, read back."""
  wd, _ = audited
  exp = protocol.setup(configs.get("smoke"), cifar)
  runner = phases.Runner(wd, progress=False)
  orig = phases.run(exp, runner, methods.original(exp))
  again = fleet.train_fleet(exp, runner, orig, "ga", 4, log=lambda s: None)
  first = fleet.train_fleet(exp, runner, orig, "ga", 4, log=lambda s: None)
  np.testing.assert_array_equal(again.logits, first.logits)
  assert again.rte_s == first.rte_s  # read from the saved outcomes: nothing retrained
  assert not np.array_equal(again.logits[0], again.logits[1])  # negative control
  seeds = {fleet.member_seed(1, i) for i in range(8)}
  assert len(seeds) == 8 and 1 not in seeds


@pytest.mark.parametrize("flag", [["--seeds", "1,2"], ["--no_retrain"], ["--retrain_from", "x"],
                                  ["--sweep_alpha", "-1,-0.5"]])
def test_audit_refuses_flags_it_cannot_honour(flag, capsys):
  """An audit trains its own Retrain fleets at one seed: a flag that would
  change that is one error line, not silently dropped."""
  from experiments import audit
  assert audit.main(["--preset", "smoke", "--methods", "ga", "--num_models", "4", *flag]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith(f"error: {flag[0]}: not for an audit")


@pytest.mark.parametrize("method", ["rl", "retrain"])
def test_vmapped_fleet_equals_the_sequential_one(cifar, tmp_path, method):
  """Members trained as one vmapped program (each with its own data order,
  augmentation, RL labels or initialisation) are the sequential path's
  members, saved where that path reads them back."""
  exp = protocol.setup(configs.get("smoke"), cifar)
  orig = phases.run(exp, phases.Runner(None, progress=False), methods.original(exp))
  quiet = dict(log=lambda s: None)
  seq = fleet.train_fleet(exp, phases.Runner(tmp_path / "s", False), orig, method, 2,
                          mode="sequential", **quiet)
  vm = fleet.train_fleet(exp, phases.Runner(tmp_path / "v", False), orig, method, 2,
                         mode="vmap", **quiet)
  # float32 noise of a vmapped convolution, grown over the steps (Retrain's
  # pretraining: up to 3e-3 measured); members differ by far more.
  np.testing.assert_allclose(vm.logits, seq.logits, rtol=1e-2, atol=1e-2)
  np.testing.assert_allclose(vm.ra, seq.ra, atol=0.6)  # an example or two may flip
  # Negative control: the members differ, so member i matched member i.
  assert np.abs(vm.logits[0] - seq.logits[1]).max() > 20 * np.abs(vm.logits - seq.logits).max()
  again = fleet.train_fleet(exp, phases.Runner(tmp_path / "v", False), orig, method, 2,
                            mode="sequential", **quiet)
  np.testing.assert_array_equal(again.logits, vm.logits)  # read back, not retrained
  assert not any((tmp_path / "v" / "fleet" / "vmap").iterdir())
  with pytest.raises(configs.ConfigError, match="--fleet 'gpu'"):
    fleet.vmaps("gpu")
