"""Gradient-mixing rules against hand calculations on small pytrees."""

import jax.numpy as jnp
import numpy as np
import pytest

from ugradsl_jax import mixing


def _tree(a, b):
  return {"w": jnp.asarray(a, jnp.float32), "b": jnp.asarray(b, jnp.float32)}


def _flat(t):
  return np.concatenate([np.ravel(t["b"]), np.ravel(t["w"])])  # sorted key order


GR = _tree([1.0, 0.0], [0.0])
GF = _tree([-1.0, 1.0], [0.0])  # forget gradient


def test_weighted_sum_is_the_papers_rule():
  d = mixing.weighted_sum(GR, GF, {"p": 0.25})
  # 0.25 * [1, 0] - 0.75 * [-1, 1] = [1, -0.75]
  np.testing.assert_allclose(_flat(d), [0.0, 1.0, -0.75])


def test_normalized_scales_each_term_to_unit_norm():
  gr = _tree([3.0, 0.0], [4.0])       # norm 5
  gf = _tree([0.0, 2.0], [0.0])       # norm 2
  d = mixing.normalized(gr, gf, {"p": 0.5})
  want = 0.5 * np.array([4, 3, 0]) / 5 - 0.5 * np.array([0, 0, 2]) / 2
  np.testing.assert_allclose(_flat(d), want, rtol=1e-6)


def test_pcgrad_removes_only_the_conflicting_component():
  # a = -g_f = [1, -1]; <a, g_r> = 1 > 0: no conflict, nothing removed.
  d = mixing.pcgrad(GR, GF, {"p": 0.5})
  np.testing.assert_allclose(_flat(d), 0.5 * np.array([0, 1, 0]) + 0.5 * np.array([0, 1, -1]))
  # a = -g_f = [-1, 1] conflicts with g_r = [1, 0]: a' = a - (<a,g_r>/|g_r|^2) g_r = [0, 1].
  gf = _tree([1.0, -1.0], [0.0])
  d = mixing.pcgrad(GR, gf, {"p": 0.5})
  np.testing.assert_allclose(_flat(d), 0.5 * np.array([0, 1, 0]) + 0.5 * np.array([0, 0, 1]))
  # The projected ascent direction no longer opposes the retain gradient.
  a_proj = (_flat(d) - 0.5 * _flat(GR)) / 0.5
  assert np.dot(a_proj, _flat(GR)) >= -1e-7


def test_p_zero_is_pure_ascent_and_p_one_pure_descent():
  np.testing.assert_allclose(_flat(mixing.weighted_sum(GR, GF, {"p": 0.0})), -_flat(GF))
  np.testing.assert_allclose(_flat(mixing.weighted_sum(GR, GF, {"p": 1.0})), _flat(GR))


def test_lookup():
  assert mixing.get("pcgrad") is mixing.pcgrad
  f = lambda r, g, hp: r
  assert mixing.get(f) is f
  with pytest.raises(ValueError, match="known"):
    mixing.get("nope")
