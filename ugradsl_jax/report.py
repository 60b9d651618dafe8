"""results.json / results.md / results.png for one seed or a mean +- std over seeds."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np

from . import distributed, files


COLS = (("UA", "UA"), ("MIA", "MIA-Efficacy"), ("RA", "RA"), ("TA", "TA"),
        ("avg_gap", "Avg. Gap"), ("rte_s", "RTE (s)"), ("compile_s", "compile (s)"))
# Class-wise and sub-class forgetting add the forgotten classes' test accuracy.
FORGOTTEN = ("forgotten_test_acc", "forgotten TA")
SCENARIO_TITLE = {"random": "random forgetting", "class": "class-wise forgetting",
                  "subclass": "sub-class forgetting"}
PRETTY = {"retrain": "Retrain", "ft": "FT", "ga": "GA", "rl": "RL",
          "l1_sparse": "l1-sparse", "salun": "SalUn", "neggrad_plus": "NegGrad+",
          "ugradsl": "UGradSL", "ugradsl_plus": "UGradSL+",
          "ugradsl_adaptive": "UGradSL-adaptive",
          "ugradsl_plus_adaptive": "UGradSL+-adaptive", "iu": "IU",
          "boundary_shrink": "Boundary Shrink", "ssd": "SSD", "scrub": "SCRUB",
          "boundary_expanding": "Boundary Expanding"}


def machine() -> str:
  """What produced the numbers: accelerator kind, or CPU model and cores."""
  import jax
  d = jax.devices()[0]
  procs = f", {jax.process_count()} processes" if jax.process_count() > 1 else ""
  if d.platform != "cpu":
    return f"{jax.device_count()} x {d.device_kind}{procs}"
  model = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      model = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  if procs:
    return f"{model}, {os.cpu_count()} cores{procs}, {jax.device_count()} devices (CPU)"
  return f"{model}, {os.cpu_count()} cores (CPU)"


PACKAGES = ("ugradsl-jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def git_commit(where: Path | None = None) -> dict | None:
  """The commit of the checkout holding this package and whether its tracked
  files differ from it; None outside a git checkout (an installed wheel)."""
  where = Path(where or Path(__file__).resolve().parent)
  def git(*args):
    return subprocess.run(("git", "-C", str(where), *args), capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()
  try:
    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
  except (OSError, subprocess.SubprocessError):
    return None
  return {"commit": commit, "dirty": dirty}


def environment() -> dict:
  """The code, the package versions and the device behind a run's numbers."""
  import jax
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      versions[name] = None
  d = jax.devices()[0]
  return {"git": git_commit(), "packages": versions, "platform": d.platform,
          "device_kind": d.device_kind, "device_count": jax.device_count(),
          "process_count": jax.process_count(), "machine": machine()}


def _fmt(v, std=None):
  if v is None:
    return "-"
  return f"{v:.2f}" if std is None else f"{v:.2f} ± {std:.2f}"


def _cols(methods: dict) -> tuple:
  if any(FORGOTTEN[0] in r for r in methods.values()):
    return COLS[:4] + (FORGOTTEN,) + COLS[4:]
  return COLS


def table(methods: dict, stds: dict | None = None) -> str:
  cols = _cols(methods)
  head = "| Method | " + " | ".join(c for _, c in cols) + " |"
  lines = [head, "|" + "---|" * (len(cols) + 1)]
  for name, r in methods.items():
    label = PRETTY.get(name, name)
    if r.get("diverged") and r.get("UA") is None:
      label += f" (diverged at step {r.get('diverged_step')}: no finite model to score)"
    elif r.get("diverged"):
      label += (f" (diverged at step {r.get('diverged_step')}; scored at its last "
                "finite parameters)")
    elif r.get("n_diverged"):
      label += f" ({r['n_diverged']} seed(s) diverged)"
    if r.get("selected_in_run"):
      label += f" (selected in-run of {r['sweep_size']})"
    cells = [_fmt(r.get(k), (stds or {}).get(name, {}).get(k)) for k, _ in cols]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def title(res: dict) -> str:
  """Data set, scenario, model and preset, for tables and figures."""
  scen = SCENARIO_TITLE.get(res.get("scenario", "random"), res.get("scenario"))
  what = res.get("forgotten")
  return (f"{res.get('dataset', '?')}, {scen}{f' ({what})' if what else ''}, "
          f"{res.get('model', '?')}, preset {res['preset']}")


