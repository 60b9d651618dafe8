"""GLS / NLS targets and cross entropy against a float64 numpy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ugradsl_jax import losses


def ref_ce(logits, labels, alpha):
  """float64: -sum_k y_alpha[k] log softmax(logits)[k]."""
  logits = np.asarray(logits, np.float64)
  k = logits.shape[-1]
  z = logits - logits.max(-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  t = (1 - alpha) * np.eye(k)[labels] + alpha / k
  return -(t * logp).sum(-1)


@pytest.fixture
def batch():
  rng = np.random.default_rng(0)
  return rng.normal(0, 3, (32, 10)).astype(np.float32), rng.integers(0, 10, 32)


@pytest.mark.parametrize("alpha", [0.3, 0.0, -0.5, -1.0, -3.0])
def test_matches_float64_reference(batch, alpha):
  logits, labels = batch
  got = losses.smoothed_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), alpha)
  np.testing.assert_allclose(got, ref_ce(logits, labels, alpha), rtol=1e-5, atol=1e-5)


def test_targets_by_hand():
  t = np.asarray(losses.smoothed_labels(jnp.array([2]), 4, -1.0))[0]
  # (1 - (-1)) * onehot + (-1)/4 = [-0.25, -0.25, 1.75, -0.25]
  np.testing.assert_allclose(t, [-0.25, -0.25, 1.75, -0.25])
  assert t.sum() == pytest.approx(1.0)


def test_alpha_zero_is_plain_cross_entropy(batch):
  logits, labels = batch
  a = losses.smoothed_cross_entropy(logits, labels, 0.0)
  b = losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
  np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  # Negative control: a non-zero alpha does differ from plain CE.
  c = losses.smoothed_cross_entropy(logits, labels, -0.5)
  assert np.abs(np.asarray(c) - np.asarray(b)).max() > 1e-2


def test_decomposition(batch):
  """CE(x, y_alpha) = (1 - alpha) CE(x, y) + alpha/K sum_k CE(x, k)  (METHOD.md s.1)."""
  logits, labels = batch
  alpha, k = -0.7, 10
  per_class = np.stack([ref_ce(logits, np.full(32, j), 0.0) for j in range(k)], -1)
  want = (1 - alpha) * ref_ce(logits, labels, 0.0) + alpha / k * per_class.sum(-1)
  got = losses.smoothed_cross_entropy(logits, labels, alpha)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_vmap_over_traced_alpha_compiles_once(batch):
  logits, labels = batch
  alphas = jnp.array([0.2, 0.0, -0.5, -1.0])
  traces = []

  @jax.jit
  def f(a):
    traces.append(1)
    return jax.vmap(lambda x: losses.smoothed_cross_entropy(logits, labels, x))(a)

  got = f(alphas)
  f(alphas + 0.1)  # new values, same shape: no retrace
  assert len(traces) == 1
  for i, a in enumerate(np.asarray(alphas)):
    np.testing.assert_allclose(got[i], ref_ce(logits, labels, float(a)), rtol=1e-5, atol=1e-5)


def test_gradient_matches_reference(batch):
  logits, labels = batch
  alpha = -1.0
  g = jax.grad(lambda z: losses.smoothed_cross_entropy(z, labels, alpha).sum())(logits)
  # d/dz of -sum t log softmax(z) = softmax(z) * sum(t) - t, and sum(t) = 1.
  z = logits.astype(np.float64)
  p = np.exp(z - z.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  t = (1 - alpha) * np.eye(10)[labels] + alpha / 10
  np.testing.assert_allclose(g, p - t, rtol=1e-5, atol=1e-6)
