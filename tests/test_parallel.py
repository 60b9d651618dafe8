"""pmap / shard_map / none run the same per-device step to the same result."""

import functools

import jax
import numpy as np
import pytest

from conftest import tiny_resnet
from ugradsl_jax import augment, mixing, models, parallel, train, ugradsl_step

B = 16  # global batch, 4 per device


def _setup(seed=0):
  model_for = lambda axis: tiny_resnet(axis)
  tx = train.sgd(train.lr_schedule("constant", 0.05, 10, 10), 0.9, 5e-4)
  v = train.init_variables(model_for(None), seed)
  state = train.create_state(v["params"], v["batch_stats"], tx)
  rng = np.random.default_rng(seed)
  data = {"x": rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
          "y": rng.integers(0, 10, 64).astype(np.int32)}
  return model_for, tx, jax.device_get(state), data


def _aug(idx, seed):
  """Indices plus crop/flip draws, so augmentation is part of the comparison."""
  return {"idx": idx, **augment.crop_flip_params(np.random.default_rng(seed), len(idx))}


def _run(mode, kind, steps=2, batch=B):
  model_for, tx, state, data = _setup()
  par = parallel.make(mode, num_devices=4)
  if kind == "descent":
    step = functools.partial(train.descent_step, model=model_for(par.axis_name), tx=tx)
    batches = [_aug(np.arange(i * batch, (i + 1) * batch), i) for i in range(steps)]
    hp = {}
  else:
    step = functools.partial(ugradsl_step.unlearn_step, model=model_for(par.axis_name), tx=tx,
                             mix=mixing.pcgrad)
    batches = [{"retain": _aug(np.arange(i * batch, (i + 1) * batch), i),
                "forget": _aug(np.arange(48 - i * batch // 2, 48 - i * batch // 2 + batch),
                               100 + i)}
               for i in range(steps)]
    hp = {"alpha": -0.5, "p": 0.7}
  f = par.wrap(step)
  rstate, rdata = par.replicate(state), par.replicate(data)
  for b in batches:
    rstate, metrics = f(rstate, rdata, par.shard(b), hp)
  return jax.device_get(par.unreplicate(rstate)), jax.device_get(par.unreplicate(metrics))


def _assert_close(a, b, rtol=2e-5, atol=2e-6):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb):
    np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                               rtol=rtol, atol=atol)


def test_fake_devices_present():
  assert jax.device_count() == 4


@pytest.mark.parametrize("kind", ["descent", "unlearn"])
@pytest.mark.parametrize("mode", ["pmap", "shard_map"])
def test_data_parallel_equals_single_device(mode, kind):
  ref_state, ref_m = _run("none", kind)
  state, m = _run(mode, kind)
  _assert_close(state.params, ref_state.params)
  _assert_close(state.batch_stats, ref_state.batch_stats)
  _assert_close(state.opt_state, ref_state.opt_state)
  assert int(state.step) == int(ref_state.step) == 2
  _assert_close(m, ref_m, rtol=1e-5, atol=1e-6)
  # The step moved the model, so the comparison above is not vacuous.
  _, _, init, _ = _setup()
  diff = max(float(np.abs(a - b).max()) for a, b in
             zip(jax.tree.leaves(init.params), jax.tree.leaves(state.params)))
  assert diff > 1e-4


def test_negative_control_detects_a_different_batch():
  """The tolerance above does tell apart two steps that differ slightly."""
  a, _ = _run("none", "descent", batch=B)
  b, _ = _run("none", "descent", batch=B - 4)
  with pytest.raises(AssertionError):
    _assert_close(a.params, b.params)


def test_shard_map_without_pmean_semantics_would_be_wrong():
  """Negative control for the check_vma trap (STYLE.md): with check_vma=True the
  replicated-parameter gradient is summed over devices, and the result differs."""
  model_for, tx, state, data = _setup()
  par = parallel.make("shard_map", num_devices=4)
  step = functools.partial(train.descent_step, model=model_for(par.axis_name), tx=tx,
                           axis_name=par.axis_name)
  from jax.sharding import PartitionSpec as P
  bad = jax.jit(jax.shard_map(step, mesh=par.mesh, in_specs=(P(), P(), P("batch"), P()),
                              out_specs=P(), check_vma=True))
  ref, _ = _run("none", "descent", steps=1)
  out, _ = bad(par.replicate(state), par.replicate(data),
               par.shard(_aug(np.arange(B), 0)), {})
  with pytest.raises(AssertionError):
    _assert_close(jax.device_get(out).params, ref.params)


@pytest.mark.parametrize("mode", ["pmap", "shard_map"])
def test_indivisible_batch_is_a_clear_error(mode):
  par = parallel.make(mode, num_devices=4)
  with pytest.raises(parallel.ParallelError, match="does not divide by the 4 devices"):
    par.shard({"idx": np.arange(10)})


def test_unknown_mode():
  with pytest.raises(parallel.ParallelError, match="must be one of"):
    parallel.make("tpu_magic")
