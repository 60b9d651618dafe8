"""Where the JAX UGradSL step spends its time on CPU: per-HLO-op totals.

  python -m benchmarks.profile_step --width 16 --batch 128 [--xla-flags ...]

Traces a few steps with jax.profiler (XLA's CPU thunks emit one trace event
each when xla_cpu_enable_xprof_traceme is on), then sums event durations by
name and by kind (convolution forward / backward-input / backward-filter,
fusions, ...). Prints the top entries as a markdown table.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile


def main(argv=None):
  a = argparse.ArgumentParser(description=__doc__)
  a.add_argument("--width", type=int, default=16)
  a.add_argument("--batch", type=int, default=128)
  a.add_argument("--steps", type=int, default=2)
  a.add_argument("--top", type=int, default=15)
  a.add_argument("--xla-flags", default="")
  a.add_argument("--json", default=None)
  args = a.parse_args(argv)
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags +
                             " --xla_cpu_enable_xprof_traceme=true").strip()
  import jax
  import numpy as np
  from . import common

  b, n = args.batch, 4 * args.batch
  x, y = common.random_data(n)
  js = common.JaxStepper(args.width, x, y)
  bb = lambda s: ((s * b + np.arange(b)) % n, (s * b + 2 * b + np.arange(b)) % n)
  compiled = js.compile(*bb(0))
  hlo = compiled.as_text()
  js(*bb(0))
  js.sync()
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp):
      for s in range(args.steps):
        js(*bb(s + 1))
      js.sync()
    path = glob.glob(f"{tmp}/**/*.trace.json.gz", recursive=True)[0]
    events = json.load(gzip.open(path))["traceEvents"]

  kinds = _conv_kinds(hlo)
  by_name = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and "dur" in e:
      by_name[e["name"]] += e["dur"] / 1e6 / args.steps
  # Keep HLO-op events (names that occur in the compiled module) only.
  ops = {k: v for k, v in by_name.items() if k in kinds or k.split(":")[0] in kinds}
  step_s = sum(ops.values())
  by_kind = collections.Counter()
  for k, v in ops.items():
    by_kind[kinds.get(k, kinds.get(k.split(":")[0], "other"))] += v
  rows = [{"kind": k, "s_per_step": v, "share": v / step_s} for k, v in by_kind.most_common()]
  print(f"width {args.width}, batch {b}+{b}: {step_s:.2f} s of op time per step\n")
  print(common.table(rows, ["kind", "s_per_step", "share"]))
  top = [{"op": k, "kind": kinds.get(k, ""), "s_per_step": v, "share": v / step_s}
         for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:args.top]]
  print()
  print(common.table(top, ["op", "kind", "s_per_step", "share"]))
  common.write_json(args.json, rows + top)


def _conv_kinds(hlo: str) -> dict:
  """HLO instruction name -> coarse kind, from the compiled module's text.

  A convolution (bare or inside a YNNPACK/oneDNN fusion) is forward when its
  JAX source (metadata op_name) is not under transpose(jvp(...)); a backward
  one producing a kernel-shaped [*, k, k, *] array (k = 1 or 3) is the filter
  gradient, otherwise the input gradient. Fusions named transpose/copy are
  relayouts XLA inserts around the convolutions.
  """
  kinds = {}
  pat = r"^\s*(?:ROOT )?%?([\w.\-]+) = (\w+)\[([\d,]*)\][^ ]* ([\w\-]+)\(([^\n]*)$"
  for m in re.finditer(pat, hlo, re.M):
    name, shape, op, rest = m.group(1), m.group(3), m.group(4), m.group(5)
    src = re.search(r'op_name="([^"]*)"', rest)
    src = src.group(1) if src else ""
    if "conv_general_dilated" in src and op in ("convolution", "fusion", "custom-call"):
      dims = [int(d) for d in shape.split(",") if d]
      if "transpose(jvp" not in src:
        kinds[name] = "conv forward"
      elif len(dims) == 4 and dims[1] == dims[2] and dims[1] in (1, 3):
        kinds[name] = "conv backward-filter"
      else:
        kinds[name] = "conv backward-input"
    elif op == "fusion" and ("transpose" in name or name.startswith("copy")):
      kinds[name] = "relayout (transpose/copy fusion)"
    elif op == "fusion":
      kinds[name] = "other fusion (BN, relu, optimizer, ...)"
    else:
      kinds[name] = op
  return kinds


if __name__ == "__main__":
  main()
