"""Gradient-mixing rules: (g_retain, g_forget, hp) -> direction to descend.

`g_forget` is the gradient of the forget loss (NLS cross entropy), which the
method *ascends*; every rule therefore enters it with a minus sign. A rule is a
small pure function over pytrees; `hp` carries `p` (and may carry more), and
may hold traced values so sweeps can be vmapped.
"""

from __future__ import annotations

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

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


RULES: dict[str, MixRule] = {
    "weighted": weighted_sum, "normalized": normalized, "pcgrad": pcgrad}


def get(name_or_rule: str | MixRule) -> MixRule:
  if callable(name_or_rule):
    return name_or_rule
  if name_or_rule not in RULES:
    raise ValueError(f"unknown mixing rule {name_or_rule!r}; known: {sorted(RULES)}")
  return RULES[name_or_rule]
