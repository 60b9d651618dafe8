"""Images/s of one UGradSL update step: this library (JAX) vs plain PyTorch.

  python -m benchmarks.step_throughput                       # widths 8,16,64, batch 256
  python -m benchmarks.step_throughput --widths 16 --repeats 9 --json out.json
  python -m benchmarks.step_throughput --step train          # plain CE training step
  python -m benchmarks.step_throughput --dtype bfloat16 --torch-device cuda  # GPU
  python -m benchmarks.step_throughput --torch-compile       # + torch.compile

One step = forward+backward on `batch` retain and `batch` forget images (both
counted), the gradients mixed, one SGD update. JAX and PyTorch steps are
timed alternately (A B A B ...) after a warm-up, so load from other processes
hits both alike; the table gives the median of each and their ratio.
Both frameworks use every core: XLA's CPU client does by default, and torch
is set to os.cpu_count() intra-op threads. Each runs in its own child process
(the parent alternates them over pipes): in one process the two thread pools
interfere (see README).
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np


def parse(argv=None):
  a = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  a.add_argument("--widths", default="8,16,64")
  a.add_argument("--batch", type=int, default=256, help="retain batch = forget batch")
  a.add_argument("--repeats", type=int, default=5, help="timed steps per framework")
  a.add_argument("--warmup", type=int, default=1)
  a.add_argument("--step", default="unlearn", choices=["unlearn", "train"])
  a.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                 help="compute dtype (JAX: models.build dtype; torch: autocast)")
  a.add_argument("--torch-device", default=None, help="default: cuda if jax sees a GPU")
  a.add_argument("--no-torch", action="store_true")
  a.add_argument("--torch-compile", action="store_true",
                 help="also time torch.compile(model) beside eager PyTorch (a third "
                      "child process; its compilation falls in the warm-up steps)")
  a.add_argument("--xla-flags", default=None,
                 help="appended to XLA_FLAGS before jax is imported (use --xla-flags=...)")
  a.add_argument("--same-process", action="store_true",
                 help="run both frameworks in this process (default: one child "
                      "process each, so neither's idle thread pool competes)")
  a.add_argument("--json", default=None)
  return a.parse_args(argv)


def _make(fw: str, width: int, args):
  """Builds one framework's stepper; returns (info, step(s) -> seconds)."""
  from . import common
  b, n = args.batch, 4 * args.batch  # enough images that indices vary per step
  x, y = common.random_data(n)
  idx = lambda s, off: (s * b + off + np.arange(b)) % n
  step_idx = lambda s: (idx(s, 0), idx(s, 2 * b)) if args.step == "unlearn" else (idx(s, 0),)
  if fw == "jax":
    import jax.numpy as jnp
    js = common.JaxStepper(width, x, y, kind=args.step,
                           dtype=jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32)
    flops = _flops(js.compile(*step_idx(0)))
    info = {"jax_compile_s": js.compile_s, "flops": flops,
            "peak": _peak(args.dtype), "device": common.machine()}
    return info, lambda s: common.timed(lambda: js(*step_idx(s)), js.sync)
  import torch
  from . import torch_ref
  torch.set_num_threads(os.cpu_count())  # every core, as XLA's CPU client uses
  torch.backends.cudnn.benchmark = True
  dev = args.torch_device or ("cuda" if torch.cuda.is_available() else "cpu")
  ts = torch_ref.Stepper(width, x, y, device=dev, compile=fw == "torch_compile",
                         autocast_dtype=torch.bfloat16 if args.dtype == "bfloat16" else None)
  fn = ts.unlearn_step if args.step == "unlearn" else ts.train_step
  info = {"torch_device": dev, "torch_threads": torch.get_num_threads(),
          "torch_version": torch.__version__}
  return info, lambda s: common.timed(lambda: fn(*step_idx(s)), ts.sync)


def _worker(conn, fw, width, args):
  """Child process: build, report info, then time the steps it is asked for.
  Between requests it blocks on the pipe, so its threads leave the cores alone."""
  if args.xla_flags:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
  info, step = _make(fw, width, args)
  conn.send(info)
  while (s := conn.recv()) is not None:
    conn.send(step(s))


