"""Train state, optimizer, the per-device descent step, and the resumable loop."""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from . import augment as aug
from . import losses
from .parallel import Parallel, pmean

KILL_ENV = "UGRADSL_KILL_AT"  # "phase:step": SIGKILL self after that step (tests)


@flax.struct.dataclass
class TrainState:
  step: jax.Array          # int32 scalar: the number of updates applied
  params: Any
  batch_stats: Any
  opt_state: Any
  nonfinite: jax.Array     # bool, sticky: a loss or gradient was NaN/Inf


@functools.lru_cache(maxsize=8)
def _jitted_init(model):
  # One compilation per model (Linen modules hash by their fields), shared by
  # the original model and Retrain.
  return jax.jit(functools.partial(model.init, train=False))


def init_variables(model, seed: int, input_shape=(32, 32, 3)):
  """{"params", "batch_stats"} (batch_stats {} for a model without BatchNorm).

  Jitted init from an "rbg" key: XLA:CPU compiles threefry-based
  initialisation of a ResNet-18 ~5x slower (22 s vs 4.5 s measured here)."""
  dummy = jnp.zeros((1, *input_shape), jnp.uint8)
  key = jax.random.key(seed, impl="rbg")
  variables = _jitted_init(model)(key, dummy)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def create_state(params, batch_stats, tx) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=batch_stats, opt_state=tx.init(params),
                    nonfinite=jnp.zeros((), bool))


def lr_schedule(kind: str, lr: float, total_steps: int, steps_per_epoch: int,
                milestones=(), warmup_frac: float = 0.15):
  if kind == "constant":
    return optax.constant_schedule(lr)
  if kind == "multistep":
    return optax.piecewise_constant_schedule(
        lr, {int(m * steps_per_epoch): 0.1 for m in milestones})
  if kind == "cosine":
    return optax.cosine_decay_schedule(lr, max(total_steps, 1))
  if kind == "onecycle":
    warm = max(int(warmup_frac * total_steps), 1)
    return optax.warmup_cosine_decay_schedule(
        lr / 25, lr, warm, max(total_steps, warm + 1), end_value=lr * 1e-4)
  raise ValueError(f"unknown lr schedule {kind!r}")


def sgd(schedule, momentum=0.9, weight_decay=5e-4, nesterov=False):
  # Coupled weight decay added to the gradient before momentum: PyTorch's SGD.
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(schedule, momentum=momentum, nesterov=nesterov))


def gather_augment(data, batch, label_key="y"):
  """Device-resident images -> this device's batch, augmented when the batch
  carries crop/flip draws (batching.epochs(..., augment=True))."""
  x = data["x"][batch["idx"]]
  y = data[label_key][batch["idx"]]
  if "off" in batch:
    x = aug.crop_flip(x, batch["off"], batch["flip"])
  return x, y


def forward_loss(model, params, batch_stats, x, y, loss_fn, hp):
  logits, new = model.apply({"params": params, "batch_stats": batch_stats}, x,
                            train=True, mutable=["batch_stats"])
  per_ex = loss_fn(logits, y, hp)
  acc = jnp.mean(jnp.argmax(logits, -1) == y)
  # A model without BatchNorm (ViT) returns no collection: its {} passes through.
  return jnp.mean(per_ex), (new.get("batch_stats", batch_stats), acc)


def apply_update(state: TrainState, grads, tx, batch_stats, loss) -> TrainState:
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  bad = ~jnp.isfinite(loss) | ~jnp.isfinite(optax.tree.norm(grads))
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                       batch_stats=batch_stats, nonfinite=state.nonfinite | bad)


def ce_loss(logits, y, hp):
  return losses.cross_entropy(logits, y)


