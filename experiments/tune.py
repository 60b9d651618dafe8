"""Choose one method's hyper-parameters on the validation split, over seeds.

  python -m experiments.tune --data_dir ../shared/data/cifar10-jpeg.tar.gz \\
      --workdir runs/tune --seeds 1,2 --method ga --grid lr=1e-3,2e-3,5e-3

For each seed, the original model and Retrain come from <workdir>/seed_<s>
(trained there by the experiment's own phases, or reused when present); each
setting of the grid (the cross product of the --grid fields) is unlearned in
<workdir>/seed_<s>/tune/<method>/<setting> and scored with the validation split
standing where the test set stands (metrics.scores(out, "val")): TA is
validation accuracy and MIA's non-members are validation images. The setting
with the smallest mean validation Avg. Gap against Retrain is chosen. The
test set plays no part in the choice and is neither printed nor in the
returned rows or tune_<method>.json (the per-model scores caches hold it, as
in every experiment): copy the choice into configs.py and let the experiment
report the test set.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from ugradsl_jax import configs, data as data_lib, methods as M, metrics

from . import cifar_random_forget as exp

FIELDS = {k: v for k, v in exp.METHOD_FIELDS.items()}
FIELDS.update({"l1": float, "mask_ratio": float, "forget_batch_size": int})


def parse_grid(items: list[str]) -> dict[str, list]:
  grid = {}
  for item in items:
    key, _, vals = item.partition("=")
    if key not in FIELDS or not vals:
      raise exp.UsageError(f"--grid {item!r}: expected FIELD=v1,v2 with FIELD one of "
                           f"{', '.join(FIELDS)}")
    try:
      grid[key] = [FIELDS[key](v) for v in vals.split(",")]
    except ValueError:
      raise exp.UsageError(f"--grid {item!r}: bad value for {key}") from None
  return grid


def settings(grid: dict[str, list]) -> list[dict]:
  keys = list(grid)
  return [dict(zip(keys, vals)) for vals in itertools.product(*grid.values())]


def tag(setting: dict) -> str:
  return "_".join(f"{k}={v}" for k, v in setting.items()) or "preset"


def tune(cfg: configs.Config, data, workdir: Path, method: str, grid: dict,
         seeds: list[int], progress: bool = True) -> dict:
  trials = settings(grid)
  val = {tag(t): [] for t in trials}
  for seed in seeds:
    scfg = dataclasses.replace(cfg, seed=seed)
    # Original and Retrain from the experiment's own phases (and reused).
    ctx = exp.context(scfg, data, workdir / f"seed_{seed}", progress)
    base = ctx.workdir
    exp.preflight(ctx, ["retrain"])
    orig = M.original(ctx)
    ref = exp._evaluated(ctx, "retrain", M.retrain(ctx, orig))["val"]
    for t in trials:
      tcfg = configs.with_method(scfg, method, **t)
      configs.validate(tcfg)
      tctx = dataclasses.replace(ctx, cfg=tcfg, workdir=base / "tune" / method / tag(t))
      tctx._device_data = ctx.device_data  # same images, labels and split
      phase = M.REGISTRY[method](tctx, orig, tcfg.methods[method])
      sc = exp._evaluated(tctx, method, phase)["val"]
      sc["avg_gap"] = metrics.avg_gap(sc, ref)
      sc["diverged"] = bool(phase.outcome["diverged"])
      sc["rte_s"] = phase.outcome["rte_s"]
      val[tag(t)].append(sc)
      print(f"seed {seed} {method} {tag(t)}: val Avg. Gap {sc['avg_gap']:.2f} "
            f"(UA {sc['UA']:.1f} MIA {sc['MIA']:.1f} RA {sc['RA']:.1f} "
            f"val acc {sc['TA']:.1f})", flush=True)
  rows = []
  for t in trials:
    runs = val[tag(t)]
    row = {"setting": t, "diverged": any(r["diverged"] for r in runs)}
    for k in ("avg_gap", "UA", "MIA", "RA", "TA", "rte_s"):
      v = [r[k] for r in runs]
      row[k], row[f"{k}_std"] = float(np.mean(v)), float(np.std(v))
    rows.append(row)
  ok = [r for r in rows if not r["diverged"]] or rows
  best = min(ok, key=lambda r: r["avg_gap"])
  return {"method": method, "preset": cfg.preset, "seeds": seeds, "grid": grid,
          "selected_by": "mean validation Avg. Gap against Retrain",
          "rows": rows, "best": best["setting"]}


def table(res: dict) -> str:
  lines = ["| setting | val Avg. Gap | UA | MIA | RA | val acc | RTE (s) |",
           "|---|---|---|---|---|---|---|"]
  for r in res["rows"]:
    mark = " **(chosen)**" if r["setting"] == res["best"] else ""
    lines.append(f"| {tag(r['setting'])}{mark} | {r['avg_gap']:.2f} ± {r['avg_gap_std']:.2f} | "
                 + " | ".join(f"{r[k]:.1f}" for k in ("UA", "MIA", "RA", "TA"))
                 + f" | {r['rte_s']:.1f} |")
  return "\n".join(lines)


def main(argv=None) -> int:
  p = exp._Parser(prog="python -m experiments.tune", description=__doc__,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", default="quick")
  p.add_argument("--data_dir", default=None)
  p.add_argument("--workdir", default=None, help="default runs/tune_<preset>")
  p.add_argument("--seeds", default="1,2")
  p.add_argument("--method", required=True, help=", ".join(configs.METHODS[1:]))
  p.add_argument("--grid", action="append", default=[], help="FIELD=v1,v2 (repeatable)")
  p.add_argument("--no_progress", action="store_true")
  try:
    if exp.HOST_DEVICES_ERROR:
      raise exp.UsageError(exp.HOST_DEVICES_ERROR)
    a = p.parse_args(exp.join_negative_values(sys.argv[1:] if argv is None else list(argv)))
    if a.method not in configs.METHODS[1:]:
      raise exp.UsageError(f"--method {a.method!r}: known {', '.join(configs.METHODS[1:])}")
    try:
      seeds = [int(s) for s in a.seeds.split(",")]
    except ValueError:
      raise exp.UsageError(f"--seeds {a.seeds!r}: expected a comma list of integers") from None
    grid = parse_grid(a.grid)
    cfg = configs.get(a.preset)
    for t in settings(grid):
      configs.validate(configs.with_method(cfg, a.method, **t))
    workdir = Path(a.workdir or f"runs/tune_{a.preset}")
    data = data_lib.load(a.data_dir)
    res = tune(cfg, data, workdir, a.method, grid, seeds, progress=not a.no_progress)
    out = workdir / f"tune_{a.method}.json"
    out.write_text(json.dumps(res, indent=1))
    print(f"\n## {a.method}, seeds {a.seeds}, chosen on validation\n\n{table(res)}\n"
          f"\nwrote {out}")
    return 0
  except (exp.UsageError, *exp.USER_ERRORS) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
