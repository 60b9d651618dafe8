"""K values of alpha trained at once (jax.vmap over a stacked state) vs K runs.

  python -m benchmarks.sweep [--ks 1,4,8] [--width 8] [--batch 64] [--steps 6]

Both sides run the library's UGradSL step (ugradsl_step.unlearn_step) on the same
batches; the vmapped side is sweep.vmapped(step) over a K-stacked state.
Reports wall time (compile excluded, reported apart), the speed-up of one
vmapped run over K sequential runs, and the largest parameter difference
between the two (they must agree to float32 rounding).
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import numpy as np

from ugradsl_jax import batching, mixing, models, parallel, sweep, train, ugradsl_step

from .common import random_data, stamp, table, write_json


def bench(k: int, width: int, batch: int, steps: int, repeats: int) -> dict:
  x, y = random_data(4096)
  par = parallel.make("none")
  data = par.replicate({"x": x, "y": y})
  batches, _ = batching.paired(np.arange(3584, 4096), np.arange(3584), batch, batch,
                               seed=0, augment=True)
  model = models.build("resnet18", num_classes=10, mean=models.CIFAR_MEAN,
                       std=models.CIFAR_STD, width=width)
  tx = train.sgd(train.lr_schedule("constant", 2e-3, 1, 1))
  v = train.init_variables(model, 0)
  state = jax.device_get(train.create_state(v["params"], v["batch_stats"], tx))
  kw = dict(model=model, tx=tx, mix=mixing.weighted_sum)
  alphas = np.linspace(-2.0, -0.2, k).astype(np.float32)
  hp_one = lambda a: {"alpha": np.float32(a), "p": np.float32(0.5)}
  hp_all = {"alpha": alphas, "p": np.full(k, 0.5, np.float32)}
  stacked0 = sweep.stack([state] * k)

  def compiled(step, st, hp):
    t0 = time.perf_counter()
    c = par.wrap(step).lower(par.replicate(st), data, par.shard(batches(0)), hp).compile()
    return c, time.perf_counter() - t0

  # alpha is data, not a constant: one compilation serves every sequential run.
  seq_fn, seq_compile = compiled(functools.partial(ugradsl_step.unlearn_step, **kw), state,
                                 hp_one(0.0))
  vm_fn, vm_compile = compiled(functools.partial(sweep.vmapped(ugradsl_step.unlearn_step), **kw),
                               stacked0, hp_all)

  def run(fn, st, hp):
    s = par.replicate(st)
    t0 = time.perf_counter()
    for i in range(steps):
      s, _ = fn(s, data, par.shard(batches(i)), hp)
    jax.block_until_ready(s)
    return time.perf_counter() - t0, jax.device_get(s)

  seq_times, vm_times = [], []
  for _ in range(repeats):  # interleaved: K sequential runs, then one vmapped run
    runs = [run(seq_fn, state, hp_one(a)) for a in alphas]
    seq_times.append(sum(t for t, _ in runs))
    t, stacked = run(vm_fn, stacked0, hp_all)
    vm_times.append(t)
  members = sweep.unstack(stacked, k)
  diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
             for (_, single), member in zip(runs, members)
             for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(member.params)))
  seq_s, vm_s = float(np.median(seq_times)), float(np.median(vm_times))
  return {"K": k, "width": width, "batch": batch, "steps": steps,
          "sequential_s": seq_s, "vmapped_s": vm_s, "speedup": seq_s / vm_s,
          "seq_compile_s": seq_compile, "vmap_compile_s": vm_compile,
          "max_param_diff": diff}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__)
  ap.add_argument("--ks", default="1,4,8")
  ap.add_argument("--width", type=int, default=8)
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--steps", type=int, default=6)
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--json", default=None)
  a = ap.parse_args(argv)
  rows = [bench(int(k), a.width, a.batch, a.steps, a.repeats) for k in a.ks.split(",")]
  st = stamp()
  for r in rows:
    r.update(st)
  print(table(rows, ["K", "width", "batch", "steps", "sequential_s", "vmapped_s",
                     "speedup", "seq_compile_s", "vmap_compile_s", "max_param_diff"]))
  print(f"\n{st['machine']}, {st['date']}")
  write_json(a.json, rows)


if __name__ == "__main__":
  main()
