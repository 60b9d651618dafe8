"""Any cell of the grid, end to end: flags -> Config -> protocol.run -> table.

  python -m experiments.unlearn --dataset cifar100 --scenario subclass \\
      --forget_subclass rocket --model resnet18 --preset quick \\
      --data_dir path/to/cifar100 --workdir runs/c100_rocket

split -> original model -> Retrain -> each method -> evaluation -> table.
Every phase checkpoints into --workdir and is reused or resumed on rerun.
--scenario defaults to what the forget flags say: --forget_class -> class,
--forget_subclass -> subclass, else random.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import traceback
from pathlib import Path

from ugradsl_jax import host_devices

# Before JAX starts: split the CPU into host devices (the quick preset runs
# data-parallel over them; host_devices.py says why). This module is an
# entry point; no library module touches XLA_FLAGS.
try:
  host_devices.request()
  HOST_DEVICES_ERROR = None
except ValueError as _e:
  HOST_DEVICES_ERROR = str(_e)

from ugradsl_jax import (configs, datasets, distributed, mixing, protocol, report,  # noqa: E402,F401
                         xla_cache)

USER_ERRORS = (*protocol.USER_ERRORS, distributed.DistributedError)


class UsageError(ValueError):
  pass


class Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, no usage dump
    raise UsageError(message)


def _float(s: str) -> float:
  try:
    return float(s)
  except ValueError:
    raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None


def parser(prog: str = "python -m experiments.unlearn", grid_flags: bool = True,
           doc: str = __doc__) -> argparse.ArgumentParser:
  p = Parser(prog=prog, description=doc,
             formatter_class=argparse.RawDescriptionHelpFormatter)
  if grid_flags:
    p.add_argument("--dataset", default=None,
                   help=", ".join(datasets.NAMES) + " (default cifar10)")
    p.add_argument("--model", default=None,
                   help=", ".join(configs.MODELS) + " (default resnet18)")
    p.add_argument("--scenario", default=None,
                   help="random | class | subclass (default: from the forget flags)")
    p.add_argument("--forget_subclass", default=None,
                   help="subclass: a CIFAR-100 fine class, e.g. rocket")
    p.add_argument("--depth", type=int, default=None, help="ViT blocks")
  p.add_argument("--preset", default=None, help="smoke | quick | paper | audit (default quick)")
  p.add_argument("--config", default=None,
                 help="a run's config.json to replay (other flags given override it)")
  p.add_argument("--import", dest="imports", action="append", default=[],
                 metavar="MODULE",
                 help="import MODULE first, e.g. one that registers a mixing rule "
                      "(repeatable; run from the folder that holds it)")
  p.add_argument("--data_dir", default=None,
                 help=f"image folder, .tar.gz of one, or TFDS data dir "
                      f"(default ${datasets.DATA_ENV}, else tfds download)")
  p.add_argument("--workdir", default=None, help="default runs/<preset>")
  p.add_argument("--seed", type=int, default=None, help="default 1")
  p.add_argument("--seeds", default=None, help="comma list, e.g. 1,2,3: mean +- std table")
  p.add_argument("--methods", default="default",
                 help="comma list of " + ",".join(configs.METHODS) + "; default: "
                      + ",".join(configs.DEFAULT_METHODS) + " (the UGradSL paper's rows); "
                      "all: every method (retrain is always run)")
  p.add_argument("--forget_fraction", type=_float, default=None)
  p.add_argument("--forget_class", default=None,
                 help="class-wise forgetting: a class label or a comma list, e.g. 3,5")
  p.add_argument("--parallel", default=None,
                 help="pmap | shard_map | none (default: the preset's; quick: shard_map)")
  p.add_argument("--num_devices", type=int, default=None,
                 help="devices for pmap / shard_map (default all local devices)")
  p.add_argument("--width", type=int, default=None)
  p.add_argument("--dtype", default=None,
                 help="float32 | bfloat16: compute dtype (params and optimizer "
                      "state stay float32; default float32)")
  s = p.add_argument_group(
      "starting from what you have (each skips a phase; recorded in results.json's config)")
  s.add_argument("--init_checkpoint", default=None, metavar="DIR",
                 help="the original model from a checkpoint instead of pretraining: a "
                      "workdir's original/ or an Orbax checkpoint of params (or of "
                      "{params, batch_stats})")
  s.add_argument("--forget_indices", default=None, metavar="FILE.npy",
                 help="the forget set as indices into the training set, instead of "
                      "the seeded draw (e.g. a workdir's split.npz 'forget')")
  s.add_argument("--retrain_from", default=None, metavar="DIR",
                 help="reuse the Retrain of another run of the same split (its "
                      "workdir or its retrain/)")
  s.add_argument("--no_retrain", action="store_true",
                 help="no Retrain: the table has no Avg. Gap")
  p.add_argument("--sweep_alpha", default=None,
                 help="comma list, e.g. -2,-1,-0.5,-0.2: UGradSL/UGradSL+ train all "
                      "at once (vmap) and keep the best by validation Avg. Gap")
  p.add_argument("--sweep_p", default=None, help="comma list of p, crossed with --sweep_alpha")
  p.add_argument("--sweep_beta", default=None,
                 help="comma list of beta (adaptive alpha_mode), crossed with the others")
  p.add_argument("--sweep_mix", action="append", default=[], metavar="NAME=v1,v2",
                 help="values of the mixing rule's own hyper-parameter NAME, crossed "
                      "with the others (repeatable, one NAME each)")
  p.add_argument("--no_progress", action="store_true")
  p.add_argument("--passes", default=None,
                 help="two | one | auto: the paired step's two batches in two passes "
                      "or one vmapped pass (default two; same results)")
  p.add_argument("--compile_cache", default=None,
                 help="folder of JAX's persistent compilation cache, or off "
                      f"(default ${xla_cache.ENV}, else ~/.cache/ugradsl_jax/xla)")
  j = p.add_argument_group(
      "a job over several processes (one per host: TPU pod slice, GPU nodes); "
      "every process runs the same command with its own --process_id")
  j.add_argument("--coordinator_address", default=None,
                 help="HOST:PORT of process 0, reachable from every process")
  j.add_argument("--num_processes", type=int, default=None)
  j.add_argument("--process_id", type=int, default=None)
  j.add_argument("--distributed", default=None,
                 help="auto: let jax.distributed.initialize() detect the job "
                      "(TPU VM, SLURM) instead of the three flags above")
  j.add_argument("--heartbeat_timeout", type=int, default=distributed.HEARTBEAT_TIMEOUT_S,
                 help="seconds without a peer's heartbeat before every process stops "
                      f"(default {distributed.HEARTBEAT_TIMEOUT_S})")
  g = p.add_argument_group("pretraining (the original model and Retrain)")
  for field, (typ, what) in configs.TRAIN_FIELD_SPECS.items():
    g.add_argument(f"--pretrain_{field}", type=_typed(typ), default=None, help=what)
  for name in configs.METHODS[1:]:
    g = p.add_argument_group(f"{name}: its recipe (default: the preset's)")
    for field in configs.METHOD_READS[name]:
      typ, what = configs.METHOD_FIELD_SPECS[field]
      g.add_argument(f"--{name}_{field}", type=_typed(typ), default=None, help=what)
  return p


def _typed(parse):
  """An argparse type from a parser: a bad value is one line naming it."""
  if parse is float:
    return _float

  def typed(s):
    try:
      return parse(s)
    except ValueError as e:
      raise argparse.ArgumentTypeError(str(e) or f"bad value {s!r}") from None
  typed.__name__ = getattr(parse, "__name__", "value").strip("_")
  return typed


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


def _int_list(flag: str, s: str) -> tuple:
  try:
    return tuple(int(x) for x in s.split(","))
  except ValueError:
    raise UsageError(f"{flag} {s!r}: expected an integer or a comma list of them") from None


def _get(a, flag):
  return getattr(a, flag, None)  # entry points without a flag leave it at None


def scenario_of(a) -> str:
  """The scenario named, or the one the forget flags imply."""
  implied = ("class" if _get(a, "forget_class") is not None else
             "subclass" if _get(a, "forget_subclass") is not None else "random")
  scenario = _get(a, "scenario") or implied
  if _get(a, "forget_fraction") is not None and _get(a, "forget_class") is not None:
    raise UsageError("--forget_fraction and --forget_class exclude each other")
  if scenario != "random" and _get(a, "forget_fraction") is not None:
    raise UsageError(f"--forget_fraction belongs to --scenario random, not {scenario}")
  if scenario != implied and implied != "random":
    flag = "--forget_class" if implied == "class" else "--forget_subclass"
    raise UsageError(f"{flag} belongs to --scenario {implied}, not {scenario}")
  return scenario


def plugins_of(argv) -> list[str]:
  """The --import modules named in argv, read before the parser is built:
  a plugin's methods bring flags of their own."""
  out = []
  for i, arg in enumerate(argv):
    if arg == "--import" and i + 1 < len(argv):
      out.append(argv[i + 1])
    elif arg.startswith("--import="):
      out.append(arg.split("=", 1)[1])
  return out


