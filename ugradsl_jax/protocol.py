"""The protocol, end to end, for any cell of the grid:

  split -> original model -> Retrain -> each method -> scores -> results dict

  run_seed(cfg, data, workdir, names)       one seed; writes results.json/.md/.png
  run(cfg, data, workdir, names, seeds)     several seeds and their mean +- std

The file reads in that order: several seeds, one seed, the experiment's
set-up and checks, scores and rows, and what the results record besides.
Choosing values on validation is tuning.py; a table's cost estimate, budget.py.

`data` is the Dataset as loaded (datasets.load); the scenario decides which
labels the model trains on (the sub-class scenario: CIFAR-100's coarse ones)
and which images are forgotten. Every phase checkpoints into its directory
under `workdir` and is reused or resumed on rerun.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import (budget, checkpoint, configs, datasets, distributed, experiment, history, loop,
               methods, metrics, parallel, phases, plots, report, split as split_lib, sweep)
from . import workdir as workdir_lib
from .experiment import Experiment
from .phases import Phase, Runner

USER_ERRORS = (datasets.DataError, split_lib.SplitError, configs.ConfigError,
               checkpoint.CheckpointError, parallel.ParallelError, workdir_lib.WorkdirBusy)


# --------------------------------------------------------------------------
# Several seeds, then one seed end to end.

def run(cfg: configs.Config, data: datasets.Dataset, workdir: Path, names: list[str],
        seeds: list[int] | None = None, progress: bool = True,
        on_seed: Callable[[dict], None] | None = None) -> dict:
  """Every seed (into workdir/seed_<s> when there are several), then the
  mean +- std across them, written to workdir. Returns the final dict."""
  seeds = seeds or [cfg.seed]
  workdir = Path(workdir)
  runs = []
  for s in seeds:
    wd = workdir if len(seeds) == 1 else workdir / f"seed_{s}"
    runs.append(run_seed(dataclasses.replace(cfg, seed=s), data, wd, names, progress))
    if on_seed is not None:
      on_seed(runs[-1])
  if len(runs) == 1:
    return runs[0]
  final = report.aggregate(runs)
  report.write(final, workdir)
  plots.write_figure(final, workdir)
  return final


def run_seed(cfg: configs.Config, data: datasets.Dataset, workdir: Path,
             names: list[str], progress: bool = True) -> dict:
  """One seed of the protocol. Returns (and writes) the results dict."""
  t_start = time.perf_counter()
  names = configs.check_methods(names, with_retrain=not cfg.no_retrain)
  workdir = Path(workdir)
  exp = setup(cfg, data)
  split = exp.split
  preflight(exp, workdir, names)
  # One run at a time: a second is refused, not interleaved. Taken after
  # every check, so that a refused run leaves no workdir behind.
  workdir_lib.lock(workdir)
  runner = Runner(workdir, progress, budget.cpu_probe(cfg, split, names))
  checkpoint.write_json(workdir / "config.json",
                        {"config": cfg.to_dict(), "data": data.source,
                         "split_sizes": split.sizes()})
  if distributed.is_primary():
    split_lib.save(split, workdir / "split.npz")

  orig = phases.run(exp, runner, methods.original(exp))
  rows = {}
  for name in names:
    m = cfg.methods[name]
    if configs.sweeping(cfg, name):
      rows[name] = sweep_row(exp, runner, name, m, orig, rows["retrain"]["val"])
      continue
    phase = phases.run(exp, runner, methods.REGISTRY[name](exp, orig, m))
    rows[name] = _row(phase, evaluated(exp, runner, name, phase),
                      dataclasses.asdict(m) if m else dataclasses.asdict(cfg.pretrain))
  if "retrain" in rows:
    ref, ref_val = rows["retrain"], rows["retrain"]["val"]
    for name, r in rows.items():
      r["avg_gap"] = metrics.avg_gap(r, ref)
      r["val"]["avg_gap"] = metrics.avg_gap(r["val"], ref_val)
  o_scores = evaluated(exp, runner, "original", orig)
  draw_curves(workdir, names, f"{report.title(_cell(cfg))}, seed {cfg.seed}")
  res = {"dataset": cfg.dataset, "scenario": cfg.scenario, "model": cfg.model,
         "num_classes": exp.data.num_classes, "forgotten": forgotten(cfg, data),
         "source": data.source, "preset": cfg.preset, "seed": cfg.seed,
         "methods": rows, "original": o_scores["test"],
         "config": cfg.to_dict(), "provenance": provenance(cfg),
         "split_sizes": split.sizes(),
         "machine": report.machine(),
         "date": datetime.date.today().isoformat(),
         "wall_s": time.perf_counter() - t_start}  # this invocation, evaluation included
  report.write(res, workdir)
  plots.write_figure(res, workdir)
  return res


# --------------------------------------------------------------------------
# The experiment: split, labels, devices; refusing what cannot run.

def setup(cfg: configs.Config, data: datasets.Dataset) -> Experiment:
  """The split, labels, parallel mode and device data one seed's phases share."""
  configs.validate(cfg)
  split, view = labelled(cfg, data)
  par = parallel.make(cfg.parallel, cfg.num_devices)
  return experiment.make(cfg, view, split, par)


