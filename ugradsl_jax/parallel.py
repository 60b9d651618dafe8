"""Run one per-device step under jax.pmap, jax.jit(jax.shard_map) or plain jit.

A step is written once, per device, as `step(state, data, batch, hp)`:
  state  replicated, donated (params, BatchNorm stats, optimizer state, ...)
  data   replicated, read-only (the whole uint8 image array and labels)
  batch  split along its leading axis across devices (index arrays)
  hp     replicated, small (traced hyper-parameters; may be {})
and reduces over `axis_name` with `pmean` (which is the identity when the
step runs unsharded with axis_name=None). Nothing else in the library knows
which wrapper is in use; evaluation's layout is `eval_layout`'s.

Across processes (distributed.join) the mesh holds every process's devices.
Each process passes the same host values: `replicate` puts a replicated
value on its own devices only, `shard` keeps only its rows of the global
batch (jax.make_array_from_process_local_data), and `unreplicate` /
`gather` bring replicated and batch-split outputs back to every process as
host arrays. The global
batch is the single-process one, so results and resume do not depend on
how many processes share the devices.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

MODES = ("pmap", "shard_map", "none")
AXIS = "batch"


class ParallelError(ValueError):
  pass


def pmean(x, axis_name):
  return x if axis_name is None else jax.lax.pmean(x, axis_name)


def all_gather(x, axis_name):
  """The global batch: x from every device, concatenated on its leading axis."""
  return x if axis_name is None else jax.lax.all_gather(x, axis_name, tiled=True)


def axis_size(axis_name):
  return 1 if axis_name is None else jax.lax.psum(1, axis_name)


@dataclasses.dataclass(frozen=True)
class Parallel:
  mode: str
  devices: tuple

  @property
  def axis_name(self) -> str | None:
    return None if self.mode == "none" else AXIS

  @property
  def n(self) -> int:
    return len(self.devices)

  @functools.cached_property
  def mesh(self):
    return jax.sharding.Mesh(np.array(self.devices), (AXIS,))

  @functools.cached_property
  def multiprocess(self) -> bool:
    return any(d.process_index != jax.process_index() for d in self.devices)

  def _global(self, x: np.ndarray, spec) -> jax.Array:
    """The global array of host value `x` (the same on every process) under
    `spec`, built from this process's part of it only."""
    sharding = NamedSharding(self.mesh, spec)
    if not self.multiprocess:
      return jax.device_put(x, sharding)
    if spec == P():
      return jax.make_array_from_process_local_data(sharding, x, x.shape)
    rows = [i[0] for i in sharding.addressable_devices_indices_map(x.shape).values()]
    lo, hi = min(r.start for r in rows), max(r.stop for r in rows)
    return jax.make_array_from_process_local_data(sharding, x[lo:hi], x.shape)

  def check_batch(self, global_batch: int, what: str = "batch size"):
    if global_batch % self.n:
      raise ParallelError(
          f"{what} {global_batch} does not divide by the {self.n} devices "
          f"used by --parallel {self.mode}")

  def replicate(self, tree):
    """Host/global tree -> the layout the wrapped step takes for replicated args."""
    if self.mode == "pmap":  # a leading device axis, one slice per device
      return jax.tree.map(lambda x: self._global(
          np.broadcast_to(np.asarray(x), (self.n, *np.shape(x))), P(AXIS)), tree)
    if self.mode == "shard_map":
      return jax.tree.map(lambda x: self._global(np.asarray(x), P()), tree)
    return jax.device_put(tree, self.devices[0])

  def unreplicate(self, tree):
    """Inverse of replicate (also for the step's outputs); across processes
    as host arrays (a value on other processes' devices cannot be indexed)."""
    if self.multiprocess:
      def local(x):  # replicated: this process's first copy is the value
        x = np.asarray(x.addressable_data(0))
        return x[0] if self.mode == "pmap" else x
      return jax.tree.map(local, tree)
    if self.mode == "pmap":
      return jax.tree.map(lambda x: x[0], tree)
    return tree

  def gather(self, tree):
    """Batch-split outputs (e.g. predictions) as host arrays, on every
    process; one transfer for the whole tree."""
    if any(isinstance(x, jax.Array) and not x.is_fully_addressable
           for x in jax.tree.leaves(tree)):
      from jax.experimental import multihost_utils
      return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.device_get(tree)

  def put_hp(self, hp):
    """The step's small traced hyper-parameters (in_axes None / P())."""
    if not self.multiprocess:
      return jax.device_put(hp)
    if self.mode == "pmap":
      return jax.tree.map(np.asarray, hp)  # pmap broadcasts a host value
    return self.replicate(hp)

  def shard(self, tree):
    """Global batch tree -> split along the leading axis across devices."""
    def one(x):
      x = np.asarray(x)
      self.check_batch(x.shape[0])
      if self.mode == "pmap":
        return x.reshape(self.n, x.shape[0] // self.n, *x.shape[1:])
      return x
    tree = jax.tree.map(one, tree)
    if self.mode in ("pmap", "shard_map"):
      return jax.tree.map(lambda x: self._global(x, P(AXIS)), tree)
    return jax.device_put(tree, self.devices[0])

  def wrap(self, step: Callable, donate: bool = True) -> Callable:
    """step(state, data, batch, hp, *, axis_name) -> (state, metrics)."""
    fn = functools.partial(step, axis_name=self.axis_name)
    donate_argnums = (0,) if donate else ()
    if self.mode == "pmap":
      return jax.pmap(fn, axis_name=AXIS, in_axes=(0, 0, 0, None),
                      devices=self.devices, donate_argnums=donate_argnums)
    if self.mode == "shard_map":
      # check_vma=False keeps pmap's semantics: jax.grad w.r.t. a replicated
      # input would otherwise already be summed over the mesh, and the
      # step's own pmean would then leave it n times too large.
      sm = jax.shard_map(fn, mesh=self.mesh, in_specs=(P(), P(), P(AXIS), P()),
                         out_specs=P(), check_vma=False)
      return jax.jit(sm, donate_argnums=donate_argnums)
    return jax.jit(fn, donate_argnums=donate_argnums)


@dataclasses.dataclass(frozen=True)
class EvalLayout:
  """How an evaluation pass places its inputs and fetches its outputs."""
  variables: object        # the model's variables, placed once
  put: Callable            # one padded input batch -> placed
  fetch: Callable          # the forward pass's outputs -> host arrays
  batch: int               # the batch size, a multiple of the device count


def eval_layout(par: Parallel | None, variables, batch: int) -> EvalLayout:
  """Evaluation splits each batch by rows across `par`'s devices (one global
  array, XLA partitions the forward pass), whichever wrapper `par`'s steps
  use; with no `par` or one device it runs on the default device."""
  if par is None or par.n == 1:
    fetch = jax.device_get if par is None else par.gather
    return EvalLayout(jax.device_put(variables), np.asarray, fetch, batch)
  spmd = dataclasses.replace(par, mode="shard_map")
  return EvalLayout(spmd.replicate(variables), spmd.shard, par.gather,
                    -(-batch // par.n) * par.n)


def make(mode: str, num_devices: int | None = None) -> Parallel:
  if mode not in MODES:
    raise ParallelError(f"--parallel {mode!r}: must be one of {', '.join(MODES)}")
  if jax.process_count() > 1:
    # One program over every process's devices: no subset, no copies.
    if mode == "none":
      raise ParallelError(f"--parallel none runs on one device; the {jax.process_count()} "
                          "processes of this job need pmap or shard_map")
    if num_devices is not None and num_devices != jax.device_count():
      raise ParallelError(f"--num_devices {num_devices}: a {jax.process_count()}-process "
                          f"job uses all its {jax.device_count()} devices")
    return Parallel(mode, tuple(jax.devices()))
  devices = jax.local_devices()
  if mode == "none":
    devices = devices[:1]
  elif num_devices is not None:
    if num_devices > len(devices):
      raise ParallelError(f"asked for {num_devices} devices, have {len(devices)}")
    devices = devices[:num_devices]
  return Parallel(mode, tuple(devices))
