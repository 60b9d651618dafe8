"""Try XLA:CPU options on the JAX UGradSL step, interleaved in one process.

  python -m benchmarks.xla_flags_sweep --width 64 --batch 32 --repeats 3

Each candidate compiles the same step with its own XLA debug options
(`Lowered.compile(compiler_options=...)`, the per-executable form of
XLA_FLAGS), then the executables are timed round robin (A B C A B C ...), so
machine load hits them alike. Reports each one's median images/s, its ratio
to the default, and how many YNNPACK / oneDNN fusions its HLO holds (an
option that leaves the HLO unchanged did nothing).
"""

from __future__ import annotations

import argparse
import re
import statistics

import numpy as np

from . import common

# Options that exist in jaxlib 0.10.2 (`strings libjax_common.so | grep
# xla_cpu_`) and plausibly touch convolution speed on CPU.
CANDIDATES = {
    "default": {},
    "no_ynn": {"xla_cpu_experimental_ynn_fusion_type": ""},  # Eigen convolutions
    "onednn": {"xla_cpu_use_onednn": True, "xla_cpu_experimental_onednn_custom_call": True},
    "xnnpack": {"xla_cpu_use_xnnpack": True},
    "fast_math": {"xla_cpu_enable_fast_math": True},
    "concurrency_sched": {"xla_cpu_enable_concurrency_optimized_scheduler": True},
}


def main(argv=None):
  a = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  a.add_argument("--width", type=int, default=64)
  a.add_argument("--batch", type=int, default=32)
  a.add_argument("--repeats", type=int, default=3)
  a.add_argument("--only", default=",".join(CANDIDATES))
  a.add_argument("--json", default=None)
  args = a.parse_args(argv)
  b, n = args.batch, 4 * args.batch
  x, y = common.random_data(n)
  idx = lambda s: ((s * b + np.arange(b)) % n, (s * b + 2 * b + np.arange(b)) % n)
  steppers, info = {}, {}
  for name in args.only.split(","):
    js = common.JaxStepper(args.width, x, y)
    try:
      hlo = js.compile(*idx(0), compiler_options=CANDIDATES[name]).as_text()
    except Exception as e:  # an option this build rejects
      info[name] = {"error": str(e).splitlines()[0][:120]}
      continue
    info[name] = {"ynn_fusions": hlo.count("__ynn_fusion"),
                  "onednn_calls": len(re.findall(r"onednn", hlo, re.I)),
                  "compile_s": js.compile_s}
    steppers[name] = js
  times = {k: [] for k in steppers}
  for s in range(1 + args.repeats):  # first round is warm-up
    for k, js in steppers.items():
      dt = common.timed(lambda: js(*idx(s)), js.sync)
      if s:
        times[k].append(dt)
  med = {k: statistics.median(v) for k, v in times.items()}
  rows = []
  for name in info:
    r = {"option": name, "compiler_options": str(CANDIDATES[name]) or "{}", **info[name]}
    if name in med:
      r.update(jax_img_s=2 * b / med[name], vs_default=med.get("default", np.nan) / med[name])
    rows.append({**r, "width": args.width, "batch": b, **common.stamp()})
  print(common.table(rows, ["option", "compiler_options", "jax_img_s", "vs_default",
                            "ynn_fusions", "onednn_calls", "compile_s"]))
  common.write_json(args.json, rows)


if __name__ == "__main__":
  main()
