"""CIFAR-10 random (or class-wise) forgetting, end to end: flags -> table.

  python -m experiments.cifar_random_forget --data_dir ../shared/data/cifar10-jpeg.tar.gz

split -> original model -> Retrain -> each method -> evaluation -> table.
Every phase checkpoints into --workdir and is reused or resumed on rerun.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import re
import sys
import time
from pathlib import Path

from ugradsl_jax import host_devices

# Before JAX starts: split the CPU into host devices (the quick preset runs
# data-parallel over them; host_devices.py says why).
try:
  host_devices.request()
  HOST_DEVICES_ERROR = None
except ValueError as _e:
  HOST_DEVICES_ERROR = str(_e)

from ugradsl_jax import checkpoint, configs, data as data_lib, methods as M  # noqa: E402
from ugradsl_jax import metrics, parallel, split as split_lib  # noqa: E402

from . import report  # noqa: E402

USER_ERRORS = (data_lib.DataError, split_lib.SplitError, configs.ConfigError,
               checkpoint.CheckpointError, parallel.ParallelError)
METHOD_FIELDS = {"lr": float, "epochs": int, "batch_size": int, "alpha": float,
                 "p": float, "mix": str}


class UsageError(ValueError):
  pass


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, no usage dump
    raise UsageError(message)


def _float(s: str) -> float:
  try:
    return float(s)
  except ValueError:
    raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None


def parser() -> argparse.ArgumentParser:
  p = _Parser(prog="python -m experiments.cifar_random_forget",
              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--preset", default="quick", help="smoke | quick | paper (default quick)")
  p.add_argument("--data_dir", default=None,
                 help=f"CIFAR-10 image folder, .tar.gz of one, or TFDS data dir "
                      f"(default ${data_lib.DATA_ENV}, else tfds download)")
  p.add_argument("--workdir", default=None, help="default runs/<preset>")
  p.add_argument("--seed", type=int, default=1)
  p.add_argument("--seeds", default=None, help="comma list, e.g. 1,2,3: mean +- std table")
  p.add_argument("--methods", default="all",
                 help=f"comma list of {','.join(configs.METHODS)} (retrain is always run)")
  p.add_argument("--forget_fraction", type=_float, default=None)
  p.add_argument("--forget_class", type=int, default=None)
  p.add_argument("--parallel", default=None,
                 help="pmap | shard_map | none (default: the preset's; quick: shard_map)")
  p.add_argument("--num_devices", type=int, default=None,
                 help="devices for pmap / shard_map (default all local devices)")
  p.add_argument("--width", type=int, default=None)
  p.add_argument("--pretrain_epochs", type=int, default=None)
  p.add_argument("--pretrain_lr", type=_float, default=None)
  p.add_argument("--pretrain_batch_size", type=int, default=None)
  p.add_argument("--sweep_alpha", default=None,
                 help="comma list, e.g. -2,-1,-0.5,-0.2: UGradSL/UGradSL+ train all "
                      "at once (vmap) and keep the best by validation Avg. Gap")
  p.add_argument("--sweep_p", default=None, help="comma list of p, crossed with --sweep_alpha")
  p.add_argument("--no_progress", action="store_true")
  g = p.add_argument_group("per-method overrides (e.g. --ugradsl_alpha -0.5)")
  for name in configs.METHODS[1:]:
    for field, typ in METHOD_FIELDS.items():
      g.add_argument(f"--{name}_{field}", type=_float if typ is float else typ,
                     default=None, help=argparse.SUPPRESS)
  return p


def join_negative_values(argv: list[str]) -> list[str]:
  """`--sweep_alpha -2,-1` -> `--sweep_alpha=-2,-1`: argparse would take a
  value that starts with '-' and is not a plain number for an option."""
  out, i = [], 0
  while i < len(argv):
    a = argv[i]
    if a.startswith("--") and "=" not in a and i + 1 < len(argv) and \
        re.match(r"^-[0-9.]", argv[i + 1]):
      out.append(f"{a}={argv[i + 1]}")
      i += 2
    else:
      out.append(a)
      i += 1
  return out


def config_from_args(a) -> configs.Config:
  cfg = configs.get(a.preset)
  over = {}
  if a.forget_class is not None:
    over.update(forget_class=a.forget_class, forget_fraction=None)
  if a.forget_fraction is not None:
    if a.forget_class is not None:
      raise UsageError("--forget_fraction and --forget_class exclude each other")
    over["forget_fraction"] = a.forget_fraction
  if a.width is not None:
    over["width"] = a.width
  if a.parallel is not None:
    over["parallel"] = a.parallel
  if a.num_devices is not None:
    over["num_devices"] = a.num_devices
  over["seed"] = a.seed
  for flag in ("sweep_alpha", "sweep_p"):
    if getattr(a, flag):
      try:
        over[flag] = tuple(float(x) for x in getattr(a, flag).split(","))
      except ValueError:
        raise UsageError(f"--{flag} {getattr(a, flag)!r}: expected a comma list "
                         "of numbers") from None
  pre = {k: getattr(a, f"pretrain_{k}") for k in ("epochs", "lr", "batch_size")
         if getattr(a, f"pretrain_{k}") is not None}
  cfg = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, **pre), **over)
  for name in configs.METHODS[1:]:
    changes = {f: getattr(a, f"{name}_{f}") for f in METHOD_FIELDS
               if getattr(a, f"{name}_{f}") is not None}
    if changes:
      cfg = configs.with_method(cfg, name, **changes)
  configs.validate(cfg)
  for name, m in cfg.methods.items():
    if m is not None and m.mix not in M.mixing.RULES:
      raise configs.ConfigError(f"--{name}_mix {m.mix!r}: known rules "
                                f"{', '.join(M.mixing.RULES)}")
  return cfg


def parse_methods(s: str) -> list[str]:
  names = list(configs.METHODS) if s == "all" else [x.strip() for x in s.split(",") if x.strip()]
  unknown = [n for n in names if n not in configs.METHODS]
  if unknown or not names:
    raise UsageError(f"--methods: unknown {', '.join(unknown) or '(empty)'}; "
                     f"known: {', '.join(configs.METHODS)}")
  return ["retrain"] + [n for n in names if n != "retrain"]  # Avg. Gap needs Retrain


def _scores(ctx, phase: M.Phase) -> dict:
  model = ctx.model(None)
  variables = {"params": phase.state.params, "batch_stats": phase.state.batch_stats}
  out = metrics.outputs(model, variables, ctx.data, ctx.split, ctx.cfg.eval_batch,
                        ctx.par)
  return {"test": metrics.scores(out, "test"), "val": metrics.scores(out, "val")}


def _evaluated(ctx, name: str, phase: M.Phase, member: int | None = None) -> dict:
  """Scores of a finished phase, cached beside its checkpoints."""
  path = ctx.workdir / name / ("scores.json" if member is None else f"scores_{member}.json")
  if path.exists():
    cached = checkpoint.read_json(path)
    if cached.get("meta") == checkpoint.canonical(ctx.meta(name, None)) and \
        cached.get("step") == int(phase.state.step):
      return cached["scores"]
  s = _scores(ctx, phase)
  M.train.maybe_kill("eval", name)  # test hook: a kill between scoring and saving
  checkpoint.write_json(path, {"scores": s, "step": int(phase.state.step),
                               "meta": ctx.meta(name, None)})
  return s


def _sweep_row(ctx, name: str, m, orig, ref_val: dict) -> dict:
  """Train the sweep at once, score each member, keep the best on validation."""
  grid = M.sweep.grid(ctx.cfg.sweep_alpha, ctx.cfg.sweep_p, m.alpha, m.p)
  phase = M.ugradsl_sweep(ctx, orig, m, name, grid)
  k = len(grid["alpha"])
  members = M.sweep.unstack(phase.state, k)
  trials = []
  for i, st in enumerate(members):
    sc = _evaluated(ctx, f"{name}_sweep", M.Phase(st, phase.outcome), member=i)
    bad = bool(phase.outcome["nonfinite"][i])
    trials.append({"alpha": float(grid["alpha"][i]), "p": float(grid["p"][i]),
                   "diverged": bad, "val_avg_gap": metrics.avg_gap(sc["val"], ref_val),
                   "val": sc["val"], "test": sc["test"]})
  ok = [t for t in trials if not t["diverged"]] or trials
  best = min(ok, key=lambda t: t["val_avg_gap"])
  o = phase.outcome
  return {**best["test"], "rte_s": o["rte_s"], "compile_s": o["compile_s"],
          "diverged": best["diverged"], "diverged_step": None,
          "resumed_from_step": o.get("resumed_from_step"),
          "hparams": {**dataclasses.asdict(m), "alpha": best["alpha"], "p": best["p"]},
          "val": best["val"],
          "sweep": [{k2: t[k2] for k2 in ("alpha", "p", "diverged", "val_avg_gap")}
                    for t in trials],
          "note": f"best of a {k}-setting vmapped sweep by validation Avg. Gap; "
                  "RTE is for all settings together"}


def preflight(ctx, names: list[str]) -> None:
  """Refuse a mismatched workdir before anything is trained or written."""
  for name in ["original"] + names:
    d = ctx.workdir / name
    if d.exists():
      recipe = ctx.cfg.pretrain if name in ("original", "retrain") else ctx.cfg.methods[name]
      checkpoint.PhaseStore(d, ctx.meta(name, recipe)).close()


def context(cfg: configs.Config, data, workdir: Path | None,
            progress: bool = True) -> M.Context:
  """The split, parallel mode and workdir one seed's phases share."""
  split = split_lib.make_split(
      data.train_y, len(data.test_y), seed=cfg.seed, val_fraction=cfg.val_fraction,
      forget_fraction=cfg.forget_fraction, forget_class=cfg.forget_class,
      train_per_class=cfg.train_per_class, test_size=cfg.test_size,
      test_labels=data.test_y)
  par = parallel.make(cfg.parallel, cfg.num_devices)
  return M.Context(cfg=cfg, data=data, split=split, par=par,
                   workdir=None if workdir is None else Path(workdir),
                   progress=progress)


