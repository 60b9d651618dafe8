"""Shared by the benchmarks: the library's JAX step as a callable, tables, JSON."""

from __future__ import annotations

import datetime
import functools
import json
import time
from pathlib import Path

import numpy as np

from ugradsl_jax.report import machine

ALPHA, P = -1.0, 0.5


def stamp() -> dict:
  return {"machine": machine(),
          "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def random_data(n: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
          rng.integers(0, 10, n).astype(np.int32))


class JaxStepper:
  """The library's UGradSL step exactly as methods._paired builds it:
  ugradsl_step.unlearn_step under parallel.make(mode).wrap, data resident on the
  device, only index arrays sent per step."""

  def __init__(self, width: int, data_x, data_y, *, lr=2e-3, kind="unlearn",
               mode="none", num_devices=None, dtype=None, arch="resnet18", seed=0,
               tx=None, passes="two"):
    import jax
    import jax.numpy as jnp
    from ugradsl_jax import augment, mixing, models, parallel, train, ugradsl_step
    self.jax, self.augment = jax, augment
    self.par = par = parallel.make(mode, num_devices)
    dtype = dtype or jnp.float32
    build = functools.partial(models.build, arch, num_classes=10, mean=models.CIFAR_MEAN,
                              std=models.CIFAR_STD, width=width, dtype=dtype)
    model = build(axis_name=par.axis_name)
    v = train.init_variables(build(axis_name=None), seed)
    self.tx = tx or train.sgd(train.lr_schedule("constant", lr, 1, 1))
    state = train.create_state(v["params"], v["batch_stats"], self.tx)
    self.kind = kind
    if kind == "unlearn":
      step = functools.partial(ugradsl_step.unlearn_step, model=model, tx=self.tx,
                               mix=mixing.weighted_sum, passes=passes)
      self.hp = {"alpha": ALPHA, "p": P}
    else:  # plain training step
      step = functools.partial(train.descent_step, model=model, tx=self.tx)
      self.hp = {}
    self.fn = par.wrap(step)
    self.state = par.replicate(state)
    self.data = par.replicate({"x": np.asarray(data_x), "y": np.asarray(data_y)})
    self.rng = np.random.default_rng(seed)
    self.compile_s = None

  def batch(self, retain_idx, forget_idx=None):
    """Index arrays -> the batch the step takes: indices plus the crop/flip
    draws, made on the host as ugradsl_jax.batching does."""
    part = lambda idx: {"idx": np.asarray(idx),
                        **self.augment.crop_flip_params(self.rng, len(idx))}
    b = part(retain_idx) if self.kind != "unlearn" else \
        {"retain": part(retain_idx), "forget": part(forget_idx)}
    return self.par.shard(b)

  def compile(self, *idx, compiler_options=None):
    t0 = time.perf_counter()
    lowered = self.fn.lower(self.state, self.data, self.batch(*idx), self.hp)
    self.fn = lowered.compile(compiler_options=compiler_options)
    self.compile_s = time.perf_counter() - t0
    return self.fn

  def __call__(self, *idx):
    self.state, metrics = self.fn(self.state, self.data, self.batch(*idx), self.hp)
    return metrics

  def sync(self):
    self.jax.block_until_ready(self.state)

  def params(self):
    return self.jax.device_get(self.par.unreplicate(self.state).params)


def timed(fn, sync) -> float:
  t0 = time.perf_counter()
  fn()
  sync()
  return time.perf_counter() - t0


def table(rows: list[dict], cols: list[str]) -> str:
  def fmt(v):
    if isinstance(v, float):
      return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)
  out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  out += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
  return "\n".join(out)


def write_json(path: str | None, rows: list[dict]) -> None:
  if path:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(rows, indent=1, default=float) + "\n")
