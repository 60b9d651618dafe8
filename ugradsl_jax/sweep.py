"""Train K hyper-parameter settings at once: jax.vmap over a stacked train state.

The per-device step is vmapped over (state, hp) while data and batch are
shared, so K values of alpha (and p) cost one compilation and one dispatch per
step; under pmap/shard_map the collectives inside the step batch along K.
"""

from __future__ import annotations

import functools

import jax
import numpy as np


def stack(trees: list):
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def unstack(tree, k: int) -> list:
  return [jax.tree.map(lambda x: x[i], tree) for i in range(k)]


def vmapped(step, batch_axis: int | None = None):
  """step(state, data, batch, hp, *, axis_name, ...) -> same, over a leading K axis
  of state and hp. Data are shared by all K runs; so is the batch, or, with
  `batch_axis` 1, each run has its own, stacked on the batch's axis 1 (axis 0
  stays the global batch, which the parallel wrapper splits across devices:
  a fleet's members, each with its own data order)."""
  @functools.wraps(step)
  def run(state, data, batch, hp, *, axis_name, **kw):
    one = functools.partial(step, axis_name=axis_name, **kw)
    return jax.vmap(one, in_axes=(0, None, batch_axis, 0))(state, data, batch, hp)
  return run


def stack_batches(batches: list):
  """K runs' batches -> one, stacked on axis 1 (vmapped(..., batch_axis=1))."""
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs], axis=1), *batches)


def grid(alphas=None, ps=None, alpha0: float = 0.0, p0: float = 0.5,
         betas=None, beta0: float = 0.2, mix: dict | None = None) -> dict:
  """Cartesian grid of alpha x p x beta (x each of `mix`'s axes: a mixing
  rule's own values, {name: values}), {"alpha": [K], "p": [K], "beta": [K],
  name: [K], ...} (float64, as typed; the step casts to float32). A missing
  axis holds its one default value."""
  named = [("alpha", alphas, alpha0), ("p", ps, p0), ("beta", betas, beta0)]
  named += [(k, v, None) for k, v in (mix or {}).items()]
  axes = [np.asarray(v if v else [d], np.float64) for _, v, d in named]
  mesh = np.meshgrid(*axes, indexing="ij")
  return {k: m.ravel() for (k, _, _), m in zip(named, mesh)}
