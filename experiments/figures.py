"""Draw a finished run's figures again from its files (no training, no JAX).

  python -m experiments.figures experiments/results/quick_fidelity_seeds_1_2_3 --out /tmp/fig

From a workdir or a results folder:
  results.json            -> results.png   each method's signed gap to Retrain
  [seed_<s>/]<m>/history.jsonl -> curves.png  one panel a method (--seed picks
                                              which seed's phases; default the first)
  [seed_<s>/]sweep_<m>.json    -> sweep_<m>.png  validation sensitivity heatmap
(a tuning folder, with sweep_<m>.json and no results.json: the heatmaps only)

Figures go to --out (default: the folder itself); nothing else is written.

  python -m experiments.figures --docs

draws the figures the README and docs/ show (DOCS_FIGURES) from the
committed results under experiments/results/ into docs/figures/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ugradsl_jax import history, plots, report


def _seed_dir(root: Path, res: dict, seed: int | None) -> Path:
  seeds = res.get("seeds")
  if not seeds:
    return root
  s = seeds[0] if seed is None else seed
  if s not in seeds:
    raise ValueError(f"--seed {s}: the run has seeds {', '.join(map(str, seeds))}")
  return root / f"seed_{s}"


def draw(root: Path, out: Path, seed: int | None = None) -> list[Path]:
  """Every figure the files under `root` allow; returns the paths written."""
  path = root / "results.json"
  if not path.exists() and not any(root.glob("sweep_*.json")):
    raise ValueError(f"{root}: no results.json or sweep_*.json (not a finished run "
                     "or tuning)")
  out.mkdir(parents=True, exist_ok=True)
  written = []
  if not path.exists():  # a tuning folder: its sensitivity maps only
    return _sweeps(root, out)
  res = json.loads(path.read_text())
  plots.gaps(res, out / "results.png")
  written.append(out / "results.png")
  where = _seed_dir(root, res, seed)
  hists = history.of_phases(where, res["methods"])
  if hists:
    s = where.name.removeprefix("seed_") if where != root else res.get("seed")
    plots.curves(hists, out / "curves.png", f"{report.title(res)}, seed {s}")
    written.append(out / "curves.png")
  return written + _sweeps(where, out)


def _sweeps(where: Path, out: Path) -> list[Path]:
  written = []
  for sweep_file in sorted(where.glob("sweep_*.json")):
    written += plots.sweep_heatmaps(json.loads(sweep_file.read_text()),
                                    out / f"{sweep_file.stem}.png")
  return written


ROOT = Path(__file__).resolve().parent.parent
RESULTS = "experiments/results"
# name -> (kind, committed source relative to the repository root, options)
DOCS_FIGURES = {
    "cifar10_random_gaps.png": ("gaps", f"{RESULTS}/quick_all_seeds_1_2_3", {}),
    "cifar10_class_gaps.png": ("gaps", f"{RESULTS}/quick_class_all_seeds_1_2_3", {}),
    "20newsgroups_gaps.png": ("gaps", f"{RESULTS}/text_quick_all_seeds_1_2_3", {}),
    # Six panels on one loss range: the one-set baselines, the paired ones and
    # UGradSL's two forms.
    "cifar10_random_curves.png": ("curves", f"{RESULTS}/quick_all_seeds_1_2_3",
                                  {"seed": 1, "methods": ("ft", "ga", "rl", "neggrad_plus",
                                                          "ugradsl", "ugradsl_plus")}),
    "ugradsl_alpha_p_sensitivity.png": ("sweep",
                                        f"{RESULTS}/sensitivity_quick_seed4/sweep_ugradsl.json",
                                        {}),
    "ugradsl_adaptive_beta_class.png": (
        "sweep", f"{RESULTS}/tune_quick_class_45/sweep_ugradsl_adaptive.json", {}),
    "audit_cifar10_random.png": ("audit", f"{RESULTS}/audit_cifar10_random_n32/audit.json", {}),
}


def draw_docs(out: Path, root: Path = ROOT) -> list[Path]:
  """DOCS_FIGURES drawn from the committed files under `root` into `out`."""
  out.mkdir(parents=True, exist_ok=True)
  written = []
  for name, (kind, src, opt) in DOCS_FIGURES.items():
    path, target = root / src, out / name
    if kind == "sweep":
      plots.sweep_heatmap(json.loads(path.read_text()), target)
    elif kind == "audit":
      plots.audit_figure(json.loads(path.read_text()), target)
    else:
      res = json.loads((path / "results.json").read_text())
      if kind == "gaps":
        plots.gaps(res, target)
      else:
        where = _seed_dir(path, res, opt.get("seed"))
        hists = history.of_phases(where, opt["methods"])
        plots.curves(hists, target, f"{report.title(res)}, seed {opt.get('seed')}")
    written.append(target)
  return written


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m experiments.figures", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("run", nargs="?", help="a workdir or results folder holding results.json")
  p.add_argument("--docs", action="store_true",
                 help="draw the figures of the README and docs/ into docs/figures/")
  p.add_argument("--out", default=None, help="where the figures go (default: the run folder)")
  p.add_argument("--seed", type=int, default=None, help="whose curves and sweeps (multi-seed runs)")
  try:
    a = p.parse_args(argv)
    if a.docs:
      written = draw_docs(Path(a.out) if a.out else ROOT / "docs" / "figures")
    elif a.run is None:
      raise ValueError("give a run folder, or --docs")
    else:
      written = draw(Path(a.run), Path(a.out or a.run), a.seed)
    for f in written:
      print(f"wrote {f}")
    return 0
  except (ValueError, OSError, json.JSONDecodeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
