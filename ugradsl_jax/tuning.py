"""Choosing a method's hyper-parameters on the validation split, over seeds
disjoint from the reported ones, and the choice drawn as a sensitivity map."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Callable

from . import configs, datasets, methods, metrics, phases, report
from .phases import Runner
from .protocol import evaluated, preflight, setup

# Every numeric recipe field, the baselines' own included, plus the mixing
# rule and the adaptive rate's feature mode.
TUNE_FIELDS = {**configs.METHOD_FIELDS,
               **{k: t for k, (t, _) in configs.METHOD_FIELD_SPECS.items() if t in (int, float)},
               "forget_batch_size": int, "feature_mode": str}


def settings(grid: dict[str, list]) -> list[dict]:
  keys = list(grid)
  return [dict(zip(keys, vals)) for vals in itertools.product(*grid.values())]


def tag(setting: dict) -> str:
  return "_".join(f"{k}={v}" for k, v in setting.items()) or "preset"


def tune(cfg: configs.Config, data: datasets.Dataset, workdir: Path, method: str,
         grid: dict, seeds: list[int], progress: bool = True,
         log: Callable[[str], None] = print) -> dict:
  """Each setting of `grid` (the cross product of its fields) unlearned from
  each seed's original model and scored with the validation split standing
  where the test set stands; the smallest mean validation Avg. Gap against
  Retrain wins. The test set plays no part in the choice and is not in the
  returned rows (the per-model score caches hold it, as in every run).

  Original model and Retrain come from workdir/seed_<s> (the experiment's own
  phases, reused when present); settings go to workdir/seed_<s>/tune/<method>/.
  """
  trials = settings(grid)
  for t in trials:
    configs.validate(configs.with_method(cfg, method, **t))
  val = {tag(t): [] for t in trials}
  for seed in seeds:
    scfg = dataclasses.replace(cfg, seed=seed)
    exp = setup(scfg, data)
    base = Path(workdir) / f"seed_{seed}"
    preflight(exp, base, ["retrain"])
    runner = Runner(base, progress)
    orig = phases.run(exp, runner, methods.original(exp))
    ref = evaluated(exp, runner, "retrain",
                    phases.run(exp, runner, methods.retrain(exp, orig)))["val"]
    for t in trials:
      tcfg = configs.with_method(scfg, method, **t)
      texp = dataclasses.replace(exp, cfg=tcfg)  # same images, labels, split, devices
      trunner = Runner(base / "tune" / method / tag(t), progress)
      phase = phases.run(texp, trunner, methods.REGISTRY[method](texp, orig,
                                                                 tcfg.methods[method]))
      sc = evaluated(texp, trunner, method, phase)["val"]
      sc["avg_gap"] = metrics.avg_gap(sc, ref)
      sc["diverged"] = bool(phase.outcome["diverged"])
      sc["rte_s"] = phases.cost(phase.outcome)["rte_s"]  # set-up and mask included
      val[tag(t)].append(sc)
      log(f"seed {seed} {method} {tag(t)}: val Avg. Gap {sc['avg_gap']:.2f} "
          f"(UA {sc['UA']:.1f} MIA {sc['MIA']:.1f} RA {sc['RA']:.1f} "
          f"val acc {sc['TA']:.1f})")
  rows = []
  for t in trials:
    runs = val[tag(t)]
    row = {"setting": t, "diverged": any(r["diverged"] for r in runs)}
    for k in ("avg_gap", "UA", "MIA", "RA", "TA", "rte_s"):
      v = [r[k] for r in runs]
      row[k], row[f"{k}_std"] = report.mean_std(v)
    rows.append(row)
  ok = [r for r in rows if not r["diverged"]] or rows
  best = min(ok, key=lambda r: r["avg_gap"])
  for r in rows:  # the validation scores' means, as a sweep's trials hold them
    r["val"] = {k: r[k] for k in ("UA", "MIA", "RA", "TA")}
  return {"method": method, "preset": cfg.preset, "dataset": cfg.dataset,
          "scenario": cfg.scenario, "model": cfg.model, "seeds": seeds, "grid": grid,
          "selected_by": "mean validation Avg. Gap against Retrain",
          "rows": rows, "best": best["setting"]}


def tune_sensitivity(res: dict, recipe) -> dict | None:
  """A tuning run as a sensitivity map (the format of sweep_<method>.json):
  mean validation scores over alpha x p (x beta), the other grid fields held
  at the chosen values. None when the grid varies none of them."""
  axes = ("alpha", "p", "beta")
  if not any(a in res["grid"] for a in axes):
    return None
  fixed = {k: v for k, v in res["best"].items() if k not in axes}
  keys = ("alpha", "p", "beta") if recipe.alpha_mode == "adaptive" else ("alpha", "p")
  trials = []
  for r in res["rows"]:
    if any(r["setting"].get(k) != v for k, v in fixed.items()):
      continue
    full = {k: r["setting"].get(k, getattr(recipe, k)) for k in keys}
    trials.append({**full, "diverged": r["diverged"], "val_avg_gap": r["avg_gap"],
                   "val": r["val"]})
  chosen = {k: res["best"].get(k, getattr(recipe, k)) for k in keys}
  held = ", ".join(f"{k} {v}" for k, v in fixed.items())
  return {"method": res["method"],
          "title": f"{report.title(res)}, mean of seeds {', '.join(map(str, res['seeds']))}"
                   + (f", {held}" if held else ""),
          "alpha_mode": recipe.alpha_mode, "seeds": res["seeds"],
          "axes": {k: sorted({t[k] for t in trials}) for k in keys},
          "trials": trials, "chosen": chosen,
          "selected_by": res["selected_by"]}