def markdown(res: dict) -> str:
  seeds = res.get("seeds", [res.get("seed")])
  parts = [f"# {title(res)}", "",
           f"Data: {res.get('source', '?')}; the model has {res.get('num_classes', '?')} "
           "output classes.", "",
           f"Seed(s): {', '.join(map(str, seeds))}. Machine: {res.get('machine', '?')}. "
           f"Date: {res.get('date', '?')}. Split sizes: {res.get('split_sizes')}.", ""]
  env = res.get("provenance", {})
  if env.get("packages"):
    git = env.get("git") or {}
    code = (f"commit {git['commit'][:10]}" + (" (with uncommitted changes)" if git["dirty"]
                                              else "")) if git else "not a git checkout"
    parts += [f"Code: {code}; " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()
                                            if v) + ".", ""]
  if "stds" in res:
    parts.append("Mean ± std over seeds. Avg. Gap is against Retrain of the same seed.")
    parts.append("")
  if "retrain" not in res["methods"]:
    parts += ["No Retrain in this run (--no_retrain): no Avg. Gap.", ""]
  parts.append(table(res["methods"], res.get("stds")))
  if "original" in res:
    o, os_ = res["original"], res.get("original_std", {})
    f = lambda k: _fmt(o[k], os_.get(k))  # noqa: E731
    held = f", forgotten TA {f('forgotten_test_acc')}" if "forgotten_test_acc" in o else ""
    parts += ["", f"Original model (before unlearning): UA {f('UA')}, "
              f"MIA {f('MIA')}, RA {f('RA')}, TA {f('TA')}{held}."]
  swept = [(n, r) for n, r in res["methods"].items() if r.get("selected_in_run")]
  for n, r in swept:
    parts += ["", f"{PRETTY.get(n, n)}: selected in-run, the best of {r['sweep_size']} "
              "settings trained at once by validation Avg. Gap on this seed. UA and RA "
              "read the same forget and retain sets in validation and test, so half of "
              "the criterion is the reported number: not comparable with the fixed "
              f"recipes of the other rows. RTE {_fmt(r.get('rte_s'))} s a setting, "
              f"{_fmt(r.get('rte_total_s'))} s for all {r['sweep_size']} together."]
  parts += ["", "UA = 100 - forget accuracy; MIA = MIA-Efficacy; RA/TA = retain/test "
            "accuracy (%). RTE = unlearning wall-clock (SalUn: with its saliency "
            "mask) without evaluation, compilation or the loop's checkpoint saves; "
            "compile is reported apart, saves in results.json (io_s). MIA members: "
            "a seeded random sample of the retain set. Std: sample (ddof=1)."]
  if res.get("scenario") == "class":
    parts.append("Class-wise: the test set (TA, MIA non-members) leaves the forgotten "
                 "classes out; forgotten TA is the accuracy on their test images.")
  elif res.get("scenario") == "subclass":
    parts.append("Sub-class: labels are the 20 superclasses; forgotten TA is the "
                 "superclass accuracy on the forgotten fine class's test images "
                 "(they stay in the test set).")
  parts += ["",
            "## Config", "", "```json", json.dumps(res.get("config"), indent=1,
                                                   sort_keys=True), "```", ""]
  return "\n".join(parts)


def write(res: dict, workdir: Path) -> None:
  """results.json and .md (process 0 of a multi-process job only); the
  figure beside them is plots.write_figure's."""
  if not distributed.is_primary():
    return
  from .checkpoint import write_json  # here: tables import no JAX
  workdir = Path(workdir)
  write_json(workdir / "results.json", res)
  files.write_text(workdir / "results.md", markdown(res))


def mean_std(values) -> tuple[float, float]:
  """Mean and *sample* std (ddof=1; 0.0 for one value): the one convention of
  every table and figure here."""
  v = np.asarray(values, float)
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def aggregate(runs: list[dict]) -> dict:
  """Mean and sample std across seeds, method by method. Each seed's
  methods, original model and wall time are kept (per_seed, original_per_seed,
  wall_s_per_seed), so every figure quoted from it has its numbers here."""
  first = runs[0]
  methods, stds = {}, {}
  for name in first["methods"]:
    rows = [r["methods"][name] for r in runs if name in r["methods"]]
    methods[name], stds[name] = {}, {}
    for k, _ in COLS + (FORGOTTEN,) + (("mask_s", ""), ("io_s", ""), ("rte_total_s", "")):
      vals = [row[k] for row in rows if row.get(k) is not None]
      if vals:
        methods[name][k], stds[name][k] = mean_std(vals)
    methods[name]["n_diverged"] = int(sum(bool(row.get("diverged")) for row in rows))
    methods[name]["hparams"] = rows[0].get("hparams")
    if rows[0].get("selected_in_run"):
      methods[name].update(selected_in_run=True, sweep_size=rows[0]["sweep_size"])
  out = {k: v for k, v in first.items()
         if k not in ("methods", "seed", "original", "wall_s")}
  originals = [r["original"] for r in runs if "original" in r]
  out.update(seeds=[r["seed"] for r in runs], methods=methods, stds=stds,
             per_seed={str(r["seed"]): r["methods"] for r in runs},
             original_per_seed={str(r["seed"]): r.get("original") for r in runs},
             wall_s_per_seed={str(r["seed"]): r.get("wall_s") for r in runs})
  if originals:
    out["original"] = {k: mean_std([o[k] for o in originals])[0] for k in originals[0]}
    out["original_std"] = {k: mean_std([o[k] for o in originals])[1] for k in originals[0]}
  return out