def run(cfg: configs.Config, data_dir, workdir: Path, names: list[str],
        progress: bool = True, data=None) -> dict:
  """One seed of the protocol. Returns (and writes) the results dict."""
  t_start = time.perf_counter()
  workdir = Path(workdir)
  data = data if data is not None else data_lib.load(data_dir)
  ctx = context(cfg, data, workdir, progress)
  split = ctx.split
  ctx.par.check_batch(cfg.pretrain.batch_size, "pretrain batch size")
  for n in names[1:]:
    ctx.par.check_batch(cfg.methods[n].batch_size, f"--{n}_batch_size")
  preflight(ctx, names)
  checkpoint.write_json(workdir / "config.json",
                        {"config": cfg.to_dict(), "data": data.source,
                         "split_sizes": split.sizes()})

  orig = M.original(ctx)
  rows, scores = {}, {}
  for name in names:
    m = cfg.methods[name]
    if (cfg.sweep_alpha or cfg.sweep_p) and name in ("ugradsl", "ugradsl_plus"):
      rows[name] = _sweep_row(ctx, name, m, orig, rows["retrain"]["val"])
      continue
    phase = M.REGISTRY[name](ctx, orig, m)
    scores[name] = _evaluated(ctx, name, phase)
    o = phase.outcome
    rows[name] = {**scores[name]["test"], "rte_s": o["rte_s"], "compile_s": o["compile_s"],
                  "diverged": o["diverged"], "diverged_step": o["diverged_step"],
                  "resumed_from_step": o.get("resumed_from_step"),
                  "hparams": dataclasses.asdict(m) if m else dataclasses.asdict(cfg.pretrain),
                  "val": scores[name]["val"]}
  ref, ref_val = rows["retrain"], rows["retrain"]["val"]
  for name, r in rows.items():
    r["avg_gap"] = metrics.avg_gap(r, ref)
    r["val"]["avg_gap"] = metrics.avg_gap(r["val"], ref_val)
  o_scores = _evaluated(ctx, "original", orig)
  res = {"dataset": data.source, "preset": cfg.preset, "seed": cfg.seed,
         "methods": rows, "original": o_scores["test"],
         "config": cfg.to_dict(), "split_sizes": split.sizes(),
         "machine": report.machine(),
         "date": datetime.date.today().isoformat(),
         "wall_s": time.perf_counter() - t_start}  # this invocation, evaluation included
  report.write(res, workdir)
  return res


