"""The library's front door: unlearn a forget set from your own model, and score it.

  after = ugradsl_jax.unlearn(model, variables, (x_f, y_f), (x_r, y_r),
                              method="ugradsl", seed=0, epochs=2, alpha=-0.5)
  scores = ugradsl_jax.evaluate(model, after, (x_f, y_f), (x_r, y_r), (x_t, y_t))

The model contract is contract.py's. A method's keywords are its recipe
fields (configs.METHOD_READS; the same names as the command line's
--<method>_<field>), on top of the quick preset's recipe for the method with
augmentation off (user data need not be images).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import numpy as np

from . import configs, contract, experiment, metrics, parallel, phases, train
from . import methods as M
from .dataset import Dataset
from .experiment import Experiment
from .phases import Phase
from .split import Split


def _xy(pair, what: str) -> tuple[np.ndarray, np.ndarray]:
  if not isinstance(pair, (tuple, list)) or len(pair) != 2:
    raise TypeError(f"{what}: expected an (x, y) pair of arrays, got {type(pair).__name__}")
  x, y = np.asarray(pair[0]), np.asarray(pair[1])
  if len(x) != len(y):
    raise ValueError(f"{what}: {len(x)} inputs but {len(y)} labels")
  if len(x) == 0:
    raise ValueError(f"{what}: the set is empty")
  if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
    raise ValueError(f"{what}: labels must be a 1-D integer array (class indices); got "
                     f"{y.dtype} of shape {y.shape}")
  return x, y.astype(np.int32)


def _defaults(method: str):
  """The quick preset's recipe of `method`, augmentation off."""
  cfg = configs.get("quick")
  if method == "retrain":
    return dataclasses.replace(cfg.pretrain, augment=False)
  return dataclasses.replace(cfg.methods[method], augment=False)


def recipe(method: str, **hparams):
  """`method`'s recipe with `hparams` on top; an unknown method or keyword
  is a ValueError / TypeError naming it and what is known."""
  if method not in configs.METHODS:
    raise ValueError(f"method {method!r}: unknown; known: {', '.join(configs.METHODS)}")
  fields = (tuple(configs.TRAIN_FIELD_SPECS) if method == "retrain"
            else configs.METHOD_READS[method])
  unknown = sorted(set(hparams) - set(fields))
  if unknown:
    raise TypeError(f"unlearn(method={method!r}): unknown keyword "
                    f"{', '.join(unknown)}; its recipe fields are: {', '.join(fields)}")
  for key in ("mix_hparams", "method_hparams"):
    if key in hparams:
      hparams[key] = dict(hparams[key] or {})
  return dataclasses.replace(_defaults(method), **hparams)


def _parallel(mode: str | None, batches) -> parallel.Parallel:
  """`mode`, or by default shard_map over the local devices when there are
  several and every batch divides by them, else one device."""
  if mode is None:
    n = jax.local_device_count()
    mode = "shard_map" if n > 1 and all(b % n == 0 for b in batches) else "none"
  return parallel.make(mode)


def _experiment(model: contract.Model, k: int, forget, retain, cfg,
                seed) -> Experiment:
  """The in-memory data set, split and devices of one unlearn() call:
  forget examples first, then retain; no validation or test set."""
  (xf, yf), (xr, yr) = forget, retain
  nf, nr = len(xf), len(xr)
  data = Dataset(name="user", train_x=np.concatenate([xf, xr]),
                 train_y=np.concatenate([yf, yr]), test_x=xf[:0], test_y=yf[:0],
                 class_names=tuple(str(c) for c in range(k)), mean=(0.0,), std=(1.0,),
                 source="arrays given to ugradsl_jax.unlearn")
  empty = np.zeros(0, np.int64)
  retain_idx = np.arange(nf, nf + nr, dtype=np.int64)
  split = Split(train=np.arange(nf + nr, dtype=np.int64), val=empty,
                forget=np.arange(nf, dtype=np.int64), retain=retain_idx, test=empty,
                mia_members=np.random.default_rng([seed, 0x3A1A]).permutation(retain_idx))
  batches = ([cfg.pretrain.batch_size] if not cfg.methods else
             [b for m in cfg.methods.values() for b in (m.batch_size, m.forget_batch_size)
              if b])
  par = _parallel(cfg.parallel if cfg.parallel != "auto" else None, batches)
  cfg = dataclasses.replace(cfg, parallel=par.mode)
  return experiment.make(cfg, data, split, par, user_model=model)


