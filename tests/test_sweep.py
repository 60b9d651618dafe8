"""A K=2 vmapped sweep equals two separate runs."""

import functools

import jax
import numpy as np
import pytest

from conftest import tiny_resnet
from ugradsl_jax import batching, mixing, models, parallel, sweep, train, ugradsl_step


def _setup():
  tx = train.sgd(train.lr_schedule("constant", 0.05, 4, 4), 0.9, 5e-4)
  v = train.init_variables(tiny_resnet(), 0)
  state = jax.device_get(train.create_state(v["params"], v["batch_stats"], tx))
  rng = np.random.default_rng(0)
  data = {"x": rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
          "y": rng.integers(0, 10, 64).astype(np.int32)}
  batches, _ = batching.paired(np.arange(40, 64), np.arange(40), 8, 8, seed=1,
                               augment=True)
  return tx, state, data, batches


def _train(par, step_fn, state, data, batches, hp, n=3):
  f = par.wrap(step_fn)
  s, d = par.replicate(state), par.replicate(data)
  for i in range(n):
    s, _ = f(s, d, par.shard(batches(i)), hp)
  return jax.device_get(par.unreplicate(s))


@pytest.mark.parametrize("mode", ["none", "shard_map"])
def test_k2_sweep_equals_two_runs(mode):
  tx, state, data, batches = _setup()
  par = parallel.make(mode, num_devices=4)
  step = functools.partial(ugradsl_step.unlearn_step, model=tiny_resnet(par.axis_name),
                           tx=tx, mix=mixing.weighted_sum)
  settings = [{"alpha": -1.0, "p": 0.5}, {"alpha": -0.2, "p": 0.8}]
  singles = [_train(par, step, state, data, batches, hp) for hp in settings]
  grid = {k: np.array([s[k] for s in settings], np.float32) for k in ("alpha", "p")}
  vstep = functools.partial(sweep.vmapped(ugradsl_step.unlearn_step),
                            model=tiny_resnet(par.axis_name), tx=tx,
                            mix=mixing.weighted_sum)
  stacked = _train(par, vstep, sweep.stack([state, state]), data, batches, grid)
  for i, single in enumerate(sweep.unstack(stacked, 2)):
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(singles[i].params)):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  # Negative control: the two settings really train to different models.
  d = max(float(np.abs(a - b).max()) for a, b in
          zip(jax.tree.leaves(singles[0].params), jax.tree.leaves(singles[1].params)))
  assert d > 1e-4


def test_grid_is_cartesian():
  g = sweep.grid([-1, -0.5], [0.5, 0.9])
  assert list(zip(g["alpha"], g["p"])) == [(-1, 0.5), (-1, 0.9), (-0.5, 0.5), (-0.5, 0.9)]
  g = sweep.grid([-2, -1], None, p0=0.7)
  assert g["p"].tolist() == pytest.approx([0.7, 0.7])
  assert g["beta"].tolist() == pytest.approx([0.2, 0.2])  # the default, held
  g = sweep.grid([-1], [0.5, 0.9], betas=[0.1, 0.3])
  assert list(zip(g["alpha"], g["p"], g["beta"])) == [
      (-1, 0.5, 0.1), (-1, 0.5, 0.3), (-1, 0.9, 0.1), (-1, 0.9, 0.3)]