def main(argv=None) -> int:
  try:
    if HOST_DEVICES_ERROR:
      raise UsageError(HOST_DEVICES_ERROR)
    argv = sys.argv[1:] if argv is None else list(argv)
    a = parser().parse_args(join_negative_values(argv))
    cfg = config_from_args(a)
    names = parse_methods(a.methods)
    workdir = Path(a.workdir or f"runs/{cfg.preset}")
    if a.seeds:
      try:
        seeds = [int(s) for s in a.seeds.split(",")]
      except ValueError:
        raise UsageError(f"--seeds {a.seeds!r}: expected a comma list of integers") from None
    else:
      seeds = [a.seed]
    data = data_lib.load(a.data_dir)
    runs = []
    for s in seeds:
      wd = workdir if len(seeds) == 1 else workdir / f"seed_{s}"
      runs.append(run(dataclasses.replace(cfg, seed=s), None, wd, names,
                      progress=not a.no_progress, data=data))
      print(f"\n## seed {s}\n\n" + report.table(runs[-1]["methods"]))
    final = runs[0]
    if len(runs) > 1:
      final = report.aggregate(runs)
      report.write(final, workdir)
      print("\n## mean ± std over seeds " + ",".join(map(str, seeds)) + "\n\n" +
            report.table(final["methods"], final["stds"]))
    print(f"\nwrote {workdir}/results.json, results.md, results.png")
    return 0
  except (UsageError, *USER_ERRORS) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("interrupted; rerun the same command to resume", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
