"""The self-adaptive, per-sample smoothing rate (METHOD.md s.8, our reading).

For forget example j of the batch and the retain batch B_r:
  d(i, j)  = (1 - cos(h_i, h_j)) / 2 in [0, 1]  on penultimate features h
  rho_j    = |{i in B_r : d(i, j) <= beta}| / |B_r|
  alpha_j  = alpha * (1 - rho_j)
An isolated forget example gets the full (negative) base rate; one inside a
dense retain neighbourhood gets less, because pushing it away costs the
retain set more. The features enter under stop_gradient: the rate is part
of the target, not a path for gradients. Everything is traced, so alpha and
beta can be vmapped over (sweeps).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_EPS = 1e-12


def _unit(h: jax.Array) -> jax.Array:
  h = h.astype(jnp.float32)
  return h / jnp.maximum(jnp.linalg.norm(h, axis=-1, keepdims=True), _EPS)


def feature_distance(h_forget: jax.Array, h_retain: jax.Array) -> jax.Array:
  """[F, R] distances (1 - cosine) / 2, clipped to [0, 1] against rounding."""
  cos = _unit(h_forget) @ _unit(h_retain).T
  return jnp.clip((1.0 - cos) / 2.0, 0.0, 1.0)


def neighbour_share(h_forget, h_retain, beta, w_retain=None) -> jax.Array:
  """rho_j: the share of the retain batch within distance beta of forget j
  (`w_retain`: 1 for a real retain row, 0 for padding, which counts for
  nothing)."""
  near = (feature_distance(h_forget, h_retain) <= beta).astype(jnp.float32)
  if w_retain is None:
    return jnp.mean(near, axis=1)
  return near @ w_retain / jnp.maximum(jnp.sum(w_retain), 1.0)


def adaptive_alpha(h_forget, h_retain, alpha, beta, w_retain=None) -> jax.Array:
  """Per-example rates [F]: alpha * (1 - rho_j), features stop-gradiented."""
  h_forget, h_retain = jax.lax.stop_gradient((h_forget, h_retain))
  rho = neighbour_share(h_forget, h_retain, beta, w_retain)
  return jnp.asarray(alpha, jnp.float32) * (1.0 - rho)
