"""The self-adaptive smoothing rate (METHOD.md s.8) against a float64 numpy
reference, its edge cases, and the global retain batch under data parallelism."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_resnet
from ugradsl_jax import adaptive, losses, parallel, train, ugradsl_step


def _reference(h_f, h_r, alpha, beta):
  """alpha_j = alpha * (1 - rho_j), rho_j = share of retain rows with
  (1 - cos) / 2 <= beta, written out loop by loop in float64."""
  h_f, h_r = np.asarray(h_f, np.float64), np.asarray(h_r, np.float64)
  out = []
  for f in h_f:
    near = 0
    for r in h_r:
      cos = f @ r / (np.linalg.norm(f) * np.linalg.norm(r))
      near += (1.0 - cos) / 2.0 <= beta
    out.append(alpha * (1.0 - near / len(h_r)))
  return np.array(out)


def test_matches_numpy_reference():
  rng = np.random.default_rng(0)
  h_r = rng.normal(size=(40, 16)).astype(np.float32)
  # Forget rows: some close to retain rows, some far, so rho spans (0, 1).
  h_f = np.concatenate([h_r[:5] + 0.05 * rng.normal(size=(5, 16)),
                        rng.normal(size=(7, 16))]).astype(np.float32)
  for beta in (0.1, 0.3, 0.5, 0.7):
    got = np.asarray(adaptive.adaptive_alpha(h_f, h_r, -0.8, beta))
    want = _reference(h_f, h_r, -0.8, beta)
    # Distances within float32 rounding of beta could flip; none are here.
    d = np.asarray(adaptive.feature_distance(h_f, h_r))
    assert np.min(np.abs(d - beta)) > 1e-5
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  rho = np.asarray(adaptive.neighbour_share(h_f, h_r, 0.5))
  assert 0.0 < rho.min() < rho.max() < 1.0  # the case is not degenerate


def test_edge_cases_no_and_all_neighbours():
  rng = np.random.default_rng(1)
  h_r = rng.normal(size=(8, 4)).astype(np.float32)
  h_f = rng.normal(size=(3, 4)).astype(np.float32)
  # beta = 1 takes every retain row as a neighbour (d <= 1 always): alpha_j = 0.
  np.testing.assert_array_equal(adaptive.adaptive_alpha(h_f, h_r, -1.0, 1.0), 0.0)
  # A forget row opposite to every retain row (d = 1) with beta < 1: no
  # neighbours, the full base rate.
  v = np.abs(h_r[:1]) + 0.1
  same_direction = v * np.arange(1, 9, dtype=np.float32)[:, None]
  np.testing.assert_array_equal(
      adaptive.adaptive_alpha(-v, same_direction, -1.0, 0.99), -1.0)
  # beta = 0 still counts an identical feature (d = 0), scaled copies too.
  same = np.asarray(adaptive.adaptive_alpha(h_r[:1] * 3.0, h_r[:1], -0.5, 0.0))
  np.testing.assert_allclose(same, 0.0, atol=1e-7)


def test_traced_vmapped_and_no_gradient_through_features():
  rng = np.random.default_rng(2)
  h_r = jnp.asarray(rng.normal(size=(20, 6)), jnp.float32)
  h_f = jnp.asarray(rng.normal(size=(5, 6)), jnp.float32)
  betas = jnp.array([0.2, 0.4, 0.6])
  alphas = jnp.array([-1.0, -0.5, -2.0])
  f = jax.jit(jax.vmap(adaptive.adaptive_alpha, in_axes=(None, None, 0, 0)))
  got = np.asarray(f(h_f, h_r, alphas, betas))
  for i in range(3):
    np.testing.assert_allclose(got[i], _reference(h_f, h_r, float(alphas[i]),
                                                  float(betas[i])), rtol=1e-6)
  # The rate is part of the target: no gradient flows into the features.
  g = jax.grad(lambda h: jnp.sum(adaptive.adaptive_alpha(h, h_r, -1.0, 0.5)))(h_f)
  np.testing.assert_array_equal(g, 0.0)


def test_per_example_rate_in_the_smoothed_loss():
  """A [B] rate gives each row its own GLS target: equal to B scalar calls."""
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.normal(size=(4, 10)), jnp.float32)
  y = jnp.array([0, 3, 9, 3])
  alpha = jnp.array([-1.0, -0.25, 0.0, -0.6])
  got = losses.smoothed_cross_entropy(logits, y, alpha)
  want = [losses.smoothed_cross_entropy(logits[i:i + 1], y[i:i + 1], alpha[i])[0]
          for i in range(4)]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def _features_and_beta():
  """The tiny model's penultimate features of the step's two batches (at
  its initial weights, train-mode BatchNorm as in the step), and a beta in
  the widest gap between the middle distances, so float32 rounding between
  code paths cannot move a pair across it."""
  model = tiny_resnet(None)
  v = train.init_variables(model, 0)
  x = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
  feats = lambda idx: train.forward(model, v["params"], v["batch_stats"], x[idx],  # noqa
                                    features=True)[2]
  h_r, h_f = feats(np.arange(0, 16)), feats(np.arange(40, 48))
  d = np.sort(np.asarray(adaptive.feature_distance(h_f, h_r)).ravel())
  mid = d[len(d) // 4: 3 * len(d) // 4]
  i = int(np.argmax(np.diff(mid)))
  return h_f, h_r, float((mid[i] + mid[i + 1]) / 2)


def _adaptive_run(mode, beta):
  model_for = tiny_resnet
  tx = train.sgd(train.lr_schedule("constant", 0.05, 4, 4), 0.9, 5e-4)
  v = train.init_variables(model_for(None), 0)
  state = jax.device_get(train.create_state(v["params"], v["batch_stats"], tx))
  rng = np.random.default_rng(0)
  data = {"x": rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
          "y": rng.integers(0, 10, 64).astype(np.int32)}
  par = parallel.make(mode, num_devices=4)
  step = par.wrap(functools.partial(ugradsl_step.unlearn_step, model=model_for(par.axis_name),
                                    tx=tx, alpha_mode="adaptive"))
  rstate = par.replicate(state)
  rdata = par.replicate(data)
  batch = {"retain": {"idx": np.arange(0, 16)}, "forget": {"idx": np.arange(40, 48)}}
  rstate, m = step(rstate, rdata, par.shard(batch), {"alpha": -1.0, "p": 0.5,
                                                      "beta": beta})
  return jax.device_get(par.unreplicate(m)), jax.device_get(par.unreplicate(rstate))


@pytest.mark.parametrize("mode", ["pmap", "shard_map"])
def test_neighbours_come_from_the_global_retain_batch(mode):
  """Under pmap / shard_map each device's forget rows are compared with the
  whole retain batch (gathered), so the step equals the one-device step and
  the reference rate; a per-device count (negative control) differs."""
  h_f, h_r, beta = _features_and_beta()
  ref_m, ref_state = _adaptive_run("none", beta)
  m, state = _adaptive_run(mode, beta)
  whole = np.asarray(adaptive.adaptive_alpha(h_f, h_r, -1.0, beta))
  assert -1.0 < whole.mean() < 0.0  # some, not all, neighbours
  np.testing.assert_allclose(ref_m["forget_alpha"], whole.mean(), rtol=1e-6)
  np.testing.assert_allclose(m["forget_alpha"], ref_m["forget_alpha"], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
  # Negative control: each device's 2 forget rows against its own 4 retain rows.
  per_device = np.concatenate([adaptive.adaptive_alpha(h_f[2 * d:2 * d + 2],
                                                       h_r[4 * d:4 * d + 4], -1.0, beta)
                               for d in range(4)])
  assert abs(per_device.mean() - whole.mean()) > 1e-3


def test_eval_mode_features_use_the_running_statistics():
  """feature_mode "eval": the rate comes from an eval-mode pass of both
  batches (running statistics), checked against those features computed
  here; the train-mode rate (batch statistics) differs (negative control)."""
  model = tiny_resnet(None)
  tx = train.sgd(train.lr_schedule("constant", 0.05, 4, 4), 0.9, 5e-4)
  v = train.init_variables(model, 0)
  state = jax.device_get(train.create_state(v["params"], v["batch_stats"], tx))
  # Running statistics unlike any one batch's, as after pretraining.
  state = state.replace(batch_stats=jax.tree.map(lambda a: a + 0.5, state.batch_stats))
  rng = np.random.default_rng(0)
  data = {"x": rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
          "y": rng.integers(0, 10, 64).astype(np.int32)}
  batch = {"retain": {"idx": np.arange(0, 16)}, "forget": {"idx": np.arange(40, 48)}}

  def feats(idx):
    _, new = model.apply(v | {"batch_stats": state.batch_stats}, data["x"][idx],
                         train=False, mutable=["intermediates"])
    return new["intermediates"]["features"][0]
  h_r, h_f = feats(batch["retain"]["idx"]), feats(batch["forget"]["idx"])
  d = np.sort(np.asarray(adaptive.feature_distance(h_f, h_r)).ravel())
  beta = float(d[len(d) // 2])  # about half the pairs are neighbours
  hp = {"alpha": -1.0, "p": 0.5, "beta": beta}
  out = {}
  for mode in ("eval", "train"):
    step = jax.jit(functools.partial(ugradsl_step.unlearn_step, axis_name=None, model=model,
                                     tx=tx, alpha_mode="adaptive", feature_mode=mode))
    out[mode] = float(step(state, data, batch, hp)[1]["forget_alpha"])
  want = float(np.mean(adaptive.adaptive_alpha(h_f, h_r, -1.0, beta)))
  assert -1.0 < want < 0.0
  np.testing.assert_allclose(out["eval"], want, rtol=1e-5)
  assert abs(out["train"] - want) > 1e-3
