"""UGradSL step under none / pmap / shard_map on 1, 2, 4 fake CPU devices.

  python -m benchmarks.scaling                     # resnet18 width 8, global batch 64
  python -m benchmarks.scaling --width 16 --batch 128 --steps 5 --json out.json

The point is correctness: after one identical update (same global batch,
same augmentation, BatchNorm statistics and gradients pmean-ed) every layout
must land on the single-device parameters within float32 tolerance; the
drift after further steps is reported too (round-off differences between
differently compiled programs grow in a random network under ascent). Speed-up
is not expected: the fake devices share the same CPU cores.
"""

from __future__ import annotations

import argparse
import os

# Fake devices must exist before jax initialises its CPU client.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5


def main(argv=None):
  a = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  a.add_argument("--arch", default="resnet18")
  a.add_argument("--width", type=int, default=8)
  a.add_argument("--batch", type=int, default=64, help="global retain (= forget) batch")
  a.add_argument("--steps", type=int, default=3)
  a.add_argument("--devices", default="1,2,4")
  a.add_argument("--lr", type=float, default=2e-3,
                 help="the quick preset's UGradSL lr; large lr + ascent on a random "
                      "model amplifies float32 round-off step by step")
  a.add_argument("--json", default=None)
  args = a.parse_args(argv)
  import jax
  from . import common

  b, n = args.batch, 4 * args.batch
  x, y = common.random_data(n)
  batches = [((s * b + np.arange(b)) % n, (s * b + 2 * b + np.arange(b)) % n)
             for s in range(args.steps + 1)]

  def run(mode, ndev):
    js = common.JaxStepper(args.width, x, y, mode=mode, num_devices=ndev,
                           arch=args.arch, lr=args.lr)
    js.compile(*batches[0])
    js(*batches[0])                 # warm-up step counts as step 1 of the run
    first = js.params()
    dt = common.timed(lambda: [js(*bb) for bb in batches[1:]], js.sync)
    return first, js.params(), args.steps / dt, js.compile_s

  init = common.JaxStepper(args.width, x, y, arch=args.arch).params()
  diff = lambda p, q: max(float(np.max(np.abs(u - v)))
                         for u, v in zip(jax.tree.leaves(p), jax.tree.leaves(q)))
  ref1, ref, ref_sps, ref_c = run("none", 1)
  moved = diff(ref, init)
  rows = [{"mode": "none", "devices": 1, "steps_s": ref_sps, "compile_s": ref_c,
           "max_abs_diff": 0.0, "drift": 0.0, "equal": True}]
  for mode in ("pmap", "shard_map"):
    for ndev in [int(d) for d in args.devices.split(",")]:
      if ndev > jax.device_count() or b % ndev:
        continue
      p1, p, sps, c = run(mode, ndev)
      ok = all(np.allclose(u, v, rtol=RTOL, atol=ATOL)
               for u, v in zip(jax.tree.leaves(p1), jax.tree.leaves(ref1)))
      rows.append({"mode": mode, "devices": ndev, "steps_s": sps, "compile_s": c,
                   "max_abs_diff": diff(p1, ref1), "drift": diff(p, ref), "equal": ok})
  for r in rows:
    r.update(speedup=r["steps_s"] / ref_sps, width=args.width, batch=b,
             max_update=moved, drift_over_update=r["drift"] / moved,
             steps=args.steps + 1, **common.stamp())
  print(f"{args.arch} width {args.width}, lr {args.lr}, global batch {b}+{b}. "
        f"max_abs_diff/equal: params after 1 step vs the single-device step "
        f"(allclose rtol={RTOL}, atol={ATOL}); drift: after {args.steps + 1} steps, "
        f"which moved a weight by up to {moved:.2g} (float32 round-off in a "
        "random net under ascent grows step by step)\n")
  print(common.table(rows, ["mode", "devices", "steps_s", "speedup", "compile_s",
                            "max_abs_diff", "equal", "drift", "drift_over_update"]))
  common.write_json(args.json, rows)
  if not all(r["equal"] for r in rows):
    raise SystemExit("some layout does not match the single-device result")
  return rows


if __name__ == "__main__":
  main()
