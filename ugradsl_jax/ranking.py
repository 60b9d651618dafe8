"""Ranking claims over seeds: per-seed paired differences, not means alone.

A table's means over three seeds can order two methods whose per-seed gaps
cross. `paired` compares two methods seed by seed on the same split and
original model (each seed's rows come from one run), and `merge` joins the
per-seed rows of several results.json files (the reported seeds and more
seeds run later with the same recipes), refusing files whose cells or
recipes differ.
"""

from __future__ import annotations

import math

import numpy as np

from .configs import recipe_meta
from .report import mean_std

# What must agree between results files before their seeds are pooled: the
# cell, and what the original model and Retrain are trained on and with.
_CELL = ("dataset", "scenario", "model", "preset", "forgotten")
_SETUP = ("pretrain", "width", "depth", "train_per_class", "test_size", "val_fraction",
          "forget_fraction", "forget_classes", "forget_subclass", "text")


def _setup(res: dict) -> dict:
  cfg = res.get("config") or {}
  return {**{k: res.get(k) for k in _CELL}, **{k: cfg.get(k) for k in _SETUP}}


def merge(results: list[dict]) -> dict[int, dict]:
  """{seed: {method: row}} over several results.json dicts of one cell.

  Raises ValueError when the files describe different cells, when a method's
  recipe (its `hparams`, optional fields at their defaults left out as
  `configs.recipe_meta` does) differs between files, or when a seed appears
  in two files with different rows.
  """
  if not results:
    raise ValueError("no results to merge")
  first = results[0]
  out: dict[int, dict] = {}
  recipes: dict[str, dict] = {}
  for res in results:
    here, there = _setup(first), _setup(res)
    for k in here:
      if here[k] != there[k]:
        raise ValueError(f"results differ in {k}: {here[k]!r} and {there[k]!r}")
    for seed, rows in res["per_seed"].items():
      seed = int(seed)
      for name, row in rows.items():
        # As a phase's meta compares them: a field a newer version added,
        # absent from an older file, counts as its default.
        hp = row.get("hparams")
        hp = recipe_meta(hp) if hp is not None else None
        if recipes.setdefault(name, hp) != hp:
          raise ValueError(f"{name}: its recipe differs between results files "
                           f"(seed {seed}); pool only runs of one recipe")
      if seed in out and out[seed] != rows:
        raise ValueError(f"seed {seed} appears in two results files with different rows")
      out[seed] = rows
  return dict(sorted(out.items()))


def paired(per_seed: dict[int, dict], a: str, b: str, key: str = "avg_gap") -> dict:
  """Method `a` against method `b`, seed by seed, on `key` (smaller is better).

  Returns the seeds both have a finite value on, the per-seed differences
  a - b (negative: `a` better), their mean and sample std, the number of
  seeds `a` wins, ties and loses, and the one-sided sign test's p-value for
  "a is better" (ties left out; scipy's exact binomial test).
  """
  from scipy.stats import binomtest  # scikit-learn's dependency
  seeds, diffs = [], []
  for seed, rows in sorted(per_seed.items()):
    va, vb = (rows.get(m, {}).get(key) for m in (a, b))
    if va is None or vb is None or not (math.isfinite(va) and math.isfinite(vb)):
      continue
    seeds.append(seed)
    diffs.append(float(va) - float(vb))
  if not diffs:
    raise ValueError(f"no seed has {key} for both {a} and {b}")
  d = np.asarray(diffs)
  wins, losses = int((d < 0).sum()), int((d > 0).sum())
  mean, std = mean_std(d)
  p = binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue \
      if wins + losses else 1.0
  return {"a": a, "b": b, "key": key, "seeds": seeds, "diffs": diffs, "mean": mean,
          "std": std, "wins": wins, "ties": len(d) - wins - losses, "losses": losses,
          "sign_p": float(p)}


def order(per_seed: dict[int, dict], key: str = "avg_gap", skip=("retrain",)) -> list:
  """Methods by their mean `key` over the seeds (smallest first), each with
  (mean, sample std, number of seeds); `skip` left out."""
  vals: dict[str, list] = {}
  for rows in per_seed.values():
    for name, row in rows.items():
      v = row.get(key)
      if name not in skip and v is not None and math.isfinite(v):
        vals.setdefault(name, []).append(float(v))
  out = [(name, *mean_std(v), len(v)) for name, v in vals.items()]
  return sorted(out, key=lambda t: t[1])