def import_plugins(modules) -> None:
  """--import: modules that register mixing rules (or anything else) first."""
  import importlib
  if modules and "" not in sys.path and "." not in sys.path:
    sys.path.insert(0, "")  # the folder the command runs from, as python -m does
  for mod in modules:
    try:
      importlib.import_module(mod)
    except ImportError as e:
      raise UsageError(f"--import {mod}: {e}") from None


def _replayed(path: str) -> configs.Config:
  p = Path(path)
  try:
    import json
    d = json.loads(p.read_text())
  except (OSError, ValueError) as e:
    raise UsageError(f"--config {path}: unreadable ({e})") from None
  return configs.from_dict(d.get("config", d))


def config_from_args(a, dataset: str | None = None) -> configs.Config:
  """Flags -> the preset's config of the cell (or --config's), with the
  overrides applied."""
  if _get(a, "config"):
    base = _replayed(a.config)
    for flag in ("preset", "dataset", "model", "scenario"):
      if _get(a, flag) is not None and _get(a, flag) != getattr(base, flag):
        raise UsageError(f"--{flag} {_get(a, flag)}: --config {a.config} is a "
                         f"{getattr(base, flag)} run; start a new run without --config")
    cfg = base
  else:
    cfg = configs.get(_get(a, "preset") or "quick",
                      dataset or _get(a, "dataset") or "cifar10",
                      scenario_of(a), _get(a, "model") or "resnet18")
  over = {"seed": _get(a, "seed") if _get(a, "seed") is not None else cfg.seed}
  if _get(a, "forget_class") is not None:
    over["forget_classes"] = _int_list("--forget_class", a.forget_class)
  for flag in ("forget_subclass", "forget_fraction", "width", "depth", "parallel",
               "num_devices", "dtype", "passes", "init_checkpoint", "forget_indices",
               "retrain_from"):
    if _get(a, flag) is not None:
      over[flag] = _get(a, flag)
  if _get(a, "no_retrain"):
    over["no_retrain"] = True
  for flag in ("init_checkpoint", "forget_indices", "retrain_from"):
    if over.get(flag) is not None:
      over[flag] = str(Path(over[flag]).absolute())
  if over.get("forget_indices") is not None:
    over["forget_fraction"] = None  # the indices say how many
  if _get(a, "sweep_mix"):
    over["sweep_mix"] = {}
    for item in a.sweep_mix:
      key, eq, vals = item.partition("=")
      try:
        over["sweep_mix"][key.strip()] = tuple(float(x) for x in vals.split(","))
      except ValueError:
        eq = ""
      if not eq or not key.strip():
        raise UsageError(f"--sweep_mix {item!r}: expected NAME=v1,v2,...")
  for flag in ("sweep_alpha", "sweep_p", "sweep_beta"):
    if _get(a, flag):
      try:
        over[flag] = tuple(float(x) for x in getattr(a, flag).split(","))
      except ValueError:
        raise UsageError(f"--{flag} {getattr(a, flag)!r}: expected a comma list "
                         "of numbers") from None
  pre = {k: _get(a, f"pretrain_{k}") for k in configs.TRAIN_FIELD_SPECS
         if _get(a, f"pretrain_{k}") is not None}
  cfg = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, **pre), **over)
  for name in configs.METHODS[1:]:
    changes = {f: _get(a, f"{name}_{f}") for f in configs.METHOD_READS[name]
               if _get(a, f"{name}_{f}") is not None}
    if changes:
      cfg = configs.with_method(cfg, name, **changes)
  configs.validate(cfg)
  return cfg


