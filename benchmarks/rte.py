"""Unlearning run time (RTE) and compile time per method, JAX vs PyTorch.

  python -m benchmarks.rte                          # quick preset, epochs x 0.25
  python -m benchmarks.rte --epochs-scale 1 --torch-steps 0   # full quick recipes, torch in full
  python -m benchmarks.rte --preset paper --methods ugradsl --width 64   # (GPU)

JAX: the library's own methods (ugradsl_jax.methods) on a temporary workdir,
so RTE is the phase's step loop (compile, NaN checks and checkpoint saves
excluded and reported apart: compile_s, io_s). SalUn's saliency mask is
outside this column on both sides; `mask_s` gives it (an experiment's
results add it to SalUn's RTE).
PyTorch: torch_ref's steps on the same index schedule (ugradsl_jax.batching),
same split, same recipe. With --torch-steps K > 0 only the first K steps are
timed and RTE is projected to the full schedule (median step x steps); 0 runs
every step. The model is randomly initialised (RTE does not depend on it).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import tempfile
import time
import types
import zlib
from pathlib import Path

import numpy as np

from . import common

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
METHODS = ("ugradsl", "ugradsl_plus", "ga", "ft", "salun")


def parse(argv=None):
  a = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  a.add_argument("--data", default=str(DEFAULT_DATA))
  a.add_argument("--preset", default="quick")
  a.add_argument("--methods", default=",".join(METHODS))
  a.add_argument("--width", type=int, default=None, help="default: 8 (quick), preset's otherwise")
  a.add_argument("--epochs-scale", type=float, default=0.25,
                 help="epochs = max(1, round(recipe epochs x this))")
  a.add_argument("--torch-steps", type=int, default=5,
                 help="timed torch steps per method, projected; 0 = run them all")
  a.add_argument("--no-torch", action="store_true")
  a.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  a.add_argument("--json", default=None)
  return a.parse_args(argv)


def main(argv=None):
  args = parse(argv)
  from ugradsl_jax import configs, datasets, experiment, phases
  from ugradsl_jax import methods as M
  from ugradsl_jax import models, parallel, protocol, train

  cfg = configs.get(args.preset)
  width = args.width or (8 if args.preset == "quick" else cfg.width)
  # Always ResNet-18 (torch_ref has only that), even for the smoke preset.
  cfg = dataclasses.replace(cfg, model="resnet18", tiny=False, width=width, dtype=args.dtype)
  names = [n.strip() for n in args.methods.split(",") if n.strip()]
  for n in names:
    e = cfg.methods[n].epochs
    cfg = configs.with_method(cfg, n, epochs=max(1, round(e * args.epochs_scale)))

  data = datasets.load("cifar10", args.data)
  split, data = protocol.labelled(cfg, data)
  par = parallel.make("none")
  build = functools.partial(models.build, "resnet18", num_classes=10, mean=data.mean,
                            std=data.std, width=width)
  v = train.init_variables(build(), 0)
  orig = phases.Phase(types.SimpleNamespace(params=v["params"], batch_stats=v["batch_stats"]),
                      {})

  torch_fn = None if args.no_torch else _torch_runner(data, split, cfg, width, args)
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    # cfg.dtype: the compute dtype of a mixed-precision run.
    exp = experiment.make(cfg, data, split, par)
    runner = phases.Runner(Path(tmp), progress=False)
    for name in names:
      m = cfg.methods[name]
      t0 = time.perf_counter()
      phase = phases.run(exp, runner, M.REGISTRY[name](exp, orig, m))
      wall = time.perf_counter() - t0
      o = phase.outcome
      row = {"method": name, "epochs": m.epochs, "steps": o["steps"], "width": width,
             "jax_rte_s": o["rte_s"], "jax_compile_s": o["compile_s"],
             "jax_wall_s": wall, "jax_img_s": o["images_per_s"]}
      if torch_fn is not None:
        row.update(torch_fn(name, m, o["steps"]))
        row["ratio"] = row["torch_rte_s"] / row["jax_rte_s"]
      rows.append({**row, "preset": args.preset, "dtype": args.dtype,
                   "split": split.sizes(), **common.stamp()})
      print(f"{name}: jax {o['rte_s']:.1f} s (+{o['compile_s']:.1f} s compile), torch "
            f"{row.get('torch_rte_s', float('nan')):.1f} s", flush=True)
  print(f"\npreset {args.preset} (epochs x {args.epochs_scale}), width {width}, "
        f"split {split.sizes()}\n")
  print(common.table(rows, ["method", "epochs", "steps", "jax_rte_s", "jax_compile_s",
                            "torch_rte_s", "torch_projected", "mask_s", "ratio"]))
  common.write_json(args.json, rows)
  return rows


def _idx(part):
  """A batching part is {"idx", crop/flip draws...}; torch_ref draws its own."""
  return part["idx"] if isinstance(part, dict) else part


def _random_labels(y, forget, seed: int, num_classes: int):
  """RL's forget labels for the timing run (their values do not change the cost)."""
  out = np.array(y, np.int64)
  out[forget] = np.random.default_rng([seed, 0x41]).integers(0, num_classes, len(forget))
  return out


def _torch_runner(data, split, cfg, width, args):
  """method name -> {torch_rte_s, ...}: the same schedule through torch_ref."""
  import os

  import torch
  from ugradsl_jax import batching, methods as M
  from . import torch_ref
  torch.set_num_threads(os.cpu_count())
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  y_rl = torch.as_tensor(_random_labels(data.train_y, split.forget, cfg.seed, 10)).long().to(dev)
  s = split

  def run(name, m, total):
    st = torch_ref.Stepper(width, data.train_x, data.train_y, lr=m.lr, alpha=m.alpha,
                           p=m.p, augment=m.augment, device=dev,
                           autocast_dtype=torch.bfloat16 if args.dtype == "bfloat16" else None)
    stream = zlib.crc32(name.encode())
    fb = m.forget_batch_size or m.batch_size
    out = {"mask_s": None}
    if name in ("ugradsl", "ugradsl_plus"):
      if name == "ugradsl":
        batches, _ = batching.paired(s.forget, s.retain, fb, m.batch_size, cfg.seed,
                                     ("forget", "retain"), stream)
      else:
        batches, _ = batching.paired(s.retain, s.forget, m.batch_size, fb, cfg.seed,
                                     ("retain", "forget"), stream)
      step = lambda b: st.unlearn_step(_idx(b["retain"]), _idx(b["forget"]))
    else:
      src = {"ga": s.forget, "ft": s.retain, "salun": np.union1d(s.retain, s.forget)}[name]
      batches, _ = batching.epochs(src, m.batch_size, cfg.seed, stream)
      kw = {}
      if name == "ga":
        kw["loss_fn"] = lambda lo, y: -torch_ref.smoothed_ce(lo, y, m.alpha)
      if name == "salun":
        t0 = time.perf_counter()
        kw.update(labels=y_rl, mask=st.saliency_mask(s.forget, m.mask_ratio))
        st.sync()
        out["mask_s"] = time.perf_counter() - t0
      step = lambda b: st.train_step(_idx(b), **kw)
    n = total if args.torch_steps <= 0 else min(args.torch_steps, total)
    step(batches(0))  # warm-up (oneDNN primitive caches), outside the timing
    st.sync()
    times = [common.timed(lambda: step(batches(i)), st.sync) for i in range(n)]
    if n == total:
      rte = sum(times)
    else:
      rte = statistics.median(times) * total
    out.update(torch_rte_s=rte, torch_projected=n < total, torch_steps_timed=n)
    return out
  return run


if __name__ == "__main__":
  main()
