"""The UGradSL step: descend on a retain batch, ascend on a forget batch (NLS).

The two gradients are computed separately and combined by a mixing rule
(mixing.py), so variants of the combination are one small function away.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from . import losses, mixing
from .parallel import pmean
from .train import TrainState, apply_update, ce_loss, forward_loss, gather_augment


def nls_loss(logits, y, hp):
  return losses.smoothed_cross_entropy(logits, y, hp["alpha"])


def unlearn_step(state: TrainState, data, batch, hp, *, axis_name, model, tx,
                 mix: Callable = mixing.weighted_sum):
  """batch: {"retain": {...}, "forget": {...}} (batching.paired);
  hp: {"alpha", "p", ...}, traceable so sweeps can vmap over it.

  BatchNorm running statistics are updated by the retain forward, then by the
  forget forward, as two successive forward passes of a PyTorch model would.
  """
  x_r, y_r = gather_augment(data, batch["retain"])
  x_f, y_f = gather_augment(data, batch["forget"])

  grad = jax.value_and_grad(forward_loss, argnums=1, has_aux=True)
  (l_r, (bs, acc_r)), g_r = grad(model, state.params, state.batch_stats,
                                 x_r, y_r, ce_loss, hp)
  (l_f, (bs, acc_f)), g_f = grad(model, state.params, bs, x_f, y_f, nls_loss, hp)
  g_r, g_f, bs = pmean((g_r, g_f, bs), axis_name)
  l_r, l_f, acc_r, acc_f = pmean((l_r, l_f, acc_r, acc_f), axis_name)

  direction = mix(g_r, g_f, hp)
  p = jnp.asarray(hp["p"], jnp.float32)
  loss = p * l_r - (1.0 - p) * l_f
  state = apply_update(state, direction, tx, bs, loss)
  return state, {"loss": loss, "retain_loss": l_r, "forget_loss": l_f,
                 "retain_acc": acc_r, "forget_acc": acc_f}
