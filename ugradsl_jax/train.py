"""Train state, optimizer and the per-device descent step: the building
blocks every method's step is made of (the loop that runs steps is loop.py)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from . import augment as aug
from . import losses
from .parallel import axis_size, pmean


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


def init_variables(model, seed: int, input_shape=(32, 32, 3), input_dtype=jnp.uint8):
  """{"params", "batch_stats"} (batch_stats {} for a model without BatchNorm).
  input_shape / input_dtype: one example's (images: uint8 HWC; text: int32 [L]).

  Jitted init from an "rbg" key: XLA:CPU compiles threefry-based
  initialisation of a ResNet-18 ~5x slower (22 s vs 4.5 s measured here)."""
  dummy = jnp.zeros((1, *input_shape), input_dtype)
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


@dataclasses.dataclass(frozen=True)
class HpSGD:
  """sgd() at a constant learning rate whose lr and coupled weight decay are
  step data, hp["lr"] and hp["weight_decay"], not constants compiled into the
  program. Steps that differ in those values alone (UGradSL, UGradSL+ and
  NegGrad+ at their own rates) then lower to one program, which the
  persistent compilation cache compiles once. Its optimizer state is
  sgd(constant lr)'s, so checkpoints of either restore into the other."""
  momentum: float = 0.9
  nesterov: bool = False

  def __call__(self, hp) -> optax.GradientTransformation:
    return sgd(lambda count: hp["lr"], self.momentum, hp["weight_decay"], self.nesterov)

  def init(self, params):
    return self({"lr": 0.0, "weight_decay": 0.0}).init(params)


def optimizer(tx, hp) -> optax.GradientTransformation:
  """The step's optimizer: an optax transformation as given, or an HpSGD
  built from this step's hp."""
  return tx(hp) if isinstance(tx, HpSGD) else tx


def gather_augment(data, batch, label_key="y"):
  """Device-resident images -> this device's batch, augmented when the batch
  carries crop/flip draws (batching.epochs(..., augment=True))."""
  x = data["x"][batch["idx"]]
  # A batch may carry its own labels (RL's, drawn afresh for each batch).
  y = batch["y"] if "y" in batch else data[label_key][batch["idx"]]
  if "off" in batch:
    x = aug.crop_flip(x, batch["off"], batch["flip"])
  return x, y


def step_rng(model, state, axis_name):
  """The Dropout key of this step and device for a model that needs one
  (contract.Model.needs_rng), else None: the library's models draw none."""
  if not getattr(model, "needs_rng", False):
    return None
  key = jax.random.fold_in(jax.random.key(model.seed), state.step)
  return key if axis_name is None else jax.random.fold_in(key, jax.lax.axis_index(axis_name))


def forward(model, params, batch_stats, x, *, features: bool = False, rng=None):
  """Train-mode (logits, new batch stats, penultimate features or None).

  A model without BatchNorm (ViT) returns no batch_stats: its {} passes
  through. Features come from the same pass (the model sows them). `rng`:
  the step's Dropout key (step_rng), for a model that draws one."""
  mutable = ["batch_stats", "intermediates"] if features else ["batch_stats"]
  kw = {} if rng is None else {"rng": rng}
  logits, new = model.apply({"params": params, "batch_stats": batch_stats}, x,
                            train=True, mutable=mutable, **kw)
  feats = new["intermediates"]["features"][0] if features else None
  return logits, new.get("batch_stats", batch_stats), feats


def weighted_mean(values, w, axis_name):
  """This device's share of the mean of `values` over the real rows of the
  global batch (`w`: 1 real, 0 padding; None: every row is real), so that
  pmean over the devices gives the global mean, and the gradient of the
  share the gradient of that mean."""
  values = values.astype(jnp.float32)
  if w is None:
    return jnp.mean(values)
  count = jnp.sum(w) if axis_name is None else jax.lax.psum(jnp.sum(w), axis_name)
  return jnp.sum(w * values) * axis_size(axis_name) / jnp.maximum(count, 1.0)


def accuracy(logits, y, w=None, axis_name=None):
  return weighted_mean(jnp.argmax(logits, -1) == y, w, axis_name)


def global_batch(x, axis_name) -> int:
  """The batch size across all devices (x is this device's share)."""
  return x.shape[0] * axis_size(axis_name)


