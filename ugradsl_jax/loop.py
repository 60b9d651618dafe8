"""The resumable training loop, and the hooks that watch it.

  fit(step_fn, state, data, batches, num_steps, par=..., hooks=[...]) -> FitResult

The loop owns what decides the numbers: which step runs next, when the
state is fetched and checked for NaN/Inf, and which state a diverged phase
ends with. Everything else is a hook, an object with any of these methods:

  start(phase, start_step, num_steps)   once, after compiling, before the steps
  dispatched(phase, done, device_state) after each step is dispatched (no sync)
  logged(phase, row)                    each history row (every log_every steps)
  checkpoint(phase, done, host_state)   at each checkpoint, the state on the host
  stepped(phase, done)                  after each step's logging and checkpoint
  end(phase, result)                    once, after the last step

The library's hooks: `Progress` (a tqdm bar), `HistoryFile` (history.jsonl),
`Checkpoints` (a checkpoint.PhaseStore) and `Probe` (a speed estimate after
the first steps). `add_global_hook` adds a hook to every fit of the process
(a plugin's, e.g. the tests' kill switch); `notify` passes other events,
such as a phase's scores being saved, to the global hooks.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from . import history as history_lib
from .parallel import Parallel
from .train import TrainState

FLAG = "_nonfinite"

_GLOBAL_HOOKS: list = []


def add_global_hook(hook) -> None:
  """`hook` joins every fit in this process, after the fit's own hooks."""
  _GLOBAL_HOOKS.append(hook)


def notify(event: str, *args) -> None:
  """Calls `event(*args)` on every global hook that has it."""
  _call(_GLOBAL_HOOKS, event, *args)


@dataclasses.dataclass
class FitResult:
  state: TrainState          # host copy of the last finite state
  diverged: bool = False
  diverged_step: int | None = None
  run_s: float = 0.0         # wall-clock of the steps: no compile, checks or saves
  io_s: float = 0.0          # the checkpoints' host fetch, check and `checkpoint` hooks
  compile_s: float = 0.0
  images_per_s: float = 0.0
  last_metrics: dict | None = None
  history: list | None = None  # the rows logged by this call
  no_finite_step: bool = False  # diverged on its first step: nothing to score


def _with_flag(step_fn):
  """The step, with its state's sticky non-finite flag among the metrics, so
  that the loop reads it with the lagged metrics instead of syncing."""
  def step(state, data, batch, hp, **kw):
    state, metrics = step_fn(state, data, batch, hp, **kw)
    return state, {**metrics, FLAG: state.nonfinite}
  return step


def _host(tree) -> dict:
  return {k: np.asarray(v).tolist() for k, v in jax.device_get(tree).items()}


def _call(hooks, event: str, *args) -> None:
  for h in hooks:
    fn = getattr(h, event, None)
    if fn is not None:
      fn(*args)


