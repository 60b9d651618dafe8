"""Running a phase from its recipe: reuse it when its workdir has it
finished, resume it from its last checkpoint, or run it from the start.

A method (methods.py, baseline_methods.py) returns a recipe and runs
nothing itself:

  Trained    steps of a loop (loop.fit): the starting state, the step, the
             batches, the number of steps, the step's hp and device data
  Computed   one computation without a loop (SSD, IU): `compute()` ->
             (params, outcome)
  Loaded     a model read from elsewhere (--init_checkpoint, --retrain_from)

`run(exp, runner, recipe)` executes it and returns a `Phase`: the model's
state on the host and the outcome (RTE, compile time, divergence, ...).
A `Runner` says where phases are saved (workdir None: nowhere) and how
they are watched (a progress bar, a speed probe).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from . import checkpoint, history, loop, train
from .experiment import Experiment


@dataclasses.dataclass
class Phase:
  state: train.TrainState  # host copy
  outcome: dict


@dataclasses.dataclass(frozen=True)
class Trained:
  name: str
  state0: train.TrainState
  step: Callable                     # (state, data, batch, hp, *, axis_name) -> (state, metrics)
  batches: Callable[[int], dict]     # step -> this step's global batch
  num_steps: int
  images_per_step: int
  recipe: Any                        # what the saved phase records as its recipe
  data: dict                         # the device data the step reads
  hp: dict = dataclasses.field(default_factory=dict)
  lr_fn: Callable | None = None      # the learning rate at a step, for the history
  extra: dict = dataclasses.field(default_factory=dict)  # joins a fresh run's outcome
  meta: dict = dataclasses.field(default_factory=dict)   # overrides of exp.meta
  finish: Callable[[Phase], Phase] | None = None         # e.g. pruning a shadow class


@dataclasses.dataclass(frozen=True)
class Computed:
  name: str
  state0: train.TrainState
  recipe: Any
  compute: Callable[[], tuple]       # () -> (params, {"rte_s", "compile_s", ...})


@dataclasses.dataclass(frozen=True)
class Loaded:
  name: str
  load: Callable[[], Phase]


@dataclasses.dataclass(frozen=True)
class Runner:
  workdir: Path | None = None        # None: phases are not saved (API, screening)
  progress: bool = True
  probe: Callable[[float], None] | None = None  # loop.Probe's report, every phase


def run(exp: Experiment, runner: Runner, recipe) -> Phase:
  if isinstance(recipe, Loaded):
    return recipe.load()
  if isinstance(recipe, Computed):
    return _computed(exp, runner, recipe)
  phase = _trained(exp, runner, recipe)
  return phase if recipe.finish is None else recipe.finish(phase)


def _store(exp: Experiment, runner: Runner, name: str, recipe, meta=None):
  return checkpoint.PhaseStore(Path(runner.workdir) / name,
                               {**exp.meta(name, recipe), **(meta or {})})


def finished(runner: Runner, recipe) -> bool:
  """Whether the runner's workdir holds `recipe`'s phase finished (its meta
  is checked when it is read back)."""
  return runner.workdir is not None and \
      (Path(runner.workdir) / recipe.name / checkpoint.OUTCOME).exists()


def save_finished(exp: Experiment, runner: Runner, r: Trained, state, outcome: dict) -> None:
  """`state` saved as recipe `r`'s finished phase, as `run` would have left
  it (a phase trained elsewhere, e.g. as a member of a vmapped fleet)."""
  if runner.workdir is None:
    return
  store = _store(exp, runner, r.name, r.recipe, r.meta)
  try:
    store.save(int(state.step), state)
    store.finish(outcome)
  finally:
    store.close()


def _trained(exp: Experiment, runner: Runner, r: Trained) -> Phase:
  hooks = [loop.Progress(r.images_per_step, runner.progress)]
  if runner.probe is not None:
    hooks.append(loop.Probe(runner.probe, r.images_per_step))

  def fit(state, more=()):
    return loop.fit(phase=r.name, par=exp.par, step_fn=r.step, state=state, data=r.data,
                    batches=r.batches, num_steps=r.num_steps,
                    images_per_step=r.images_per_step, hp=r.hp,
                    ckpt_every=exp.cfg.ckpt_every, log_every=exp.cfg.log_every,
                    lr_fn=r.lr_fn, hooks=[*hooks, *more])

  if runner.workdir is None:
    res = fit(r.state0)
    return Phase(res.state, {**_outcome(res, r.num_steps, None), **r.extra,
                             "history": res.history})
  store = _store(exp, runner, r.name, r.recipe, r.meta)
  try:
    done = store.outcome()
    if done is not None:
      return Phase(jax.device_get(store.restore(checkpoint.abstract_of(r.state0))), done)
    state, resumed = r.state0, None
    if store.latest_step() is not None:
      state = jax.device_get(store.restore(checkpoint.abstract_of(r.state0)))
      resumed = int(state.step)
    res = fit(state, [loop.HistoryFile(store.dir / history.FILE), loop.Checkpoints(store)])
    outcome = {**_outcome(res, r.num_steps, resumed), **r.extra}
    if res.diverged and store.latest_step() != int(res.state.step):
      # The last finite state, frozen after the steps that came before the
      # divergence: the one a rerun restores and scores.
      store.save(int(res.state.step), res.state)
    store.finish(outcome)
    return Phase(res.state, outcome)
  finally:
    store.close()


def _outcome(res: loop.FitResult, num_steps: int, resumed) -> dict:
  return {"diverged": res.diverged, "diverged_step": res.diverged_step,
          "no_finite_step": res.no_finite_step,
          "steps": num_steps, "rte_s": res.run_s, "compile_s": res.compile_s,
          "io_s": res.io_s,
          "images_per_s": res.images_per_s, "resumed_from_step": resumed,
          "last_metrics": res.last_metrics,
          "nonfinite": np.asarray(res.state.nonfinite).tolist()}


def _computed(exp: Experiment, runner: Runner, r: Computed) -> Phase:
  state0 = jax.device_get(r.state0)
  if runner.workdir is None:
    params, out = r.compute()
    return Phase(state0.replace(params=jax.device_get(params)), _computed_outcome(out))
  store = _store(exp, runner, r.name, r.recipe)
  try:
    done = store.outcome()
    if done is not None:
      return Phase(jax.device_get(store.restore(checkpoint.abstract_of(state0))), done)
    params, out = r.compute()
    state = state0.replace(params=jax.device_get(params))
    outcome = _computed_outcome(out)
    store.save(0, state)
    store.finish(outcome)
    return Phase(state, outcome)
  finally:
    store.close()


def _computed_outcome(out: dict) -> dict:
  return {"diverged": False, "diverged_step": None, "no_finite_step": False, "steps": 0,
          "io_s": 0.0, "images_per_s": None, "resumed_from_step": None,
          "last_metrics": None, "nonfinite": False, **out}


def cost(outcome: dict) -> dict:
  """RTE and what it leaves out. RTE: the unlearning steps' wall-clock plus
  any set-up the method needs (SalUn's saliency mask, `mask_s`; Boundary
  Shrink's attack, `setup_s`); without compilation (`compile_s`) and
  without the loop's host checks and checkpoint saves (`io_s`), both
  reported apart. Evaluation is outside."""
  mask_s = outcome.get("mask_s", 0.0)
  setup_s = outcome.get("setup_s", 0.0)
  rte = outcome.get("rte_s")  # None: read from a checkpoint that did not say
  return {"rte_s": None if rte is None else rte + mask_s + setup_s, "mask_s": mask_s,
          "compile_s": outcome["compile_s"] + outcome.get("mask_compile_s", 0.0)
          + outcome.get("setup_compile_s", 0.0),
          "io_s": outcome.get("io_s")}