def real_count(x, w, axis_name):
  """The number of real (not padding) rows of the global batch."""
  if w is None:
    return global_batch(x, axis_name)
  return jnp.sum(w) if axis_name is None else jax.lax.psum(jnp.sum(w), axis_name)


def masked(tree, mask):
  return tree if mask is None else jax.tree.map(lambda t, m: t * m, tree, mask)


def all_finite(*scalars):
  return functools.reduce(jnp.logical_and, [jnp.isfinite(v) for v in scalars])


def apply_update(state: TrainState, direction, tx, hp, batch_stats, checks,
                 mask=None) -> TrainState:
  """One optimizer step along `direction` (a gradient to descend); `tx` an
  optax transformation or an HpSGD, which reads its rates from `hp`.

  `checks`: the scalars that must be finite (losses, gradient norms; the new
  parameters must be too); one that is not sets the sticky `nonfinite`
  flag, and from then on the state keeps its last finite values. With `mask` (a 0/1 pytree
  like params) the weights outside it keep their old values bit for bit:
  masking the gradient alone is not enough, as coupled weight decay and
  momentum inside the optimizer would still move them (SalUn's own fix,
  Unlearn-Saliency issue 32 / PR 33)."""
  updates, opt_state = optimizer(tx, hp).update(direction, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  if mask is not None:
    params = jax.tree.map(lambda new, old, m: jnp.where(m > 0, new, old),
                          params, state.params, mask)
  # Once a step goes non-finite the state stops moving: what is left is the
  # last finite model, which a diverged phase is scored at.
  params_finite = functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(p))
                                                     for p in jax.tree.leaves(params)])
  bad = state.nonfinite | ~all_finite(*checks) | ~params_finite
  keep = lambda new, old: jnp.where(bad, old, new)  # noqa: E731
  return state.replace(step=state.step + 1,
                       params=jax.tree.map(keep, params, state.params),
                       opt_state=jax.tree.map(keep, opt_state, state.opt_state),
                       batch_stats=jax.tree.map(keep, batch_stats, state.batch_stats),
                       nonfinite=bad)


def ce_loss(logits, y, hp):
  return losses.cross_entropy(logits, y)


def descent_step(state: TrainState, data, batch, hp, *, axis_name, model, tx,
                 loss_fn: Callable = ce_loss, sign: float = 1.0,
                 reduction: str = "mean", role: str = "train",
                 reg_fn: Callable | None = None, mask_key: str | None = None,
                 label_key: str = "y"):
  """One SGD step on sign * reduce(loss_fn(logits, labels, hp)) [+ penalty],
  reg_fn(params, step, hp) -> (penalty, metrics dict).

  sign = -1 makes it gradient ascent (GA); reduction "mean" or "sum" over
  the real rows of the global batch (batch["w"], padding weight 0; absent:
  all rows real); `data[mask_key]` (a 0/1 pytree like params) restricts
  the update to those weights (SalUn). Metrics: `<role>_loss` and
  `<role>_acc` are the batch's mean loss_fn and accuracy (role: which set
  the batch is from: retain, forget, or train when it mixes both), and
  `grad_norm` the norm of the direction applied.
  """
  x, y = gather_augment(data, batch, label_key)
  w = batch.get("w")
  scale = sign * (real_count(x, w, axis_name) if reduction == "sum" else 1)
  rng = step_rng(model, state, axis_name)

  def objective(params):
    logits, bstats, _ = forward(model, params, state.batch_stats, x, rng=rng)
    mean_loss = weighted_mean(loss_fn(logits, y, hp), w, axis_name)
    total = scale * mean_loss
    reg_metrics = {}
    if reg_fn is not None:
      # The same on every device, so pmean of the gradients keeps it once.
      reg, reg_metrics = reg_fn(params, state.step, hp)
      total = total + reg
    return total, (bstats, mean_loss, accuracy(logits, y, w, axis_name), reg_metrics)

  (_, (bstats, loss, acc, reg_metrics)), grads = jax.value_and_grad(
      objective, has_aux=True)(state.params)
  grads, bstats = pmean((grads, bstats), axis_name)
  loss, acc = pmean((loss, acc), axis_name)
  mask = None if mask_key is None else data[mask_key]
  grads = masked(grads, mask)
  norm = optax.tree.norm(grads)
  state = apply_update(state, grads, tx, hp, bstats, (loss, norm), mask)
  return state, {f"{role}_loss": loss, f"{role}_acc": acc, "grad_norm": norm,
                 **reg_metrics}