def descent_step(state: TrainState, data, batch, hp, *, axis_name, model, tx,
                 loss_fn: Callable = ce_loss,
                 reg_fn: Callable | None = None, grad_mask_key: str | None = None,
                 label_key: str = "y"):
  """One SGD step on mean loss_fn(logits, labels, hp) [+ reg_fn(params, step, hp)].

  `loss_fn` = -CE turns this into gradient ascent; `data[grad_mask_key]` (a
  0/1 pytree like params) restricts the update to salient weights (SalUn).
  """
  x, y = gather_augment(data, batch, label_key)

  def total(params):
    loss, aux = forward_loss(model, params, state.batch_stats, x, y, loss_fn, hp)
    if reg_fn is not None:
      loss = loss + reg_fn(params, state.step, hp)
    return loss, aux

  (loss, (bstats, acc)), grads = jax.value_and_grad(total, has_aux=True)(state.params)
  grads = pmean(grads, axis_name)
  bstats = pmean(bstats, axis_name)
  loss, acc = pmean((loss, acc), axis_name)
  if grad_mask_key is not None:
    grads = jax.tree.map(lambda g, m: g * m, grads, data[grad_mask_key])
  state = apply_update(state, grads, tx, bstats, loss)
  return state, {"loss": loss, "acc": acc}


@dataclasses.dataclass
class FitResult:
  state: TrainState          # host copy of the last finite state
  diverged: bool = False
  diverged_step: int | None = None
  run_s: float = 0.0         # wall-clock of the steps, compile excluded
  compile_s: float = 0.0
  images_per_s: float = 0.0
  last_metrics: dict | None = None


def maybe_kill(phase: str, at) -> None:
  """Test hook: SIGKILL this process when $UGRADSL_KILL_AT == "phase:at"."""
  spec = os.environ.get(KILL_ENV)
  if spec and spec == f"{phase}:{at}":
    os.kill(os.getpid(), signal.SIGKILL)


def fit(*, phase: str, par: Parallel, step_fn: Callable, state: TrainState,
        data, batches: Callable[[int], dict], num_steps: int,
        images_per_step: int, hp=None, store=None, ckpt_every: int = 100,
        progress: bool = True) -> FitResult:
  """Runs steps state.step .. num_steps, checking for NaN/Inf and saving every
  `ckpt_every` steps. Resumable: the data order and augmentation draws are
  functions of the step, so a restored state continues exactly.

  The host syncs only at checks (fetching a bool), never every step.
  """
  hp = {} if hp is None else hp
  start = int(np.max(state.step))  # a stacked sweep state has K equal steps
  stacked = np.ndim(state.nonfinite) > 0
  res = FitResult(state=state)
  if start >= num_steps:
    return res
  wrapped = par.wrap(step_fn)
  # A host round trip makes the replicated state a copy: the step donates its
  # buffers, which must never be the caller's (e.g. the original model that
  # every unlearning method starts from).
  rstate = par.replicate(jax.device_get(state))
  rhp = jax.device_put(hp)
  t0 = time.perf_counter()
  compiled = wrapped.lower(rstate, data, par.shard(batches(start)), rhp).compile()
  res.compile_s = time.perf_counter() - t0

  bar = tqdm(total=num_steps * images_per_step, initial=start * images_per_step,
             unit="img", unit_scale=True, desc=phase, disable=not progress,
             dynamic_ncols=True, leave=False)
  last_good = state
  t0 = time.perf_counter()
  metrics = None
  for step in range(start, num_steps):
    rstate, metrics = compiled(rstate, data, par.shard(batches(step)), rhp)
    bar.update(images_per_step)
    done = step + 1
    if done % ckpt_every == 0 or done == num_steps:
      host = jax.device_get(par.unreplicate(rstate))
      if np.any(host.nonfinite) and not stacked:
        res.diverged, res.diverged_step = True, done
        break
      # In a sweep a diverged member is only flagged (its flag is sticky);
      # the others are independent and go on.
      last_good = host
      m = {k: np.asarray(v).tolist() for k, v in
           jax.device_get(par.unreplicate(metrics)).items()}
      res.last_metrics = m
      if not stacked:
        bar.set_postfix({k: f"{v:.3f}" for k, v in m.items()}, refresh=False)
      if store is not None:
        store.save(done, host)
    maybe_kill(phase, done)
  res.run_s = time.perf_counter() - t0
  bar.close()
  res.state = last_good
  steps_run = (res.diverged_step or num_steps) - start
  res.images_per_s = steps_run * images_per_step / max(res.run_s, 1e-9)
  return res
