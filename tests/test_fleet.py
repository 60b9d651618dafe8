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
