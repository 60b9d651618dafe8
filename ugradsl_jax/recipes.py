"""Builders of method recipes, shared by the built-in methods (methods.py),
the other baselines (baseline_methods.py) and methods added from user code.

  descent(exp, name, m, orig, indices, ...)  epochs of descent or ascent
                                             over a set -> phases.Trained
  computed(orig, name, recipe, compute)      a one-shot method -> phases.Computed
  optimizer(m, total_steps, steps_per_epoch) a method's SGD and its schedule
"""

from __future__ import annotations

import functools
import zlib

from . import batching, losses, train
from .configs import MethodCfg
from .experiment import Experiment
from .phases import Computed, Phase, Trained


def optimizer(m: MethodCfg, total: int, spe: int):
  """(optimizer, its learning-rate schedule, the hp entries it reads).

  At a constant rate the lr and weight decay travel as step data (HpSGD),
  so methods whose steps differ in them alone share one compiled program."""
  schedule = train.lr_schedule(m.schedule, m.lr, total, spe)
  if m.schedule == "constant":
    return (train.HpSGD(m.momentum, m.nesterov), schedule,
            {"lr": float(m.lr), "weight_decay": float(m.weight_decay)})
  return train.sgd(schedule, m.momentum, m.weight_decay, m.nesterov), schedule, {}


def descent(exp: Experiment, name, m: MethodCfg, orig: Phase, indices, *, role: str,
            loss_fn=train.ce_loss, sign=1.0, label_key="y", reg_fn=None, mask=None,
            hp=None, extra=None, batches=None, **recipe_kw) -> Trained:
  """Epochs of descent (sign 1) or ascent (-1) over `indices`, or over
  `batches` = (batches, steps per epoch, batch size) made by the caller.
  `recipe_kw` go to the Trained recipe (meta, finish)."""
  exp.par.check_batch(m.batch_size, f"--{name} batch size")
  if batches is None:
    bs = exp.batch_for(m.batch_size, indices)
    batches, spe = batching.epochs(indices, bs, exp.cfg.seed,
                                   stream=zlib.crc32(name.encode()), augment=m.augment)
  else:
    batches, spe, bs = batches
  total = spe * m.epochs
  tx, schedule, opt_hp = optimizer(m, total, spe)
  data, mask_key = with_mask(exp, mask)
  step = functools.partial(train.descent_step, model=exp.model(), tx=tx,
                           loss_fn=loss_fn, sign=sign, reduction=m.reduction,
                           role=role, label_key=label_key, reg_fn=reg_fn,
                           mask_key=mask_key)
  state0 = train.create_state(orig.state.params, orig.state.batch_stats, tx)
  hp = {"total_steps": float(total), **opt_hp, **(hp or {})}
  return Trained(name, state0, step, batches, total, bs, m, data=data, hp=hp,
                 lr_fn=schedule, extra=extra or {}, **recipe_kw)


def with_mask(exp: Experiment, mask):
  """(the device data, the key of the weight mask in it or None)."""
  if mask is None:
    return exp.device_data, None
  return {**exp.device_data, "mask": exp.par.replicate(mask)}, "mask"


def smoothed_ce(logits, y, hp):
  return losses.smoothed_cross_entropy(logits, y, hp["alpha"])


def computed(orig: Phase, name: str, recipe, compute) -> Computed:
  """A method without a training loop (SSD, IU): `compute()` -> (params,
  outcome dict with rte_s and compile_s) from the original model's state."""
  state0 = train.create_state(orig.state.params, orig.state.batch_stats, train.sgd(0.0))
  return Computed(name, state0, recipe, compute)
