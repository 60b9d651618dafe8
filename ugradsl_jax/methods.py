"""Pretraining, Retrain and the unlearning methods, as recipes.

A method is a function (exp, orig, m) -> recipe: from the experiment (its
data, split, devices and model), the original model's Phase and the
method's MethodCfg it builds what phases.run executes (a phases.Trained
loop of steps, or a phases.Computed one-shot computation). It runs no
steps itself. REGISTRY maps each name to its function:
  retrain       from scratch on D_r (the gold standard)
  ft            fine-tune on D_r
  ga            gradient ascent on D_f (alpha != 0 gives GA with GLS targets)
  rl            D_f with random wrong labels, together with D_r
  l1_sparse     ft + l1 penalty decayed linearly to 0
  salun         rl restricted to the weights most salient for the forget loss
  neggrad_plus  ugradsl with alpha = 0
  ugradsl       epochs over D_f, each forget batch paired with a retain batch
  ugradsl_plus  epochs over D_r, D_f cycled
  ugradsl_adaptive, ugradsl_plus_adaptive
                the same with the self-adaptive, per-sample rate (adaptive.py)
"""

from __future__ import annotations

import dataclasses
import functools
import time
import zlib
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import (baseline_methods, batching, checkpoint, configs, losses, mixing, sweep, train,
               ugradsl_step)
from .configs import ConfigError, MethodCfg, TrainCfg
from .experiment import Experiment
from .phases import Loaded, Phase, Trained
from .recipes import computed, descent, optimizer, smoothed_ce, with_mask  # noqa: F401
from .split import fingerprint


# --------------------------------------------------------------------------
# Training from scratch: the original model and Retrain.

def train_from_scratch(exp: Experiment, name: str, indices: np.ndarray,
                       t: TrainCfg) -> Trained:
  exp.par.check_batch(t.batch_size, "pretrain batch size")
  batches, spe = batching.epochs(indices, t.batch_size, exp.cfg.seed,
                                 stream=zlib.crc32(name.encode()), augment=t.augment)
  total = spe * t.epochs
  schedule = train.lr_schedule(t.schedule, t.lr, total, spe, t.milestones)
  tx = train.sgd(schedule, t.momentum, t.weight_decay, t.nesterov)
  variables = train.init_variables(exp.model(None), exp.seed_for(name),
                                   exp.data.input_shape, exp.data.train_x.dtype)
  state0 = train.create_state(variables["params"], variables["batch_stats"], tx)
  step = functools.partial(train.descent_step, model=exp.model(), tx=tx)
  return Trained(name, state0, step, batches, total, t.batch_size, t,
                 data=exp.device_data, lr_fn=schedule)


def original(exp: Experiment):
  """The model every method starts from: pretrained on the training set, or
  read from --init_checkpoint."""
  if exp.cfg.init_checkpoint:
    return Loaded("original", functools.partial(from_checkpoint, exp, "original",
                                                exp.cfg.init_checkpoint))
  return train_from_scratch(exp, "original", exp.split.train, exp.cfg.pretrain)


def from_checkpoint(exp: Experiment, name: str, path, check_split: bool = False) -> Phase:
  """A phase's model read from another run's checkpoint instead of trained
  (--init_checkpoint, --retrain_from). Its tree must fit this run's model;
  with `check_split` the source phase must have been trained on this split.
  The outcome is the source's (its RTE) where it has one."""
  variables, outcome = checkpoint.read_variables(path)
  want = train.init_variables(exp.model(None), 0, exp.data.input_shape,
                              exp.data.train_x.dtype)
  for part in ("params", "batch_stats"):
    bad = checkpoint.tree_mismatch(variables[part], want[part])
    if bad:
      raise checkpoint.CheckpointError(
          f"{path}: does not fit this run's {exp.cfg.model} (width {exp.cfg.width}, "
          f"{exp.data.num_classes} classes): {part} {bad}")
  if check_split:
    saved = (outcome or {}).get("meta", {}).get("split")
    if saved != fingerprint(exp.split):
      raise checkpoint.CheckpointError(
          f"{path}: trained on another split (fingerprint {saved}, this run's "
          f"{fingerprint(exp.split)}); a Retrain is only comparable on its own split")
  cast = lambda a, b: np.asarray(a, np.asarray(b).dtype)  # noqa: E731
  state = train.create_state(jax.tree.map(cast, variables["params"], want["params"]),
                             jax.tree.map(cast, variables["batch_stats"], want["batch_stats"]),
                             train.sgd(0.0))
  state = jax.device_get(state)
  keep = ("steps", "rte_s", "compile_s", "io_s", "images_per_s", "diverged", "diverged_step")
  out = {"diverged": False, "diverged_step": None, "steps": 0, "rte_s": None,
         "compile_s": 0.0, "io_s": 0.0, "images_per_s": None, "resumed_from_step": None,
         **{k: outcome[k] for k in keep if outcome and k in outcome},
         "nonfinite": False, "source": str(path)}
  return Phase(state, out)