def unlearn(model, variables, forget, retain, *, method: str = "ugradsl", seed: int = 0,
            parallel: str | None = None, progress: bool = False,
            history: list | None = None, **hparams) -> dict:
  """The unlearned variables of `model`, with the tree structure of `variables`.

  model      a flax.linen.Module (contract.py: a `train` switch, logits out)
  variables  its variables: {"params", optional "batch_stats"}
  forget     (x, y) numpy arrays: the examples to unlearn
  retain     (x, y): the examples whose behaviour is kept
  method     any registered method (configs.METHODS); "retrain" trains the
             model from a fresh initialisation on `retain` (the reference)
  seed       data order, the model's Dropout keys and RL's labels
  parallel   "none", "pmap" or "shard_map"; default: shard_map over the
             local devices when there are several and the batches divide
             by them, else one device
  history    a list to append the run's logged metric rows to (every
             `log_every` steps: losses, gradient norms, a mixing rule's
             diagnostics)
  **hparams  the method's recipe fields (lr, epochs, batch_size, alpha, p,
             mix, mix_hparams, weight_decay, ...), over the quick preset's
  """
  xf, yf = _xy(forget, "forget")
  xr, yr = _xy(retain, "retain")
  if xf.shape[1:] != xr.shape[1:] or xf.dtype != xr.dtype:
    raise ValueError(f"forget and retain inputs differ: {xf.dtype}{list(xf.shape[1:])} vs "
                     f"{xr.dtype}{list(xr.shape[1:])}")
  rec = recipe(method, **hparams)
  adaptive = getattr(rec, "alpha_mode", "fixed") == "adaptive"
  probe = np.concatenate([xf[:2], xr[:2]])
  wrapped = contract.adapt(model, variables, probe, features=adaptive, seed=seed)
  k = contract.num_classes(wrapped, variables, probe)
  for what, y in (("forget", yf), ("retain", yr)):
    if y.min() < 0 or y.max() >= k:
      raise ValueError(f"{what}: labels must be in [0, {k}) for a model with {k} outputs; "
                       f"got {y.min()}..{y.max()}")
  base = configs.get("quick")
  if method == "retrain":
    cfg = dataclasses.replace(base, preset="api", pretrain=rec, methods={}, seed=seed,
                              parallel=parallel or "auto", log_every=1)
  else:
    cfg = dataclasses.replace(base, preset="api", methods={method: rec}, seed=seed,
                              parallel=parallel or "auto", log_every=1)
  configs.validate(dataclasses.replace(cfg, parallel="none"))
  v0 = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  exp = _experiment(wrapped, k, (xf, yf), (xr, yr), cfg, seed)
  if method == "retrain":
    todo = M.train_from_scratch(exp, "retrain", exp.split.retain, rec)
  else:
    state = jax.device_get(train.create_state(v0["params"], v0["batch_stats"],
                                              train.sgd(0.0)))
    todo = M.REGISTRY[method](exp, Phase(state, {}), rec)
  phase = phases.run(exp, phases.Runner(None, progress), todo)
  if phase.outcome.get("diverged"):
    raise FloatingPointError(f"{method} diverged at step {phase.outcome['diverged_step']} "
                             "(a loss or gradient went non-finite); lower lr")
  if history is not None:
    history.extend(phase.outcome.get("history") or [])
  out = dict(variables)
  out["params"] = jax.device_get(phase.state.params)
  if "batch_stats" in variables:
    out["batch_stats"] = jax.device_get(phase.state.batch_stats)
  return out


def evaluate(model, variables, forget, retain, test, *, reference: Mapping | None = None,
             seed: int = 0, batch: int = 1000) -> dict:
  """{"UA", "RA", "TA", "MIA"} in percent (metrics.py's definitions): 100 -
  forget accuracy, retain and test accuracy, and MIA-Efficacy (the share of
  the forget set an SVC on the true-label confidence calls non-member,
  members a seeded sample of `retain`, non-members `test`). With
  `reference` (e.g. the scores of a Retrain) also "avg_gap", the mean
  absolute difference over the four."""
  sets = {n: _xy(p, n) for n, p in (("forget", forget), ("retain", retain), ("test", test))}
  wrapped = contract.adapt(model, variables, sets["forget"][0][:2])
  v = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  out = {}
  for name, (x, y) in sets.items():
    correct, conf = metrics.predict(wrapped, v, x, y, batch)
    out[name] = (correct, conf)
  order = np.random.default_rng([seed, 0x3A1A]).permutation(len(sets["retain"][0]))
  res = {"UA": 100.0 - 100.0 * float(out["forget"][0].mean()),
         "RA": 100.0 * float(out["retain"][0].mean()),
         "TA": 100.0 * float(out["test"][0].mean()),
         "MIA": metrics.mia_efficacy(out["retain"][1][order], out["test"][1],
                                     out["forget"][1])}
  if reference is not None:
    missing = [k for k in metrics.GAP_KEYS if k not in reference]
    if missing:
      raise ValueError(f"reference: missing {', '.join(missing)} (evaluate's output of "
                       "the reference model)")
    res["avg_gap"] = metrics.avg_gap(res, reference)
  return res
