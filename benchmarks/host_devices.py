"""One host device vs the CPU split into host devices, on the real code path.

  python -m benchmarks.host_devices --data ../shared/data/cifar10-jpeg.tar.gz
  python -m benchmarks.host_devices --pairs 5 --epochs 1 --json out.json

Each run is a child process that trains the quick preset's original model
(methods.original, real CIFAR-10) for --epochs epochs and evaluates it
(metrics.outputs: forget, retain, val and test) as an experiment does. The
parent alternates the two layouts A B A B:
  A  one host device (UGRADSL_CPU_DEVICES=1), --parallel none
  B  host_devices.default_count() devices, shard_map (the quick preset)
and reports medians and the ratio B/A of training images/s and evaluation
time. Pairs share whatever else the machine is doing, so the ratio holds
where absolute times do not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
ROOT = Path(__file__).resolve().parents[1]


def child(mode: str, data_dir: str, epochs: int) -> dict:
  import dataclasses
  import time
  from experiments import cifar_random_forget  # noqa: F401  (requests host devices)
  from ugradsl_jax import configs, datasets, methods, phases, protocol
  cfg = configs.get("quick")
  cfg = dataclasses.replace(cfg, parallel=mode,
                            pretrain=dataclasses.replace(cfg.pretrain, epochs=epochs))
  exp = protocol.setup(cfg, datasets.load("cifar10", data_dir))
  phase = phases.run(exp, phases.Runner(None, progress=False), methods.original(exp))
  t0 = time.perf_counter()
  scores = protocol.scores(exp, phase)
  o = phase.outcome
  return {"mode": mode, "devices": exp.par.n, "train_img_s": o["images_per_s"],
          "train_s": o["rte_s"], "compile_s": o["compile_s"],
          "eval_s": time.perf_counter() - t0, "val_acc": scores["val"]["TA"]}


def run_child(layout: str, data_dir: str, epochs: int) -> dict:
  from ugradsl_jax import host_devices
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  n = 1 if layout == "A" else host_devices.default_count()
  env[host_devices.ENV] = str(n)
  mode = "none" if layout == "A" else "shard_map"
  p = subprocess.run([sys.executable, "-m", "benchmarks.host_devices", "--child", mode,
                      "--data", data_dir, "--epochs", str(epochs)],
                     cwd=ROOT, env=env, capture_output=True, text=True)
  if p.returncode != 0:
    raise SystemExit(f"child {layout} failed:\n{p.stderr[-2000:]}")
  return {"layout": layout, **json.loads(p.stdout.strip().splitlines()[-1])}


def main(argv=None) -> int:
  a = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  a.add_argument("--data", default=str(DEFAULT_DATA))
  a.add_argument("--pairs", type=int, default=3)
  a.add_argument("--epochs", type=int, default=1)
  a.add_argument("--child", default=None, help=argparse.SUPPRESS)
  a.add_argument("--json", default=None)
  args = a.parse_args(argv)
  if args.child:
    print(json.dumps(child(args.child, args.data, args.epochs)))
    return 0
  from . import common
  rows = []
  for i in range(args.pairs):
    for layout in "AB":
      r = {"pair": i, **run_child(layout, args.data, args.epochs)}
      rows.append(r)
      print(json.dumps(r), file=sys.stderr)
  cols = ["layout", "mode", "devices", "train_img_s", "eval_s", "compile_s", "val_acc"]
  summary = []
  for layout in "AB":
    rs = [r for r in rows if r["layout"] == layout]
    summary.append({**{c: rs[0][c] for c in ("layout", "mode", "devices")},
                    **{c: float(np.median([r[c] for r in rs]))
                       for c in ("train_img_s", "eval_s", "compile_s", "val_acc")}})
  pair_ratio = [b["train_img_s"] / a_["train_img_s"]
                for a_, b in zip(rows[0::2], rows[1::2])]
  eval_ratio = [a_["eval_s"] / b["eval_s"] for a_, b in zip(rows[0::2], rows[1::2])]
  print(common.table(summary, cols))
  print(f"\nB/A training images/s per pair: {', '.join(f'{r:.3f}' for r in pair_ratio)}"
        f" (median {np.median(pair_ratio):.3f}); A/B evaluation time: "
        f"{', '.join(f'{r:.3f}' for r in eval_ratio)} (median {np.median(eval_ratio):.3f})")
  common.write_json(args.json, [{**common.stamp(), "runs": rows, "summary": summary,
                                 "train_ratio": pair_ratio, "eval_ratio": eval_ratio}])
  return 0


if __name__ == "__main__":
  sys.exit(main())