def retrain(exp: Experiment, orig: Phase, m=None):
  """The gold standard: trained from scratch on D_r (or read from
  --retrain_from, which must hold a Retrain of this split)."""
  del orig, m
  if exp.cfg.retrain_from:
    src = Path(exp.cfg.retrain_from)
    if (src / "retrain").is_dir():  # a whole workdir
      src = src / "retrain"
    return Loaded("retrain", functools.partial(from_checkpoint, exp, "retrain", src,
                                               check_split=True))
  return train_from_scratch(exp, "retrain", exp.split.retain, exp.cfg.pretrain)


# --------------------------------------------------------------------------
# Unlearning from the original model.

def ft(exp, orig, m):
  return descent(exp, "ft", m, orig, exp.split.retain, role="retain")


def ga(exp, orig, m):
  # Ascent (sign -1) on the cross entropy, against GLS targets when alpha != 0.
  return descent(exp, "ga", m, orig, exp.split.forget, role="forget",
                 loss_fn=smoothed_ce, sign=-1.0, hp={"alpha": m.alpha})


# RL's loop as the reference has it per data set (RL.py); elsewhere the
# CIFAR-10 one.
RL_UNION_DATASETS = ("cifar100", "tiny_imagenet")


def rl_loop(m: MethodCfg, dataset: str) -> str:
  if m.rl_loop != "auto":
    return m.rl_loop
  return "union" if dataset in RL_UNION_DATASETS else "sequential"


def rl(exp, orig, m, name="rl", mask=None, extra=None):
  """Random labels on D_f, true ones on D_r (Unlearn-Saliency RL.py). The
  forget labels are drawn uniformly from all classes (the true one
  included) afresh for every batch ("sequential": a pass over D_f, then a
  pass over D_r, each epoch) or every epoch ("union": one shuffled pass over
  both)."""
  s = exp.split
  bs = m.batch_size  # a forget set smaller than a batch: one padded batch
  batches, spe = batching.relabelled(
      s.forget, s.retain, bs, exp.cfg.seed, zlib.crc32(name.encode()),
      exp.data.train_y, exp.data.num_classes, rl_loop(m, exp.cfg.dataset), m.augment)
  return descent(exp, name, m, orig, None, role="train", mask=mask, extra=extra,
                 batches=(batches, spe, bs))


def l1_coefficient(step, hp):
  """Unlearn-Sparse's schedule (FT_iter): in epoch e of E the weight is
  l1 * (1 - e / (E - no_l1_epochs)), constant within the epoch, full in
  epoch 0 and above 0 in the last l1 epoch; 0 for the last no_l1_epochs."""
  epoch = jnp.floor(step.astype(jnp.float32) / hp["steps_per_epoch"])
  span = hp["epochs"] - hp["no_l1_epochs"]
  return jnp.where(epoch < span, hp["l1"] * (1.0 - epoch / span), 0.0)


def l1_penalty(params, step, hp):
  """(coefficient * ||w||_1 over every parameter, {"l1_coef": coefficient}).

  Written as w * sign(w) with the sign held constant, so that its gradient
  is sign(w), 0 at w = 0, as PyTorch's norm(ord=1) has it; jnp.abs's
  gradient is 1 there, which would push every zero-initialised bias."""
  coef = l1_coefficient(step, hp)
  l1 = sum(jnp.sum(w * jax.lax.stop_gradient(jnp.sign(w))) for w in jax.tree.leaves(params))
  return coef * l1, {"l1_coef": coef}