class _Remote:
  def __init__(self, fw, width, args):
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    self.conn, child = ctx.Pipe()
    self.proc = ctx.Process(target=_worker, args=(child, fw, width, args), daemon=True)
    self.proc.start()
    self.info = None

  def ready(self):
    self.info = self.conn.recv()
    return self.info

  def __call__(self, s):
    self.conn.send(s)
    return self.conn.recv()

  def close(self):
    self.conn.send(None)
    self.proc.join()


def main(argv=None):
  args = parse(argv)
  from . import common
  fws = ["jax"] + ([] if args.no_torch else ["torch"]) + \
      (["torch_compile"] if args.torch_compile else [])
  imgs = (2 if args.step == "unlearn" else 1) * args.batch
  rows = []
  for width in [int(w) for w in args.widths.split(",")]:
    if args.same_process:
      if args.xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
      built = {fw: _make(fw, width, args) for fw in fws}
      info = {k: v for fw in fws for k, v in built[fw][0].items()}
      steps = {fw: built[fw][1] for fw in fws}
    else:
      remotes = {fw: _Remote(fw, width, args) for fw in fws}
      info = {k: v for fw in fws for k, v in remotes[fw].ready().items()}
      steps = remotes
    times = {fw: [] for fw in fws}
    warm = {fw: [] for fw in fws}  # torch.compile compiles in its first steps
    for s in range(args.warmup + args.repeats):
      for fw in fws:  # interleaved A B A B
        dt = steps[fw](s)
        (times if s >= args.warmup else warm)[fw].append(dt)
    if not args.same_process:
      for r in remotes.values():
        r.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    flops = info.pop("flops")
    peak = info.pop("peak")
    row = {"width": width, "batch": args.batch, "step": args.step, "dtype": args.dtype,
           "jax_img_s": imgs / med["jax"],
           "torch_img_s": imgs / med["torch"] if "torch" in med else None,
           "ratio": med["torch"] / med["jax"] if "torch" in med else None,
           "torch_compile_img_s": imgs / med["torch_compile"] if "torch_compile" in med else None,
           "ratio_compile": (med["torch_compile"] / med["jax"]
                             if "torch_compile" in med else None),
           "gflop_step": flops / 1e9 if flops else None,
           "jax_tflop_s": flops / med["jax"] / 1e12 if flops else None,
           "peak_frac": flops / med["jax"] / peak if flops and peak else None,
           **info, "repeats": args.repeats, "jax_times_s": times["jax"],
           "torch_times_s": times.get("torch"),
           "torch_compile_times_s": times.get("torch_compile"),
           "warmup_times_s": warm, "same_process": args.same_process,
           "xla_flags": args.xla_flags or "", "date": common.stamp()["date"]}
    rows.append(row)
    print(f"width {width}: jax {row['jax_img_s']:.1f} img/s, torch "
          f"{row['torch_img_s'] or 0:.1f} img/s"
          + (f", torch.compile {row['torch_compile_img_s']:.1f} img/s"
             if args.torch_compile else ""), flush=True)
  print()
  print(common.table(rows, ["width", "batch", "step", "dtype", "jax_img_s", "torch_img_s",
                            "ratio"] + (["torch_compile_img_s", "ratio_compile"]
                                        if args.torch_compile else [])
                           + ["jax_compile_s", "gflop_step", "jax_tflop_s", "peak_frac"]))
  common.write_json(args.json, rows)
  return rows


# Dense peak FLOP/s of the cards we may be lent (vendor figures; H200 = H100
# compute). fp32 here is plain FP32; XLA and cuDNN may use TF32 for float32
# convolutions, whose peak is ~495 TFLOP/s, so fp32 fractions can exceed 1.
PEAK = {"H100": {"float32": 67e12, "bfloat16": 990e12},
        "H200": {"float32": 67e12, "bfloat16": 990e12}}


def _peak(dtype):
  import jax
  kind = jax.devices()[0].device_kind
  return next((v[dtype] for k, v in PEAK.items() if k in kind), None)


def _flops(compiled) -> float | None:
  """XLA's own count of the compiled step's floating-point operations."""
  try:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca.get("flops", 0.0)) or None
  except Exception:  # cost analysis is best-effort on some backends
    return None


if __name__ == "__main__":
  main()
