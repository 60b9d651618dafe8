"""Ranking over seeds: pooled per-seed rows and paired differences, by hand."""

import json

import pytest

from conftest import ROOT  # noqa: F401  (puts the repository on sys.path)
from ugradsl_jax import ranking


def _res(rows_by_seed, dataset="cifar10", hp=None):
  return {"dataset": dataset, "scenario": "random", "model": "resnet18", "preset": "quick",
          "forgotten": None,
          "per_seed": {str(s): {m: {"avg_gap": g, "hparams": (hp or {}).get(m, {"lr": 1})}
                                for m, g in rows.items()}
                       for s, rows in rows_by_seed.items()}}


A = _res({1: {"retrain": 0.0, "x": 1.0, "y": 2.0}, 2: {"retrain": 0.0, "x": 3.0, "y": 2.5},
          3: {"retrain": 0.0, "x": 1.5, "y": 2.0}})
B = _res({6: {"retrain": 0.0, "x": 0.5, "y": 1.0}, 7: {"retrain": 0.0, "x": 2.0, "y": 2.0}})


def test_paired_differences_by_hand():
  per_seed = ranking.merge([A, B])
  assert list(per_seed) == [1, 2, 3, 6, 7]
  p = ranking.paired(per_seed, "x", "y")
  # x - y per seed: -1, +0.5, -0.5, -0.5, 0 -> 3 wins, 1 tie, 1 loss.
  assert p["diffs"] == [-1.0, 0.5, -0.5, -0.5, 0.0]
  assert p["mean"] == pytest.approx(-0.3)
  assert p["std"] == pytest.approx((sum((d + 0.3) ** 2 for d in p["diffs"]) / 4) ** 0.5)
  assert (p["wins"], p["ties"], p["losses"]) == (3, 1, 1)
  # One-sided sign test over the 4 untied seeds: P(X >= 3), X ~ Bin(4, 1/2) = 5/16.
  assert p["sign_p"] == pytest.approx(5 / 16)
  # Seeds 1-3 alone: x wins 2 of 3, P(X >= 2) = 1/2; y wins 1, P(X >= 1) = 7/8.
  assert ranking.paired(ranking.merge([A]), "x", "y")["sign_p"] == pytest.approx(0.5)
  assert ranking.paired(ranking.merge([A]), "y", "x")["sign_p"] == pytest.approx(7 / 8)
  order = ranking.order(per_seed)
  assert [o[0] for o in order] == ["x", "y"] and order[0][3] == 5
  assert order[0][1] == pytest.approx(8.0 / 5)


def test_merge_refuses_other_cells_recipes_and_clashing_seeds():
  with pytest.raises(ValueError, match="differ in dataset"):
    ranking.merge([A, _res({6: {"x": 1.0}}, dataset="svhn")])
  with pytest.raises(ValueError, match="x: its recipe differs"):
    ranking.merge([A, _res({6: {"x": 1.0}}, hp={"x": {"lr": 2}})])
  # Another original model (its pretraining recipe) is another experiment.
  other_pre = {**_res({6: {"x": 1.0}}), "config": {"pretrain": {"epochs": 9}}}
  with pytest.raises(ValueError, match="differ in pretrain"):
    ranking.merge([{**A, "config": {"pretrain": {"epochs": 7}}}, other_pre])
  with pytest.raises(ValueError, match="seed 1 appears in two"):
    ranking.merge([A, _res({1: {"retrain": 0.0, "x": 9.0, "y": 2.0}})])
  # A field an older file lacks counts as its default (as a phase's meta
  # compares recipes); a real difference in it is still refused.
  newer = _res({6: {"x": 1.0}}, hp={"x": {"lr": 1, "method_hparams": {}}})
  assert list(ranking.merge([A, newer])) == [1, 2, 3, 6]
  with pytest.raises(ValueError, match="x: its recipe differs"):
    ranking.merge([A, _res({6: {"x": 1.0}}, hp={"x": {"lr": 1, "method_hparams": {"k": 1}}})])
  # The same seed's identical rows (a folder given twice) pool once.
  assert list(ranking.merge([A, A])) == [1, 2, 3]
  with pytest.raises(ValueError, match="no seed has"):
    ranking.paired(ranking.merge([A]), "x", "z")


def test_compare_command(tmp_path, capsys):
  from experiments import compare
  (tmp_path / "a").mkdir()
  (tmp_path / "a" / "results.json").write_text(json.dumps(A))
  (tmp_path / "b.json").write_text(json.dumps(B))
  out = tmp_path / "cmp.json"
  assert compare.main([str(tmp_path / "a"), str(tmp_path / "b.json"), "--method", "x",
                       "--json", str(out)]) == 0
  text = capsys.readouterr().out
  assert "| x − y | -1.00 / +0.50 / -0.50 / -0.50 / +0.00 | -0.30 ± " in text
  assert json.loads(out.read_text())["pairs"][0]["wins"] == 3
  assert compare.main([str(tmp_path / "a"), "--method", "nope"]) == 2
  assert "--method nope: not in the results" in capsys.readouterr().err
  assert compare.main([str(tmp_path / "missing"), "--method", "x"]) == 2