def l1_sparse(exp, orig, m):
  spe = batching.steps_per_epoch(len(exp.split.retain),
                                 exp.batch_for(m.batch_size, exp.split.retain))
  return descent(exp, "l1_sparse", m, orig, exp.split.retain, role="retain",
                 reg_fn=l1_penalty,
                 hp={"l1": m.l1, "steps_per_epoch": float(spe), "epochs": float(m.epochs),
                     "no_l1_epochs": float(m.no_l1_epochs)})


def forget_gradient(exp: Experiment, state, batch: int = 256):
  """(gradient of the summed forget-set cross entropy in eval-mode BatchNorm,
  seconds spent compiling it)."""
  model = exp.model(None)

  def g(params, x, y, w):
    def loss(p):
      logits = model.apply({"params": p, "batch_stats": state.batch_stats}, x,
                           train=False)
      return jnp.sum(w * losses.cross_entropy(logits, y))
    return jax.grad(loss)(params)

  idx = exp.split.forget
  x0 = exp.data.train_x[:batch]
  t0 = time.perf_counter()
  compiled = jax.jit(g).lower(state.params, np.zeros((batch, *x0.shape[1:]), x0.dtype),
                              np.zeros(batch, np.int32), np.zeros(batch, np.float32)).compile()
  compile_s = time.perf_counter() - t0
  total = jax.tree.map(jnp.zeros_like, state.params)
  for s in range(0, len(idx), batch):
    i = idx[s:s + batch]
    w = np.zeros(batch, np.float32)
    w[:len(i)] = 1.0
    i = np.pad(i, (0, batch - len(i)))  # padded rows carry weight 0
    gi = compiled(state.params, exp.data.train_x[i],
                  np.asarray(exp.data.train_y[i], np.int32), w)
    total = jax.tree.map(jnp.add, total, gi)
  return total, compile_s


def saliency_mask(grads, ratio: float):
  """1 for the `ratio` share of weights with the largest |grad| (one global
  threshold across all layers, as SalUn), else 0."""
  flat = jnp.concatenate([jnp.abs(g).ravel() for g in jax.tree.leaves(grads)])
  k = max(int(round(ratio * flat.size)), 1)
  thresh = jnp.sort(flat)[flat.size - k]
  return jax.tree.map(lambda g: (jnp.abs(g) >= thresh).astype(jnp.float32), grads)


def salun(exp, orig, m):
  """RL restricted to the saliency mask. Computing the mask is part of
  SalUn's cost: the outcome's `mask_s` (added to RTE) and `mask_compile_s`
  (added to compile time)."""
  t0 = time.perf_counter()
  grads, compile_s = forget_gradient(exp, orig.state)
  t1 = time.perf_counter()
  select = jax.jit(saliency_mask, static_argnums=1).lower(grads, m.mask_ratio).compile()
  compile_s += time.perf_counter() - t1
  mask = jax.device_get(select(grads))
  return rl(exp, orig, m, name="salun", mask=mask,
            extra={"mask_s": time.perf_counter() - t0 - compile_s,
                   "mask_compile_s": compile_s})