def labelled(cfg: configs.Config, data: datasets.Dataset) -> tuple:
  """(the split, the data set labelled as the model is trained).

  Strata are the fine classes; the sub-class scenario trains on coarse labels
  and forgets one fine class, given by name (or by its index).
  """
  if data.name != cfg.dataset:
    raise configs.ConfigError(f"--dataset {cfg.dataset}: the data given are {data.name}")
  view, forget = data, tuple(cfg.forget_classes)
  if cfg.scenario == "subclass":
    if data.train_coarse is None:
      raise configs.ConfigError(
          f"--scenario subclass needs a data set with coarse labels (cifar100); "
          f"--dataset {cfg.dataset} has none")
    names = list(data.class_names)
    sub = cfg.forget_subclass
    if sub in names:
      forget = (names.index(sub),)
    elif sub.isdigit() and int(sub) < len(names):
      forget = (int(sub),)
    else:
      raise configs.ConfigError(f"--forget_subclass {sub!r}: not a fine class of "
                                f"{cfg.dataset} (e.g. {', '.join(names[:3])}, ...)")
    view = data.coarse()
  split = split_lib.make_split(
      data.train_y, len(data.test_y), seed=cfg.seed, scenario=cfg.scenario,
      val_fraction=cfg.val_fraction, forget_fraction=cfg.forget_fraction,
      forget_classes=forget, train_per_class=cfg.train_per_class,
      test_size=cfg.test_size, test_strata=data.test_y,
      forget_indices=None if cfg.forget_indices is None else
      read_indices(cfg.forget_indices))
  return split, view


def read_indices(path) -> np.ndarray:
  """--forget_indices: a .npy of integers (or an .npz holding "forget")."""
  try:
    a = np.load(path, allow_pickle=False)
    if isinstance(a, np.lib.npyio.NpzFile):
      if "forget" not in a:
        raise configs.ConfigError(f"--forget_indices {path}: the .npz has no 'forget' array")
      a = a["forget"]
  except (OSError, ValueError) as e:
    raise configs.ConfigError(f"--forget_indices {path}: unreadable ({e})") from None
  return np.asarray(a)


def preflight(exp: Experiment, workdir: Path | None, names: list[str]) -> None:
  """Refuse a bad config for these methods, a mismatched workdir, or a
  batch the devices cannot split, before anything is trained or written."""
  cfg = exp.cfg
  configs.validate(cfg, names)
  if "boundary_shrink" in names and exp.data.modality != "image":  # a user's data set
    raise configs.ConfigError("boundary_shrink perturbs images (uint8 pixel levels); "
                              f"--dataset {cfg.dataset} holds token ids")
  exp.par.check_batch(cfg.pretrain.batch_size, "pretrain batch size")
  for n in names:
    if cfg.methods.get(n) is not None:
      exp.par.check_batch(cfg.methods[n].batch_size, f"--{n}_batch_size")
  if workdir is None:
    return
  workdir = Path(workdir)
  for flag, name in (("--init_checkpoint", "original"), ("--retrain_from", "retrain")):
    if getattr(cfg, flag[2:]) and (workdir / name / checkpoint.OUTCOME).exists():
      raise configs.ConfigError(
          f"{flag}: {workdir} trained its own {name} model already, and its other "
          "phases started from it; use a new --workdir")
  for name in ["original"] + names:
    d = workdir / name
    if name == "original" and cfg.init_checkpoint or name == "retrain" and cfg.retrain_from:
      continue  # read, not trained here
    if d.exists() and not configs.sweeping(cfg, name):  # a sweep trains in <name>_sweep
      recipe = cfg.pretrain if name in ("original", "retrain") else cfg.methods[name]
      meta = exp.meta(name, recipe)
      if name == "boundary_expanding":  # it trains the head with its shadow class
        meta["num_classes"] += 1
      checkpoint.PhaseStore(d, meta).close()


