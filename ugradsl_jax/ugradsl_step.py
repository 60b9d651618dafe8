"""The UGradSL step: descend on a retain batch, ascend on a forget batch (NLS).

The two gradients are computed separately and combined by a mixing rule
(mixing.py), so variants of the combination are one small function away.
With a fixed rate and batches of one size, both can go through the network in
one vmapped pass (`passes="one"`, or "auto" where it applies): the same
semantics as two passes, batch statistics per set and the running statistics
updated retain first, then forget. The default stays two passes, which are
2.5x faster on XLA:CPU (benchmarks/README.md, "one_pass").
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from . import adaptive, losses, mixing
from .models import BN_MOMENTUM
from .parallel import all_gather, pmean
from .train import (TrainState, accuracy, apply_update, forward, gather_augment,
                    masked, real_count, step_rng, weighted_mean)

ALPHA_MODES = ("fixed", "adaptive")
REDUCTIONS = ("mean", "sum")
PASSES = ("two", "one", "auto")


def eval_features(model, state, x):
  """Penultimate features of `x` in eval mode (BatchNorm's running
  statistics), under stop_gradient: the same normalisation for a forget
  batch and a retain batch, whatever classes each holds."""
  _, new = model.apply({"params": state.params, "batch_stats": state.batch_stats}, x,
                       train=False, mutable=["intermediates"])
  return jax.lax.stop_gradient(new["intermediates"]["features"][0])


def _two_passes(state, model, x_r, y_r, x_f, y_f, w_r, w_f, hp, adapt, axis_name,
                feature_mode="train"):
  """Retain forward/backward, then forget (its BatchNorm update on top)."""
  rng = step_rng(model, state, axis_name)
  rng_r, rng_f = (None, None) if rng is None else jax.random.split(rng)
  in_eval = adapt and feature_mode == "eval"

  def retain_loss(params, bstats):
    logits, bstats, h = forward(model, params, bstats, x_r, features=adapt, rng=rng_r)
    loss = weighted_mean(losses.cross_entropy(logits, y_r), w_r, axis_name)
    return loss, (bstats, accuracy(logits, y_r, w_r, axis_name), h)

  (l_r, (bs, acc_r, h_r)), g_r = jax.value_and_grad(retain_loss, has_aux=True)(
      state.params, state.batch_stats)
  if in_eval:
    h_r = eval_features(model, state, x_r)
  h_retain = all_gather(jax.lax.stop_gradient(h_r), axis_name) if adapt else None
  w_retain = None if (w_r is None or not adapt) else all_gather(w_r, axis_name)

  def forget_loss(params, bstats):
    logits, bstats, h_f = forward(model, params, bstats, x_f, features=adapt, rng=rng_f)
    if in_eval:
      h_f = eval_features(model, state, x_f)
    alpha = (adaptive.adaptive_alpha(h_f, h_retain, hp["alpha"], hp["beta"], w_retain)
             if adapt else hp["alpha"])
    loss = weighted_mean(losses.smoothed_cross_entropy(logits, y_f, alpha), w_f, axis_name)
    alpha_mean = (weighted_mean(alpha, w_f, axis_name) if adapt
                  else jnp.asarray(alpha, jnp.float32))
    return loss, (bstats, accuracy(logits, y_f, w_f, axis_name), alpha_mean)

  (l_f, (bs, acc_f, alpha_mean)), g_f = jax.value_and_grad(forget_loss, has_aux=True)(
      state.params, bs)
  return g_r, g_f, bs, (l_r, l_f, acc_r, acc_f, alpha_mean)


def _one_pass(state, model, x_r, y_r, x_f, y_f, w_r, w_f, hp, axis_name=None):
  """Both sets through one vmapped forward/backward (a member per set, so
  BatchNorm normalises each with its own batch statistics). The retain
  member's targets are one-hot (rate 0: its cross entropy), the forget
  member's NLS. Both start from the old running statistics; composing the
  two updates, m*(m*old + (1-m)*mu_r) + (1-m)*mu_f, is m*new_r + new_f - m*old."""
  rng = step_rng(model, state, axis_name)

  def member(x, y, alpha, key, w):
    def loss(params):
      logits, bstats, _ = forward(model, params, state.batch_stats, x, rng=key)
      t = losses.smoothed_labels(y, logits.shape[-1], alpha)
      return (weighted_mean(losses.soft_cross_entropy(logits, t), w, axis_name),
              (bstats, accuracy(logits, y, w, axis_name)))
    return jax.value_and_grad(loss, has_aux=True)(state.params)

  alphas = jnp.stack([jnp.zeros((), jnp.float32), jnp.asarray(hp["alpha"], jnp.float32)])
  keys = None if rng is None else jax.random.split(rng)
  ws = None if w_r is None else jnp.stack([w_r, w_f])
  (l, (bs, acc)), g = jax.vmap(member, in_axes=(0, 0, 0, None if keys is None else 0,
                                                None if ws is None else 0))(
      jnp.stack([x_r, x_f]), jnp.stack([y_r, y_f]), alphas, keys, ws)
  first = lambda t: jax.tree.map(lambda a: a[0], t)  # noqa: E731
  second = lambda t: jax.tree.map(lambda a: a[1], t)  # noqa: E731
  m = BN_MOMENTUM
  bs = jax.tree.map(lambda r, f, old: m * r + f - m * old,
                    first(bs), second(bs), state.batch_stats)
  return first(g), second(g), bs, (l[0], l[1], acc[0], acc[1], jnp.asarray(hp["alpha"],
                                                                          jnp.float32))


def one_pass_applies(x_r, x_f, alpha_mode: str) -> bool:
  """The vmapped pass needs batches of one shape, and a fixed rate (the
  adaptive one needs the retain features before the forget loss)."""
  return alpha_mode == "fixed" and x_r.shape == x_f.shape


def unlearn_step(state: TrainState, data, batch, hp, *, axis_name, model, tx,
                 mix: Callable = mixing.weighted_sum, alpha_mode: str = "fixed",
                 reduction: str = "mean", mask_key: str | None = None,
                 passes: str = "two", feature_mode: str = "train"):
  """batch: {"retain": {...}, "forget": {...}} (batching.paired);
  hp: {"alpha", "p"[, "beta"]} (and "lr", "weight_decay" when tx is a
  train.HpSGD), traceable so sweeps can vmap over it.

  alpha_mode "adaptive": each forget example's rate is alpha * (1 - rho_j),
  rho_j its share of neighbours within feature distance beta in the
  *global* retain batch (features gathered from every device), adaptive.py.
  feature_mode "train": the features of the train-mode passes (each batch
  normalised by its own statistics); "eval": of an extra eval-mode pass of
  both batches (running statistics), so that BatchNorm does not remove a
  class-wise forget batch's shift from the retain batch.
  reduction "mean": the gradients of the batch means; "sum": of the batch
  sums (the paper's form, METHOD.md s.9), i.e. the means times the global
  batch sizes. `data[mask_key]` restricts the update to a 0/1 weight mask.
  passes "auto": one vmapped pass where one_pass_applies, else two; "one"
  insists (an error where it cannot), "two" never.

  BatchNorm running statistics are updated by the retain forward, then by the
  forget forward, as two successive forward passes of a PyTorch model would.
  Metrics are the terms themselves, whatever the mixing rule: each set's
  mean loss (the forget loss against its NLS targets) and accuracy, each
  gradient's norm and the norm of the direction applied, and the rule's
  own diagnostics when it returns (direction, diagnostics).
  """
  x_r, y_r = gather_augment(data, batch["retain"])
  x_f, y_f = gather_augment(data, batch["forget"])
  w_r, w_f = batch["retain"].get("w"), batch["forget"].get("w")
  if (w_r is None) != (w_f is None):
    raise ValueError("batch: both sets carry row weights 'w' or neither does")
  adapt = alpha_mode == "adaptive"
  if passes not in PASSES:
    raise ValueError(f"passes {passes!r}: one of {', '.join(PASSES)}")
  one = passes == "one" or (passes == "auto" and one_pass_applies(x_r, x_f, alpha_mode))
  if one and not one_pass_applies(x_r, x_f, alpha_mode):
    raise ValueError(f"passes='one' needs a fixed rate and equal batches; got "
                     f"{alpha_mode} and {x_r.shape[0]} / {x_f.shape[0]}")
  if one:
    g_r, g_f, bs, terms = _one_pass(state, model, x_r, y_r, x_f, y_f, w_r, w_f, hp,
                                    axis_name)
  else:
    g_r, g_f, bs, terms = _two_passes(state, model, x_r, y_r, x_f, y_f, w_r, w_f, hp,
                                      adapt, axis_name, feature_mode)
  l_r, l_f, acc_r, acc_f, alpha_mean = terms
  g_r, g_f, bs = pmean((g_r, g_f, bs), axis_name)
  l_r, l_f, acc_r, acc_f, alpha_mean = pmean((l_r, l_f, acc_r, acc_f, alpha_mean),
                                             axis_name)
  if reduction == "sum":
    n_r, n_f = real_count(x_r, w_r, axis_name), real_count(x_f, w_f, axis_name)
    g_r = jax.tree.map(lambda g: g * n_r, g_r)
    g_f = jax.tree.map(lambda g: g * n_f, g_f)

  mask = None if mask_key is None else data[mask_key]
  direction, diagnostics = mixing.split_output(mix(g_r, g_f, hp))
  direction = masked(direction, mask)
  norm_r, norm_f, norm_d = (optax.tree.norm(g) for g in (g_r, g_f, direction))
  state = apply_update(state, direction, tx, hp, bs, (l_r, l_f, norm_r, norm_f, norm_d),
                       mask)
  metrics = {"retain_loss": l_r, "forget_loss": l_f, "retain_acc": acc_r,
             "forget_acc": acc_f, "retain_grad_norm": norm_r,
             "forget_grad_norm": norm_f, "update_norm": norm_d}
  if adapt:
    metrics["forget_alpha"] = alpha_mean  # the batch's mean adaptive rate
  clash = sorted(set(diagnostics) & set(metrics))
  if clash:
    raise ValueError(f"mixing rule diagnostics {clash} clash with the step's own metrics")
  metrics.update(diagnostics)
  return state, metrics