def fit(*, phase: str, par: Parallel, step_fn: Callable, state: TrainState,
        data, batches: Callable[[int], dict], num_steps: int,
        images_per_step: int, hp=None, ckpt_every: int = 100,
        log_every: int = 10, lr_fn: Callable | None = None,
        hooks=()) -> FitResult:
  """Runs steps state.step .. num_steps. Resumable: the data order and
  augmentation draws are functions of the step, so a restored state
  continues exactly.

  Every `log_every` steps (and the last) a row of the step's metrics, the
  learning rate (`lr_fn(step)`) and images/s goes to the `logged` hooks. A
  logged step's metrics are fetched after the next step is dispatched, so
  the device never waits for the host; the host syncs only at checkpoints
  (every `ckpt_every` steps and the last), where the state is fetched and
  checked. The state's sticky non-finite flag stops the loop within one
  logged step; the state then holds its last finite values, which are the
  result. RTE (`run_s`) leaves out the checkpoints' host work (the fetch,
  the check and the `checkpoint` hooks, e.g. the save), which `io_s`
  reports; the other hooks run inside it.
  """
  hp = {} if hp is None else hp
  hooks = (*hooks, *_GLOBAL_HOOKS)
  start = int(np.max(state.step))  # a stacked sweep state has K equal steps
  stacked = np.ndim(state.nonfinite) > 0
  res = FitResult(state=state, history=[])
  if start >= num_steps:
    return res
  wrapped = par.wrap(_with_flag(step_fn))
  # A host round trip makes the replicated state a copy: the step donates its
  # buffers, which must never be the caller's (e.g. the original model that
  # every unlearning method starts from).
  rstate = par.replicate(jax.device_get(state))
  rhp = par.put_hp(hp)
  t0 = time.perf_counter()
  compiled = wrapped.lower(rstate, data, par.shard(batches(start)), rhp).compile()
  res.compile_s = time.perf_counter() - t0

  _call(hooks, "start", phase, start, num_steps)
  last_good = state
  t0 = time.perf_counter()
  last_log = [start, t0, 0.0]  # step, time, io_s at the last logged row
  pending = None

  def log(done, metrics):
    m = _host(par.unreplicate(metrics))  # waits for that step only
    flag = m.pop(FLAG)
    if not stacked and flag and not res.diverged:
      # Caught within one logged step; the state has kept the last finite values.
      res.diverged, res.diverged_step = True, done
    now = time.perf_counter()
    busy = now - last_log[1] - (res.io_s - last_log[2])
    row = {"step": done, **m,
           "lr": float(lr_fn(done - 1)) if lr_fn is not None else None,
           "images_per_s": (done - last_log[0]) * images_per_step / max(busy, 1e-9)}
    last_log[:] = [done, now, res.io_s]
    row = history_lib.clean(row)
    res.history.append(row)
    _call(hooks, "logged", phase, row)

  for step in range(start, num_steps):
    rstate, metrics = compiled(rstate, data, par.shard(batches(step)), rhp)
    done = step + 1
    _call(hooks, "dispatched", phase, done, rstate)
    if pending is not None:  # the previous logged step, while this one runs
      log(*pending)
      pending = None
      if res.diverged:
        break
    if done % log_every == 0 or done == num_steps:
      pending = (done, metrics)
    if done % ckpt_every == 0 or done == num_steps:
      jax.block_until_ready(rstate)  # compute, not I/O: it stays in RTE
      if pending is not None:  # a checkpoint's history is complete up to it
        log(*pending)
        pending = None
      t_io = time.perf_counter()
      host = jax.device_get(par.unreplicate(rstate))
      if np.any(host.nonfinite) and not stacked:
        res.diverged, res.diverged_step = True, res.diverged_step or done
        res.io_s += time.perf_counter() - t_io
        break
      # In a sweep a diverged member is only flagged (its flag is sticky);
      # the others are independent and go on.
      last_good = host
      res.last_metrics = {k: v for k, v in _host(par.unreplicate(metrics)).items()
                          if k != FLAG}
      _call(hooks, "checkpoint", phase, done, host)
      res.io_s += time.perf_counter() - t_io
    _call(hooks, "stepped", phase, done)
  if pending is not None and not res.diverged:
    log(*pending)
  res.run_s = time.perf_counter() - t0 - res.io_s
  if res.diverged:
    # The frozen state is the last finite one, newer than the last checkpoint.
    last_good = jax.device_get(par.unreplicate(rstate))
    res.no_finite_step = all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(last_good.params), jax.tree.leaves(state.params)))
  res.state = last_good
  steps_run = (res.diverged_step or num_steps) - start
  res.images_per_s = steps_run * images_per_step / max(res.run_s, 1e-9)
  _call(hooks, "end", phase, res)
  return res


# --------------------------------------------------------------------------
# The library's hooks.

class Progress:
  """A tqdm bar in images, with the batch's losses and accuracies."""

  def __init__(self, images_per_step: int, enabled: bool = True):
    self.images_per_step, self.enabled, self.bar = images_per_step, enabled, None

  def start(self, phase, start, num_steps):
    n = self.images_per_step
    self.bar = tqdm(total=num_steps * n, initial=start * n, unit="img", unit_scale=True,
                    desc=phase, disable=not self.enabled, dynamic_ncols=True, leave=False)

  def dispatched(self, phase, done, state):
    self.bar.update(self.images_per_step)

  def logged(self, phase, row):
    # A sweep's row holds K values a metric: no postfix.
    self.bar.set_postfix({k: f"{v:.3f}" for k, v in row.items()
                          if k.endswith(("_acc", "_loss")) and isinstance(v, float)},
                         refresh=False)

  def end(self, phase, result):
    self.bar.close()


class HistoryFile:
  """history.jsonl at `path`: cut back to the step a phase resumes from,
  then a line per logged row."""

  def __init__(self, path):
    self.path, self.file = path, None

  def start(self, phase, start, num_steps):
    self.file = history_lib.History(self.path, start)

  def logged(self, phase, row):
    self.file.append(row)


class Checkpoints:
  """Saves the state at every checkpoint of the loop into a PhaseStore."""

  def __init__(self, store):
    self.store = store

  def checkpoint(self, phase, done, host_state):
    self.store.save(done, host_state)


class Probe:
  """Calls `report(images_per_s)` once, after the first `steps` steps of the
  fit, waiting for them: a speed estimate (e.g. for a warning)."""

  def __init__(self, report: Callable[[float], None], images_per_step: int, steps: int = 2):
    self.report, self.images_per_step, self.steps = report, images_per_step, steps
    self.start_step = self.num_steps = self.t0 = None

  def start(self, phase, start, num_steps):
    self.start_step, self.num_steps, self.t0 = start, num_steps, time.perf_counter()

  def dispatched(self, phase, done, state):
    if self.report is None:
      return
    if done - self.start_step == min(self.steps, self.num_steps - self.start_step):
      jax.block_until_ready(state)
      ran = done - self.start_step
      self.report(ran * self.images_per_step / max(time.perf_counter() - self.t0, 1e-9))
      self.report = None