def _paired(exp: Experiment, name, m: MethodCfg, orig: Phase, primary: str,
            sweep_hp: dict | None = None, mask=None) -> Trained:
  """sweep_hp {"alpha": [K], "p": [K], "beta": [K]}: train K settings at once
  (sweep.py). `mask`: a 0/1 weight pytree the update is restricted to."""
  exp.par.check_batch(m.batch_size, f"--{name} batch size")
  exp.par.check_batch(m.forget_batch_size or m.batch_size, f"--{name} forget batch size")
  s = exp.split
  rb = exp.batch_for(m.batch_size, s.retain)
  fb = exp.batch_for(m.forget_batch_size or m.batch_size, s.forget)
  if exp.cfg.passes == "one" and rb != fb:  # e.g. a forget set smaller than a batch
    raise ConfigError(f"--passes one: {name}'s batches are {rb} retain / {fb} forget "
                      "images; one pass needs them equal (--passes auto uses two)")
  # An adaptive row draws its batches as its fixed-rate twin does, so the
  # two differ in the rate alone (a paired comparison, not two data orders).
  stream = zlib.crc32(name.removesuffix("_adaptive").encode())
  if primary == "forget":
    batches, spe = batching.paired(s.forget, s.retain, fb, rb,
                                   exp.cfg.seed, ("forget", "retain"), stream, m.augment)
  else:
    batches, spe = batching.paired(s.retain, s.forget, rb, fb,
                                   exp.cfg.seed, ("retain", "forget"), stream, m.augment)
  total = spe * m.epochs
  tx, schedule, opt_hp = optimizer(m, total, spe)
  step_fn = ugradsl_step.unlearn_step
  state0 = train.create_state(orig.state.params, orig.state.batch_stats, tx)
  mix_hp = mixing.hparams(m.mix, m.mix_hparams) if isinstance(m.mix, str) else {}
  hp, recipe = {"alpha": m.alpha, "p": m.p, "beta": m.beta, **opt_hp, **mix_hp}, m
  if sweep_hp is not None:
    k = len(sweep_hp["alpha"])
    step_fn, state0 = sweep.vmapped(step_fn), sweep.stack([jax.device_get(state0)] * k)
    hp = {**{key: np.full(k, v, np.float32) for key, v in {**opt_hp, **mix_hp}.items()},
          **{key: np.asarray(v, np.float32) for key, v in sweep_hp.items()}}
    name = f"{name}_sweep"
    recipe = {**dataclasses.asdict(m),
              "sweep": {key: np.asarray(v).tolist() for key, v in sweep_hp.items()}}
  data, mask_key = with_mask(exp, mask)
  step = functools.partial(step_fn, model=exp.model(), tx=tx, mix=mixing.get(m.mix),
                           alpha_mode=m.alpha_mode, reduction=m.reduction,
                           mask_key=mask_key, passes=exp.cfg.passes,
                           feature_mode=m.feature_mode)
  return Trained(name, state0, step, batches, total, rb + fb, recipe, data=data, hp=hp,
                 lr_fn=schedule)


PRIMARY = configs.PRIMARY  # which set an epoch of a paired method passes over


def ugradsl_sweep(exp, orig, m, name: str, sweep_hp: dict) -> Trained:
  """A UGradSL-family method at K settings at once."""
  return _paired(exp, name, m, orig, PRIMARY[name], sweep_hp)


def neggrad_plus(exp, orig, m):
  return _paired(exp, "neggrad_plus", dataclasses.replace(m, alpha=0.0), orig, "forget")


def ugradsl(exp, orig, m):
  return _paired(exp, "ugradsl", m, orig, "forget")


def ugradsl_plus(exp, orig, m):
  return _paired(exp, "ugradsl_plus", m, orig, "retain")


def ugradsl_adaptive(exp, orig, m):
  return _paired(exp, "ugradsl_adaptive", m, orig, "forget")


def ugradsl_plus_adaptive(exp, orig, m):
  return _paired(exp, "ugradsl_plus_adaptive", m, orig, "retain")


REGISTRY: dict[str, Callable] = {
    "retrain": retrain, "ft": ft, "ga": ga, "rl": rl, "l1_sparse": l1_sparse,
    "salun": salun, "neggrad_plus": neggrad_plus,
    "ugradsl": ugradsl, "ugradsl_plus": ugradsl_plus,
    "ugradsl_adaptive": ugradsl_adaptive, "ugradsl_plus_adaptive": ugradsl_plus_adaptive}


def register(name: str, *, reads=configs.METHOD_READS["ft"], hparams=None, recipe=None):
  """Decorator: adds `fn(exp, orig, m) -> recipe` as method `name`, run by
  name like the built-in ones (--methods, ugradsl_jax.unlearn, tuning).

  reads    the recipe fields it reads (MethodCfg's; each a --<name>_<field>
           flag and an unlearn keyword); default FT's
  hparams  its own hyper-parameters and their defaults; the run's values
           are configs.method_hparams(name, m.method_hparams)
  recipe   fields that differ from each preset's FT recipe (e.g. lr)

  `fn` builds a phases.Trained (recipes.descent, here as methods.descent,
  and _paired are the built-in methods' builders) or a phases.Computed
  (recipes.computed); the phase's name is `name`."""
  def add(fn: Callable) -> Callable:
    configs.add_method(name, reads, hparams, recipe)
    REGISTRY[name] = fn
    return fn
  return add


REGISTRY.update(baseline_methods.REGISTRY)