# --------------------------------------------------------------------------
# Scores and table rows.

def evaluated(exp: Experiment, runner: Runner, name: str, phase: Phase,
              member: int | None = None) -> dict:
  """Scores of a finished phase, cached beside its checkpoints."""
  if runner.workdir is None:
    return scores(exp, phase)
  path = runner.workdir / name / ("scores.json" if member is None else f"scores_{member}.json")
  key = _scores_key(exp, name)
  if path.exists():
    cached = checkpoint.read_json(path)
    if cached.get("meta") == checkpoint.canonical(key) and \
        cached.get("step") == int(phase.state.step):
      return cached["scores"]
  s = scores(exp, phase)
  loop.notify("scored", name)  # before saving: a plugin (the tests' kill switch) may act
  checkpoint.write_json(path, {"scores": s, "step": int(phase.state.step), "meta": key})
  return s


def scores(exp: Experiment, phase: Phase) -> dict:
  """Test-set and validation-set scores of a phase's model."""
  model = exp.model(None)
  variables = {"params": phase.state.params, "batch_stats": phase.state.batch_stats}
  out = metrics.outputs(model, variables, exp.data, exp.split, exp.cfg.eval_batch,
                        exp.par)
  return {"test": metrics.scores(out, "test"), "val": metrics.scores(out, "val")}


def _scores_key(exp: Experiment, name: str) -> dict:
  """What a phase's scores depend on beyond its checkpoint: the MIA members
  (scores cached before they were drawn at random are recomputed)."""
  members = np.ascontiguousarray(exp.split.mia_members, np.int64).tobytes()
  return {**exp.meta(name, None),
          "mia_members": hashlib.sha256(members).hexdigest()[:16]}


def _row(phase: Phase, sc: dict, hparams) -> dict:
  o = phase.outcome
  if o.get("no_finite_step"):
    # Diverged on its first step: its parameters are the starting model's,
    # whose scores must not stand in this method's row.
    sc = {part: {k: None for k in v} for part, v in sc.items()}
  return {**sc["test"], **phases.cost(o),
          "diverged": o["diverged"], "diverged_step": o["diverged_step"],
          "resumed_from_step": o.get("resumed_from_step"),
          "hparams": hparams, "val": sc["val"]}


