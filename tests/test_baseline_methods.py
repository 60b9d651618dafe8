"""The baselines wired as methods (baseline_methods.py), through the public API."""

import flax.linen as nn
import jax
import numpy as np
import pytest

import ugradsl_jax as ug
from ugradsl_jax import configs


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(3)(nn.relu(nn.Dense(12)(x.reshape(len(x), -1))))


@pytest.fixture(scope="module")
def toy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 6)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
  m = MLP()
  return x, y, m, m.init(jax.random.key(0), x[:2])


def _delta(a, b):
  return np.concatenate([np.ravel(p - q) for p, q in
                         zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"]))])


def test_ssd_leaves_unselected_weights_bit_for_bit(toy):
  x, y, m, v = toy
  f, r = (x[:30], y[:30]), (x[30:], y[30:])
  same = ug.unlearn(m, v, f, r, method="ssd", selection=1e30, batch_size=32)
  assert np.all(_delta(same, v) == 0)
  damp = ug.unlearn(m, v, f, r, method="ssd", selection=2.0, batch_size=32)
  d = _delta(damp, v)
  assert 0 < np.count_nonzero(d) < d.size  # some weights dampened, not all
  # Dampening only ever shrinks a weight towards 0, never flips or grows it.
  old = np.concatenate([np.ravel(p) for p in jax.tree.leaves(v["params"])])
  new = old + d
  assert np.all(np.abs(new) <= np.abs(old) + 1e-7) and np.all(new * old >= 0)


def test_iu_step_is_linear_in_its_scale(toy):
  """The one-shot IU step is scale x (a fixed direction): twice the scale,
  twice the step; a different retain set, a different step."""
  x, y, m, v = toy
  f, r = (x[:30], y[:30]), (x[30:], y[30:])
  kw = dict(method="iu", num_samples=20, batch_size=32)
  a = _delta(ug.unlearn(m, v, f, r, scale=0.1, **kw), v)
  b = _delta(ug.unlearn(m, v, f, r, scale=0.2, **kw), v)
  assert np.abs(a).max() > 0
  np.testing.assert_allclose(b, 2 * a, rtol=1e-4, atol=1e-7)
  c = _delta(ug.unlearn(m, v, f, (x[30:120], y[30:120]), scale=0.1, **kw), v)
  assert np.abs(c - a).max() > 1e-6
  exact = _delta(ug.unlearn(m, v, f, r, scale=0.1, woodfisher="exact", **kw), v)
  assert np.abs(exact - a).max() > 1e-7  # the two recursions differ


def test_boundary_shrink_needs_images(toy):
  x, y, m, v = toy
  with pytest.raises(configs.ConfigError, match="perturbs images"):
    ug.unlearn(m, v, (x[:30], y[:30]), (x[30:], y[30:]), method="boundary_shrink")


def test_baseline_recipes_are_flags():
  for name, fields in (("iu", ("scale", "num_samples", "woodfisher")),
                       ("boundary_shrink", ("bound",)), ("ssd", ("selection", "dampening"))):
    assert set(fields) <= set(configs.METHOD_READS[name])
    for preset in ("smoke", "quick", "paper"):
      assert name in configs.get(preset).methods
  with pytest.raises(configs.ConfigError, match="--ssd_selection"):
    configs.validate(configs.with_method(configs.get("smoke"), "ssd", selection=-1.0))
