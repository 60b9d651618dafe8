"""Gradient-mixing rules: (g_retain, g_forget, hp) -> direction to descend.

`g_forget` is the gradient of the forget loss (NLS cross entropy), which the
method *ascends*; every rule therefore enters it with a minus sign. A rule is a
small pure function over pytrees. `hp` carries `alpha`, `p` (and `beta`), the
optimizer's `lr` and `weight_decay` where they are step data, and the rule's
own hyper-parameters; its values may be traced, so sweeps can vmap over them.

A rule returns the direction, or `(direction, diagnostics)` with a dict of
scalars (e.g. cos(g_r, g_f)) that joins the step's metrics, and so each
logged row of the phase's history.jsonl. Rules register by name:

  @ugradsl_jax.mixing.register("scaled", hparams={"tau": 1.0})
  def scaled(g_r, g_f, hp):
    return jax.tree.map(lambda r, f: hp["tau"] * r - f, g_r, g_f)

and are then chosen with `mix="scaled", mix_hparams={"tau": 0.5}` (API) or
`--ugradsl_mix scaled --ugradsl_mix_hparams tau=0.5` (command line).
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from . import registry

MixRule = Callable[[object, object, Mapping], object]
_EPS = 1e-12


def _dot(a, b):
  return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def weighted_sum(g_retain, g_forget, hp):
  """The paper's rule: grad of p * L_retain - (1 - p) * L_forget_nls."""
  p = hp["p"]
  return jax.tree.map(lambda r, f: p * r - (1.0 - p) * f, g_retain, g_forget)


def normalized(g_retain, g_forget, hp):
  """Each term scaled to unit global norm first, so neither dominates by scale."""
  nr = optax.tree.norm(g_retain) + _EPS
  nf = optax.tree.norm(g_forget) + _EPS
  p = hp["p"]
  return jax.tree.map(lambda r, f: p * r / nr - (1.0 - p) * f / nf,
                      g_retain, g_forget)


def pcgrad(g_retain, g_forget, hp):
  """PCGrad-style: drop the part of the ascent direction that raises L_retain.

  The ascent direction (as a descent gradient) is a = -g_forget. Descending
  along a changes L_retain by -lr * <a, g_retain>; when <a, g_retain> < 0 the
  two conflict, and a loses its component along g_retain.
  """
  a = jax.tree.map(jnp.negative, g_forget)
  dot = _dot(a, g_retain)
  coef = jnp.minimum(dot, 0.0) / (_dot(g_retain, g_retain) + _EPS)
  a = jax.tree.map(lambda x, r: x - coef * r, a, g_retain)
  p = hp["p"]
  return jax.tree.map(lambda r, x: p * r + (1.0 - p) * x, g_retain, a)


def register(name: str, hparams: Mapping[str, float] | None = None, *,
             overwrite: bool = False):
  """Decorator: registers `fn(g_retain, g_forget, hp)` as rule `name`, with
  its own hyper-parameters `hparams` (name -> default), which reach it in
  `hp` and are recorded with the method's recipe."""
  def deco(fn):
    registry.add_mix_rule(name, fn, hparams, overwrite=overwrite)
    return fn
  return deco


register("weighted")(weighted_sum)
register("normalized")(normalized)
register("pcgrad")(pcgrad)


class _Rules(Mapping):
  """name -> rule function, a live view of the registry."""

  def __getitem__(self, name):
    return registry.MIX_RULES[name].fn

  def __iter__(self):
    return iter(registry.MIX_RULES)

  def __len__(self):
    return len(registry.MIX_RULES)


RULES: Mapping[str, MixRule] = _Rules()


def get(name_or_rule: str | MixRule) -> MixRule:
  if callable(name_or_rule):
    return name_or_rule
  if name_or_rule not in registry.MIX_RULES:
    raise ValueError(f"unknown mixing rule {name_or_rule!r}; known: {sorted(RULES)}")
  return RULES[name_or_rule]


def hparams(name: str, given: Mapping[str, float] | None = None) -> dict[str, float]:
  """Rule `name`'s hyper-parameters: its defaults, `given` on top."""
  return registry.mix_hparams(name, given)


def split_output(out) -> tuple:
  """A rule's result as (direction, diagnostics dict)."""
  if isinstance(out, tuple):
    if len(out) != 2 or not isinstance(out[1], Mapping):
      raise TypeError("a mixing rule returns the direction or (direction, diagnostics "
                      f"dict); got a tuple of {len(out)}")
    return out[0], dict(out[1])
  return out, {}
