"""Generalized label smoothing (GLS) targets and cross entropy (METHOD.md s.1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def smoothed_labels(labels: jax.Array, num_classes: int,
                    alpha: float | jax.Array) -> jax.Array:
  """(1 - alpha) * onehot + alpha / K; alpha < 0 is negative label smoothing.
  alpha is a scalar or one rate per example ([B], the adaptive rate)."""
  onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  alpha = jnp.asarray(alpha, jnp.float32)
  if alpha.ndim:
    alpha = alpha[..., None]
  return (1.0 - alpha) * onehot + alpha / num_classes


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-example -sum_k t_k log p_k; targets may be negative (NLS)."""
  return -jnp.sum(targets * jax.nn.log_softmax(logits.astype(jnp.float32)), -1)


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array,
                           alpha: float | jax.Array = 0.0) -> jax.Array:
  """Per-example CE against GLS targets; alpha may be traced (vmap over it)."""
  return soft_cross_entropy(logits, smoothed_labels(labels, logits.shape[-1], alpha))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  logp = jax.nn.log_softmax(logits.astype(jnp.float32))
  return -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