def parse_methods(s: str) -> list[str]:
  names = (list(configs.METHODS) if s == "all" else list(configs.DEFAULT_METHODS)
           if s == "default" else [x.strip() for x in s.split(",") if x.strip()])
  return configs.check_methods(names)


def join_of(a) -> distributed.Join:
  if a.distributed not in (None, distributed.AUTO):
    raise UsageError(f"--distributed {a.distributed!r}: the only value is auto")
  return distributed.Join(a.coordinator_address, a.num_processes, a.process_id,
                          auto=a.distributed == distributed.AUTO,
                          heartbeat_timeout=a.heartbeat_timeout)


def parse_seeds(a, default: int = 1) -> list[int]:
  if not a.seeds:
    return [a.seed if a.seed is not None else default]
  try:
    return [int(s) for s in a.seeds.split(",")]
  except ValueError:
    raise UsageError(f"--seeds {a.seeds!r}: expected a comma list of integers") from None


def main(argv=None, *, prog: str = "python -m experiments.unlearn",
         dataset: str | None = None, doc: str = __doc__) -> int:
  """`dataset` fixes the data set and hides the grid flags (the CIFAR-10 entry)."""
  try:
    if HOST_DEVICES_ERROR:
      raise UsageError(HOST_DEVICES_ERROR)
    argv = sys.argv[1:] if argv is None else list(argv)
    import_plugins(plugins_of(argv))
    a = parser(prog, grid_flags=dataset is None, doc=doc).parse_args(
        join_negative_values(argv))
    import_plugins(a.imports)
    cfg = config_from_args(a, dataset)  # bad flags fail before any process waits
    names = parse_methods(a.methods)
    seeds = parse_seeds(a, cfg.seed)
    distributed.join(join_of(a))  # before anything touches a device
    xla_cache.enable(a.compile_cache)
    workdir = Path(a.workdir or f"runs/{cfg.preset}")
    distributed.check_job(workdir, {"config": cfg.to_dict(), "methods": names,
                                    "seeds": seeds, "workdir": str(workdir.absolute()),
                                    "data_dir": a.data_dir})
    data = datasets.load(cfg.dataset, a.data_dir, text=cfg.text)

    primary = distributed.is_primary()  # tables and files: process 0's

    def show(res):
      if primary:
        print(f"\n## seed {res['seed']}\n\n" + report.table(res["methods"]), flush=True)

    final = protocol.run(cfg, data, workdir, names, seeds,
                         progress=not a.no_progress and primary, on_seed=show)
    if len(seeds) > 1 and primary:
      print("\n## mean ± std over seeds " + ",".join(map(str, seeds)) + "\n\n" +
            report.table(final["methods"], final["stds"]))
    if primary:
      print(f"\nwrote {workdir}/results.json, results.md, results.png")
    else:
      print(f"process {distributed.process_index()}: done; process 0 wrote {workdir}/results.*")
    return 0
  except (UsageError, *USER_ERRORS) as e:
    print(f"error: {e}", file=sys.stderr)
    return _exit(2)
  except KeyboardInterrupt:
    print("interrupted; rerun the same command to resume", file=sys.stderr)
    return _exit(130)
  except BaseException as e:
    if distributed.process_count() > 1:
      if distributed.lost_peer(e):
        print(f"error: process {distributed.process_index()}: a collective with the "
              f"other processes failed ({str(e).strip().splitlines()[-1][:160]}); one "
              "has most likely died. Rerun every process with the same command to "
              "resume", file=sys.stderr)
      else:
        traceback.print_exc()
      _exit(1)
    raise


def _exit(code: int) -> int:
  """An error in one process of a job ends it at once (the others follow
  within the heartbeat timeout); a single process returns the code."""
  if distributed.process_count() > 1:
    distributed.exit_now(code)
  return code


if __name__ == "__main__":
  sys.exit(main())