def sweep_row(exp: Experiment, runner: Runner, name: str, m, orig: Phase,
              ref_val: dict) -> dict:
  """Train the sweep at once, score each member, keep the best on validation."""
  cfg = exp.cfg
  betas = cfg.sweep_beta if m.alpha_mode == "adaptive" else None
  grid = sweep.grid(cfg.sweep_alpha, cfg.sweep_p, m.alpha, m.p, betas, m.beta,
                    mix=cfg.sweep_mix)
  phase = phases.run(exp, runner, methods.ugradsl_sweep(exp, orig, m, name, grid))
  k = len(grid["alpha"])
  members = sweep.unstack(phase.state, k)
  base = ("alpha", "p", "beta") if m.alpha_mode == "adaptive" else ("alpha", "p")
  mix_keys = tuple(cfg.sweep_mix or ())
  keys = base + mix_keys
  trials = []
  for i, st in enumerate(members):
    sc = evaluated(exp, runner, f"{name}_sweep", Phase(st, phase.outcome), member=i)
    bad = bool(phase.outcome["nonfinite"][i])
    trials.append({**{a: float(grid[a][i]) for a in keys},
                   "diverged": bad, "val_avg_gap": metrics.avg_gap(sc["val"], ref_val),
                   "val": sc["val"], "test": sc["test"]})
  ok = [t for t in trials if not t["diverged"]] or trials
  best = min(ok, key=lambda t: t["val_avg_gap"])
  chosen = {a: best[a] for a in keys}
  if runner.workdir is not None:
    # The sensitivity map: validation scores only (the test set chooses nothing).
    smap = {"method": name, "title": f"{report.title(_cell(cfg))}, seed {cfg.seed}",
             "alpha_mode": m.alpha_mode, "seed": cfg.seed,
             "axes": {a: sorted(set(float(v) for v in grid[a])) for a in keys},
             "trials": [{kk: t[kk] for kk in (*keys, "diverged", "val_avg_gap", "val")}
                        for t in trials],
             "chosen": chosen, "selected_by": "validation Avg. Gap against Retrain"}
    checkpoint.write_json(runner.workdir / f"sweep_{name}.json", smap)
    if distributed.is_primary():
      plots.sweep_heatmaps(smap, runner.workdir / f"sweep_{name}.png")
  c = phases.cost(phase.outcome)
  return {**best["test"], **c,
          # RTE per setting, comparable with a single run's; the whole sweep's apart.
          "rte_s": c["rte_s"] / k, "rte_total_s": c["rte_s"],
          "diverged": best["diverged"], "diverged_step": None,
          "resumed_from_step": phase.outcome.get("resumed_from_step"),
          "hparams": {**dataclasses.asdict(m), **{a: chosen[a] for a in base},
                      "mix_hparams": {**m.mix_hparams, **{a: chosen[a] for a in mix_keys}}},
          "val": best["val"], "selected_in_run": True, "sweep_size": k,
          "sweep": [{k2: t[k2] for k2 in (*keys, "diverged", "val_avg_gap")}
                    for t in trials],
          "note": f"selected in-run: the best of a {k}-setting vmapped sweep by "
                  "validation Avg. Gap on the reported seed, whose forget and retain "
                  "sets are also the test's; rte_s is per setting, rte_total_s all "
                  "settings together"}


# --------------------------------------------------------------------------
# What the results record beside the rows.

def provenance(cfg: configs.Config) -> dict:
  """What produced a run: the code, package versions and device
  (`report.environment`), and where the parts the run did not make itself
  came from."""
  out = report.environment()
  if cfg.init_checkpoint:
    out["init_checkpoint"] = cfg.init_checkpoint
  if cfg.forget_indices:
    idx = np.ascontiguousarray(read_indices(cfg.forget_indices), np.int64)
    out["forget_indices"] = {"path": cfg.forget_indices, "count": int(len(idx)),
                             "sha256": hashlib.sha256(idx.tobytes()).hexdigest()[:16]}
  if cfg.retrain_from:
    out["retrain_from"] = cfg.retrain_from
  if cfg.no_retrain:
    out["no_retrain"] = True
  return out


def forgotten(cfg: configs.Config, data: datasets.Dataset) -> str | None:
  """What the class / sub-class scenario forgets, in words (None: random)."""
  if cfg.scenario == "class":
    return "class " + ", ".join(f"{c} ({data.class_names[c]})"
                                for c in cfg.forget_classes)
  if cfg.scenario == "subclass":
    return f"sub-class {cfg.forget_subclass}"
  return None


def _cell(cfg: configs.Config) -> dict:
  return {"dataset": cfg.dataset, "scenario": cfg.scenario, "model": cfg.model,
          "preset": cfg.preset}


def draw_curves(workdir: Path, names: list[str], title: str) -> dict:
  """curves.png from each method's history.jsonl (a sweep has none: its K
  runs are K curves). Returns the histories drawn."""
  if not distributed.is_primary():  # process 0 draws, from the files it wrote
    return {}
  hists = history.of_phases(workdir, names)
  if hists:
    plots.curves(hists, Path(workdir) / "curves.png", title)
  return hists
