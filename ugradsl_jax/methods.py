"""Pretraining, Retrain and the unlearning methods, each a resumable phase.

A method maps (original model, data, split, recipe) to an unlearned model:
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
import hashlib
import time
import zlib
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import batching, checkpoint, history, loop, losses, mixing, models, sweep, train, ugradsl_step
from .configs import Config, ConfigError, MethodCfg, TrainCfg, recipe_meta
from .datasets import Dataset
from .parallel import Parallel
from .split import Split, fingerprint


PROTOCOL_VERSION = 2


@dataclasses.dataclass
class Context:
  """What every phase of one experiment shares."""
  cfg: Config
  data: Dataset  # labelled as the model is trained (coarse in the sub-class scenario)
  split: Split
  par: Parallel
  workdir: Path | None  # None: phases are not saved (screening, benchmarks)
  progress: bool = True
  probe: Callable[[float], None] | None = None  # a loop.Probe report, every phase
  _device_data: dict | None = None
  # A user's model (contract.Model) in place of the registry's cfg.model.
  user_model: object | None = None

  @functools.cached_property
  def data_id(self) -> str:
    h = hashlib.sha256()
    for a in (self.data.train_x, self.data.train_y, self.data.test_x, self.data.test_y):
      h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]

  @property
  def device_data(self) -> dict:
    """Images and labels, put on the device(s) once for every phase."""
    if self._device_data is None:
      self._device_data = self.par.replicate({"x": self.data.train_x,
                                              "y": self.data.train_y})
    return self._device_data

  def model(self, axis_name="unset"):
    if self.user_model is not None:
      return self.user_model
    axis = self.par.axis_name if axis_name == "unset" else axis_name
    c, d = self.cfg, self.data
    return models.build(c.model, num_classes=d.num_classes, mean=d.mean, std=d.std,
                        width=c.width, depth=c.depth, tiny=c.tiny, axis_name=axis,
                        vocab_size=d.vocab_size, dtype=jnp.dtype(c.dtype))

  def seed_for(self, name: str) -> int:
    return zlib.crc32(f"{self.cfg.seed}/{name}".encode())

  def meta(self, name: str, recipe) -> dict:
    if dataclasses.is_dataclass(recipe):
      recipe = dataclasses.asdict(recipe)
    if isinstance(recipe, dict):
      recipe = recipe_meta(recipe)
    return {"phase": name, "recipe": recipe, "model": self.cfg.model,
            "tiny": self.cfg.tiny, "width": self.cfg.width, "depth": self.cfg.depth,
            "num_classes": self.data.num_classes, "seed": self.cfg.seed,
            "data": self.data_id, "split": fingerprint(self.split),
            # Only when not float32, so workdirs from before the flag stay valid.
            **({"dtype": self.cfg.dtype} if self.cfg.dtype != "float32" else {}),
            # What a phase computes changed with this version (padded last
            # batches, RL's loop, the l1 schedule): older workdirs are
            # refused rather than reused.
            "protocol": PROTOCOL_VERSION,
            # Every phase starts from the original model: one read from a
            # checkpoint is part of what its results depend on.
            **({"init_checkpoint": self.cfg.init_checkpoint}
               if self.cfg.init_checkpoint else {})}

  def batch_for(self, size: int, indices, what: str) -> int:
    """`size`, or, when the set is smaller than one batch (the smoke preset's
    sub-class forget set holds 9 images against batch 16), the set's size
    rounded up to a multiple of the device count: one padded batch an epoch,
    as the reference's DataLoader gives one short batch."""
    del what
    if len(indices) >= size:
      return size
    return -(-len(indices) // self.par.n) * self.par.n


@dataclasses.dataclass
class Phase:
  state: train.TrainState  # host copy
  outcome: dict


def run_phase(ctx: Context, name: str, state0, step_fn, batches, num_steps: int,
              images_per_step: int, recipe, hp=None, data=None, lr_fn=None,
              extra: dict | None = None) -> Phase:
  """Reuse a finished phase, resume an unfinished one, or run it from state0.
  With ctx.workdir None nothing is saved (screening and benchmark runs).
  `extra` joins the outcome of a phase run now (e.g. SalUn's mask time)."""
  data = ctx.device_data if data is None else data
  hooks = [loop.Progress(images_per_step, ctx.progress)]
  if ctx.probe is not None:
    hooks.append(loop.Probe(ctx.probe, images_per_step))
  fit = functools.partial(loop.fit, phase=name, par=ctx.par, step_fn=step_fn,
                          data=data, batches=batches, num_steps=num_steps,
                          images_per_step=images_per_step, hp=hp,
                          ckpt_every=ctx.cfg.ckpt_every, log_every=ctx.cfg.log_every,
                          lr_fn=lr_fn)
  if ctx.workdir is None:
    res = fit(state=state0, hooks=hooks)
    return Phase(res.state, {**_outcome(res, num_steps, None), **(extra or {}),
                             "history": res.history})
  store = checkpoint.PhaseStore(ctx.workdir / name, ctx.meta(name, recipe))
  try:
    done = store.outcome()
    if done is not None:
      return Phase(jax.device_get(store.restore(checkpoint.abstract_of(state0))), done)
    state, resumed = state0, None
    if store.latest_step() is not None:
      state = jax.device_get(store.restore(checkpoint.abstract_of(state0)))
      resumed = int(state.step)
    res = fit(state=state, hooks=[*hooks, loop.HistoryFile(store.dir / history.FILE),
                                  loop.Checkpoints(store)])
    outcome = {**_outcome(res, num_steps, resumed), **(extra or {})}
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


# --------------------------------------------------------------------------
# Training from scratch: the original model and Retrain.

def train_from_scratch(ctx: Context, name: str, indices: np.ndarray,
                       t: TrainCfg) -> Phase:
  ctx.par.check_batch(t.batch_size, "pretrain batch size")
  batches, spe = batching.epochs(indices, t.batch_size, ctx.cfg.seed,
                                 stream=zlib.crc32(name.encode()), augment=t.augment)
  total = spe * t.epochs
  schedule = train.lr_schedule(t.schedule, t.lr, total, spe, t.milestones)
  tx = train.sgd(schedule, t.momentum, t.weight_decay, t.nesterov)
  variables = train.init_variables(ctx.model(None), ctx.seed_for(name),
                                   ctx.data.input_shape, ctx.data.train_x.dtype)
  state0 = train.create_state(variables["params"], variables["batch_stats"], tx)
  step = functools.partial(train.descent_step, model=ctx.model(), tx=tx)
  return run_phase(ctx, name, state0, step, batches, total, t.batch_size, t,
                   lr_fn=schedule)


def original(ctx: Context) -> Phase:
  if ctx.cfg.init_checkpoint:
    return from_checkpoint(ctx, "original", ctx.cfg.init_checkpoint)
  return train_from_scratch(ctx, "original", ctx.split.train, ctx.cfg.pretrain)


def from_checkpoint(ctx: Context, name: str, path, check_split: bool = False) -> Phase:
  """A phase's model read from another run's checkpoint instead of trained
  (--init_checkpoint, --retrain_from). Its tree must fit this run's model;
  with `check_split` the source phase must have been trained on this split.
  The outcome is the source's (its RTE) where it has one."""
  variables, outcome = checkpoint.read_variables(path)
  want = train.init_variables(ctx.model(None), 0, ctx.data.input_shape,
                              ctx.data.train_x.dtype)
  for part in ("params", "batch_stats"):
    bad = checkpoint.tree_mismatch(variables[part], want[part])
    if bad:
      raise checkpoint.CheckpointError(
          f"{path}: does not fit this run's {ctx.cfg.model} (width {ctx.cfg.width}, "
          f"{ctx.data.num_classes} classes): {part} {bad}")
  if check_split:
    saved = (outcome or {}).get("meta", {}).get("split")
    if saved != fingerprint(ctx.split):
      raise checkpoint.CheckpointError(
          f"{path}: trained on another split (fingerprint {saved}, this run's "
          f"{fingerprint(ctx.split)}); a Retrain is only comparable on its own split")
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


def retrain(ctx: Context, orig: Phase, m=None) -> Phase:
  del orig, m
  if ctx.cfg.retrain_from:
    src = Path(ctx.cfg.retrain_from)
    if (src / "retrain").is_dir():  # a whole workdir
      src = src / "retrain"
    return from_checkpoint(ctx, "retrain", src, check_split=True)
  return train_from_scratch(ctx, "retrain", ctx.split.retain, ctx.cfg.pretrain)


# --------------------------------------------------------------------------
# Unlearning from the original model.

def _tx(m: MethodCfg, total: int, spe: int):
  """(optimizer, its learning-rate schedule, the hp entries it reads).

  At a constant rate the lr and weight decay travel as step data (HpSGD),
  so methods whose steps differ in them alone share one compiled program."""
  schedule = train.lr_schedule(m.schedule, m.lr, total, spe)
  if m.schedule == "constant":
    return (train.HpSGD(m.momentum, m.nesterov), schedule,
            {"lr": float(m.lr), "weight_decay": float(m.weight_decay)})
  return train.sgd(schedule, m.momentum, m.weight_decay, m.nesterov), schedule, {}


def _descent(ctx, name, m: MethodCfg, orig: Phase, indices, *, role: str,
             loss_fn=train.ce_loss, sign=1.0, label_key="y", reg_fn=None, mask=None,
             hp=None, extra=None, batches=None) -> Phase:
  """Epochs of descent (sign 1) or ascent (-1) over `indices`, or over
  `batches` = (batches, steps per epoch, batch size) made by the caller."""
  ctx.par.check_batch(m.batch_size, f"--{name} batch size")
  if batches is None:
    bs = ctx.batch_for(m.batch_size, indices, f"--{name}_batch_size")
    batches, spe = batching.epochs(indices, bs, ctx.cfg.seed,
                                   stream=zlib.crc32(name.encode()), augment=m.augment)
  else:
    batches, spe, bs = batches
  total = spe * m.epochs
  tx, schedule, opt_hp = _tx(m, total, spe)
  data, mask_key = _with_mask(ctx, mask)
  step = functools.partial(train.descent_step, model=ctx.model(), tx=tx,
                           loss_fn=loss_fn, sign=sign, reduction=m.reduction,
                           role=role, label_key=label_key, reg_fn=reg_fn,
                           mask_key=mask_key)
  state0 = train.create_state(orig.state.params, orig.state.batch_stats, tx)
  hp = {"total_steps": float(total), **opt_hp, **(hp or {})}
  return run_phase(ctx, name, state0, step, batches, total, bs, m,
                   hp=hp, data=data, lr_fn=schedule, extra=extra)


def _with_mask(ctx, mask):
  """(the device data, the key of the weight mask in it or None)."""
  if mask is None:
    return ctx.device_data, None
  return {**ctx.device_data, "mask": ctx.par.replicate(mask)}, "mask"


def ft(ctx, orig, m):
  return _descent(ctx, "ft", m, orig, ctx.split.retain, role="retain")


def smoothed_ce(logits, y, hp):
  return losses.smoothed_cross_entropy(logits, y, hp["alpha"])


def ga(ctx, orig, m):
  # Ascent (sign -1) on the cross entropy, against GLS targets when alpha != 0.
  return _descent(ctx, "ga", m, orig, ctx.split.forget, role="forget",
                  loss_fn=smoothed_ce, sign=-1.0, hp={"alpha": m.alpha})


# RL's loop as the reference has it per data set (RL.py); elsewhere the
# CIFAR-10 one.
RL_UNION_DATASETS = ("cifar100", "tiny_imagenet")


def rl_loop(m: MethodCfg, dataset: str) -> str:
  if m.rl_loop != "auto":
    return m.rl_loop
  return "union" if dataset in RL_UNION_DATASETS else "sequential"


def rl(ctx, orig, m, name="rl", mask=None, extra=None):
  """Random labels on D_f, true ones on D_r (Unlearn-Saliency RL.py). The
  forget labels are drawn uniformly from all classes (the true one
  included) afresh for every batch ("sequential": a pass over D_f, then a
  pass over D_r, each epoch) or every epoch ("union": one shuffled pass over
  both)."""
  s = ctx.split
  bs = m.batch_size  # a forget set smaller than a batch: one padded batch
  batches, spe = batching.relabelled(
      s.forget, s.retain, bs, ctx.cfg.seed, zlib.crc32(name.encode()),
      ctx.data.train_y, ctx.data.num_classes, rl_loop(m, ctx.cfg.dataset), m.augment)
  return _descent(ctx, name, m, orig, None, role="train", mask=mask, extra=extra,
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


def l1_sparse(ctx, orig, m):
  spe = batching.steps_per_epoch(len(ctx.split.retain),
                                 ctx.batch_for(m.batch_size, ctx.split.retain, "l1_sparse"))
  return _descent(ctx, "l1_sparse", m, orig, ctx.split.retain, role="retain",
                  reg_fn=l1_penalty,
                  hp={"l1": m.l1, "steps_per_epoch": float(spe), "epochs": float(m.epochs),
                      "no_l1_epochs": float(m.no_l1_epochs)})


def forget_gradient(ctx: Context, state, batch: int = 256):
  """(gradient of the summed forget-set cross entropy in eval-mode BatchNorm,
  seconds spent compiling it)."""
  model = ctx.model(None)

  def g(params, x, y, w):
    def loss(p):
      logits = model.apply({"params": p, "batch_stats": state.batch_stats}, x,
                           train=False)
      return jnp.sum(w * losses.cross_entropy(logits, y))
    return jax.grad(loss)(params)

  idx = ctx.split.forget
  x0 = ctx.data.train_x[:batch]
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
    gi = compiled(state.params, ctx.data.train_x[i],
                  np.asarray(ctx.data.train_y[i], np.int32), w)
    total = jax.tree.map(jnp.add, total, gi)
  return total, compile_s


def saliency_mask(grads, ratio: float):
  """1 for the `ratio` share of weights with the largest |grad| (one global
  threshold across all layers, as SalUn), else 0."""
  flat = jnp.concatenate([jnp.abs(g).ravel() for g in jax.tree.leaves(grads)])
  k = max(int(round(ratio * flat.size)), 1)
  thresh = jnp.sort(flat)[flat.size - k]
  return jax.tree.map(lambda g: (jnp.abs(g) >= thresh).astype(jnp.float32), grads)


def salun(ctx, orig, m):
  """RL restricted to the saliency mask. Computing the mask is part of
  SalUn's cost: the outcome's `mask_s` (added to RTE) and `mask_compile_s`
  (added to compile time)."""
  t0 = time.perf_counter()
  grads, compile_s = forget_gradient(ctx, orig.state)
  t1 = time.perf_counter()
  select = jax.jit(saliency_mask, static_argnums=1).lower(grads, m.mask_ratio).compile()
  compile_s += time.perf_counter() - t1
  mask = jax.device_get(select(grads))
  return rl(ctx, orig, m, name="salun", mask=mask,
            extra={"mask_s": time.perf_counter() - t0 - compile_s,
                   "mask_compile_s": compile_s})


def _paired(ctx, name, m: MethodCfg, orig: Phase, primary: str,
            sweep_hp: dict | None = None, mask=None) -> Phase:
  """sweep_hp {"alpha": [K], "p": [K], "beta": [K]}: train K settings at once
  (sweep.py). `mask`: a 0/1 weight pytree the update is restricted to."""
  ctx.par.check_batch(m.batch_size, f"--{name} batch size")
  ctx.par.check_batch(m.forget_batch_size or m.batch_size, f"--{name} forget batch size")
  s = ctx.split
  rb = ctx.batch_for(m.batch_size, s.retain, f"--{name}_batch_size")
  fb = ctx.batch_for(m.forget_batch_size or m.batch_size, s.forget,
                     f"--{name} forget batch size")
  if ctx.cfg.passes == "one" and rb != fb:  # e.g. a forget set smaller than a batch
    raise ConfigError(f"--passes one: {name}'s batches are {rb} retain / {fb} forget "
                      "images; one pass needs them equal (--passes auto uses two)")
  # An adaptive row draws its batches as its fixed-rate twin does, so the
  # two differ in the rate alone (a paired comparison, not two data orders).
  stream = zlib.crc32(name.removesuffix("_adaptive").encode())
  if primary == "forget":
    batches, spe = batching.paired(s.forget, s.retain, fb, rb,
                                   ctx.cfg.seed, ("forget", "retain"), stream, m.augment)
  else:
    batches, spe = batching.paired(s.retain, s.forget, rb, fb,
                                   ctx.cfg.seed, ("retain", "forget"), stream, m.augment)
  total = spe * m.epochs
  tx, schedule, opt_hp = _tx(m, total, spe)
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
  data, mask_key = _with_mask(ctx, mask)
  step = functools.partial(step_fn, model=ctx.model(), tx=tx, mix=mixing.get(m.mix),
                           alpha_mode=m.alpha_mode, reduction=m.reduction,
                           mask_key=mask_key, passes=ctx.cfg.passes,
                           feature_mode=m.feature_mode)
  return run_phase(ctx, name, state0, step, batches, total, rb + fb,
                   recipe, hp=hp, data=data, lr_fn=schedule)


# Which set an epoch passes over: UGradSL's is the forget set, UGradSL+'s
# the retain set (the forget set cycled).
PRIMARY = {"neggrad_plus": "forget", "ugradsl": "forget", "ugradsl_adaptive": "forget",
           "ugradsl_plus": "retain", "ugradsl_plus_adaptive": "retain"}


def ugradsl_sweep(ctx, orig, m, name: str, sweep_hp: dict) -> Phase:
  """A UGradSL-family method at K settings at once."""
  return _paired(ctx, name, m, orig, PRIMARY[name], sweep_hp)


def neggrad_plus(ctx, orig, m):
  return _paired(ctx, "neggrad_plus", dataclasses.replace(m, alpha=0.0), orig, "forget")


def ugradsl(ctx, orig, m):
  return _paired(ctx, "ugradsl", m, orig, "forget")


def ugradsl_plus(ctx, orig, m):
  return _paired(ctx, "ugradsl_plus", m, orig, "retain")


def ugradsl_adaptive(ctx, orig, m):
  return _paired(ctx, "ugradsl_adaptive", m, orig, "forget")


def ugradsl_plus_adaptive(ctx, orig, m):
  return _paired(ctx, "ugradsl_plus_adaptive", m, orig, "retain")


REGISTRY: dict[str, Callable] = {
    "retrain": retrain, "ft": ft, "ga": ga, "rl": rl, "l1_sparse": l1_sparse,
    "salun": salun, "neggrad_plus": neggrad_plus,
    "ugradsl": ugradsl, "ugradsl_plus": ugradsl_plus,
    "ugradsl_adaptive": ugradsl_adaptive, "ugradsl_plus_adaptive": ugradsl_plus_adaptive}


def one_shot_phase(ctx: Context, name: str, recipe, orig: Phase, compute) -> Phase:
  """A method without a training loop (SSD, IU): `compute()` -> (params,
  outcome dict with rte_s and compile_s) from the original model's state,
  saved and reused like every phase."""
  tx = train.sgd(0.0)
  state0 = jax.device_get(train.create_state(orig.state.params, orig.state.batch_stats, tx))
  if ctx.workdir is None:
    params, out = compute()
    return Phase(state0.replace(params=jax.device_get(params)), _one_shot_outcome(out))
  store = checkpoint.PhaseStore(ctx.workdir / name, ctx.meta(name, recipe))
  try:
    done = store.outcome()
    if done is not None:
      return Phase(jax.device_get(store.restore(checkpoint.abstract_of(state0))), done)
    params, out = compute()
    state = state0.replace(params=jax.device_get(params))
    outcome = _one_shot_outcome(out)
    store.save(0, state)
    store.finish(outcome)
    return Phase(state, outcome)
  finally:
    store.close()


def _one_shot_outcome(out: dict) -> dict:
  return {"diverged": False, "diverged_step": None, "no_finite_step": False, "steps": 0,
          "io_s": 0.0, "images_per_s": None, "resumed_from_step": None,
          "last_metrics": None, "nonfinite": False, **out}


from . import baseline_methods  # noqa: E402  (registers the baselines below)

REGISTRY.update(baseline_methods.REGISTRY)
