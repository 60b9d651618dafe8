"""What a user's model must be to be unlearned, checked before any step runs.

The contract (README "Your own model"):

- a Flax Linen module, called as `model.apply(variables, x, <switch>=...)`,
  where the switch is a keyword of `__call__` named `train` or `training`
  (True in unlearning steps), or `deterministic` (False in unlearning steps);
- `variables` holds `params` and, for BatchNorm, `batch_stats`, which the
  steps update in train mode (`mutable=["batch_stats"]`) and evaluation
  reads in eval mode; no other collection;
- it returns logits [batch, classes];
- Dropout (any `self.make_rng("dropout")`) gets a key per step, folded from
  the seed, the step and the device;
- the adaptive smoothing rate reads penultimate features that the model
  sows at its top level: `self.sow("intermediates", "features", h)`.

`adapt` returns a `Model`, which the library's steps call in place of the
module; every check failure is a TypeError or ValueError naming the problem.
"""

from __future__ import annotations

import dataclasses
import inspect

import flax
import flax.linen as nn
import jax
import numpy as np

SWITCHES = ("train", "training", "deterministic")


@dataclasses.dataclass(frozen=True)
class Model:
  """A user's module behind the one calling convention the steps use:
  `apply(variables, x, train=..., mutable=..., rng=...)`."""
  module: nn.Module
  switch: str = "train"
  needs_rng: bool = False
  seed: int = 0

  def _kw(self, train: bool) -> dict:
    return {self.switch: (not train) if self.switch == "deterministic" else train}

  def apply(self, variables, x, *, train: bool, mutable=False, rng=None):
    rngs = {"dropout": rng} if (self.needs_rng and train and rng is not None) else None
    return self.module.apply(variables, x, mutable=mutable, rngs=rngs, **self._kw(train))

  def init(self, key, x, *, train: bool = False):
    return self.module.init(key, x, **self._kw(train))


def switch_of(module) -> str:
  try:
    params = inspect.signature(type(module).__call__).parameters
  except (TypeError, ValueError):
    params = {}
  for name in SWITCHES:
    if name in params:
      return name
  if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
    return "train"
  args = ", ".join(n for n in params if n != "self") or "nothing"
  raise TypeError(f"{type(module).__name__}.__call__ takes ({args}): the model needs a "
                  "train/eval switch keyword, `train: bool` (or `training`, or "
                  "`deterministic`), so that BatchNorm and Dropout know the mode")


def adapt(module, variables, x, y=None, *, features: bool = False, seed: int = 0) -> Model:
  """Check `module` and `variables` against the contract on a few examples
  `x` (labels `y`, which must be valid classes), and wrap it."""
  if isinstance(module, Model):
    return module
  if not isinstance(module, nn.Module):
    raise TypeError(f"model: expected a flax.linen.Module, got {type(module).__name__}")
  if not isinstance(variables, (dict, flax.core.FrozenDict)) or "params" not in variables:
    got = list(variables) if isinstance(variables, (dict, flax.core.FrozenDict)) else \
        type(variables).__name__
    raise TypeError(f"variables: expected the module's variables dict with 'params' "
                    f"(and 'batch_stats'), got {got}")
  extra = sorted(set(variables) - {"params", "batch_stats"})
  if extra:
    raise ValueError(f"variables: collections {extra} besides params and batch_stats; "
                     "the steps carry those two only")
  model = Model(module, switch_of(module), seed=seed)
  v = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  x = np.asarray(x)
  try:
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v, x)
  except Exception as e:
    raise ValueError(f"model.apply(variables, x, {model.switch}=...) in eval mode failed "
                     f"on the data given: {_first_line(e)}") from None
  if not hasattr(out, "shape") or len(out.shape) != 2 or out.shape[0] != len(x):
    raise ValueError(f"the model must return logits [batch, classes]; on {len(x)} examples "
                     f"it returned {getattr(out, 'shape', type(out).__name__)}")
  k = out.shape[1]
  if k < 2:
    raise ValueError(f"the model returns {k} logit per example; a classifier needs >= 2")
  if y is not None:
    y = np.asarray(y)
    if y.min() < 0 or y.max() >= k:
      raise ValueError(f"labels must be in [0, {k}) for a model with {k} outputs; "
                       f"got {y.min()}..{y.max()}")
  mutable = ["batch_stats", "intermediates"] if features else ["batch_stats"]

  def train_apply(m, rng):
    return jax.eval_shape(lambda v, x: m.apply(v, x, train=True, mutable=mutable, rng=rng),
                          v, x)

  try:
    _, new = train_apply(model, None)
  except flax.errors.InvalidRngError:
    model = dataclasses.replace(model, needs_rng=True)
    try:
      _, new = train_apply(model, jax.random.key(0))
    except Exception as e:
      raise ValueError(f"the model in train mode needs random streams other than "
                       f"'dropout': {_first_line(e)}") from None
  except Exception as e:
    raise ValueError(f"model.apply(variables, x, {model.switch}=..., "
                     f"mutable={mutable}) in train mode failed: {_first_line(e)}") from None
  if features and "features" not in new.get("intermediates", {}):
    raise ValueError("alpha_mode 'adaptive' measures each forget example against retain "
                     "examples in the model's penultimate features: sow them at the top "
                     "of __call__ with self.sow('intermediates', 'features', h) before "
                     "the head")
  return model


def num_classes(model: Model, variables, x) -> int:
  v = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  return int(jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v,
                            np.asarray(x)).shape[1])


def _first_line(e: Exception) -> str:
  msg = str(e).strip().splitlines()
  return f"{type(e).__name__}: {msg[0][:200] if msg else ''}"
