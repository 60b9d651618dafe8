"""The paired UGradSL step in one vmapped pass against two passes.

  python -m benchmarks.one_pass --widths 8,16 --repeats 7 --json out.json

Both are the library's unlearn_step (ugradsl_step.py, passes="one" / "two") on
the same data, timed interleaved (two, one, two, one, ...) in one process
after compiling both; the table gives each one's median seconds per step,
its images/s (retain + forget images) and the ratio two / one (> 1: one pass
is faster). Equality of the two is tested (tests/test_step.py); this says
only what one pass costs on the machine at hand.
"""

from __future__ import annotations

import argparse

import numpy as np

from . import common


def main(argv=None):
  a = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  a.add_argument("--widths", default="8,16")
  a.add_argument("--batch", type=int, default=256, help="retain batch = forget batch")
  a.add_argument("--repeats", type=int, default=7)
  a.add_argument("--mode", default="none", help="none | pmap | shard_map")
  a.add_argument("--json", default=None)
  args = a.parse_args(argv)
  from experiments import unlearn  # noqa: F401  (requests the host devices first)
  x, y = common.random_data(4 * args.batch)
  rows = []
  for width in (int(w) for w in args.widths.split(",")):
    steppers = {p: common.JaxStepper(width, x, y, passes=p, mode=args.mode)
                for p in ("two", "one")}
    r_idx, f_idx = np.arange(args.batch), np.arange(args.batch, 2 * args.batch)
    for s in steppers.values():
      s.compile(r_idx, f_idx)
      s(r_idx, f_idx)  # warm-up
      s.sync()
    times = {p: [] for p in steppers}
    for _ in range(args.repeats):
      for p, s in steppers.items():
        times[p].append(common.timed(lambda: s(r_idx, f_idx), s.sync))
    med = {p: float(np.median(t)) for p, t in times.items()}
    rows.append({"width": width, "batch": args.batch, "mode": args.mode,
                 "two_s": med["two"], "one_s": med["one"],
                 "two_img_s": 2 * args.batch / med["two"],
                 "one_img_s": 2 * args.batch / med["one"],
                 "ratio_two_over_one": med["two"] / med["one"],
                 "compile_two_s": steppers["two"].compile_s,
                 "compile_one_s": steppers["one"].compile_s, **common.stamp()})
    print(common.table(rows[-1:], ["width", "two_s", "one_s", "ratio_two_over_one",
                                   "compile_two_s", "compile_one_s"]), flush=True)
  common.write_json(args.json, rows)


if __name__ == "__main__":
  main()
