"""Mixed precision (--dtype bfloat16): the passes compute in bfloat16, while
parameters, optimizer state, BatchNorm statistics, metrics and losses stay
float32; a bfloat16 run tracks the float32 one and records its dtype."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ugradsl_jax import checkpoint, configs, mixing, models, parallel, protocol, train, ugradsl_step

PAR = parallel.make("none")


def _model(dtype):
  return models.build("resnet18", num_classes=10, mean=models.CIFAR_MEAN,
                      std=models.CIFAR_STD, width=4, tiny=True, dtype=dtype)


def _setup():
  tx = train.sgd(train.lr_schedule("constant", 0.05, 10, 10), 0.9, 5e-4)
  v = train.init_variables(_model(jnp.float32), 0)
  state = jax.device_get(train.create_state(v["params"], v["batch_stats"], tx))
  rng = np.random.default_rng(0)
  data = {"x": rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
          "y": rng.integers(0, 10, 64).astype(np.int32)}
  return tx, state, data


def _step(kind, dtype):
  tx, state, data = _setup()
  model = _model(dtype)
  if kind == "descent":
    fn = functools.partial(train.descent_step, model=model, tx=tx)
    batch, hp = {"idx": np.arange(16)}, {}
  else:
    fn = functools.partial(ugradsl_step.unlearn_step, model=model, tx=tx,
                           mix=mixing.RULES["weighted"])
    batch = {"retain": {"idx": np.arange(16)}, "forget": {"idx": np.arange(40, 48)}}
    hp = {"alpha": -0.5, "p": 0.7}
  out, m = PAR.wrap(fn)(PAR.replicate(state), PAR.replicate(data), PAR.shard(batch), hp)
  return state, jax.device_get(out), jax.device_get(m)


@pytest.mark.parametrize("kind", ["descent", "unlearn"])
def test_bfloat16_step_keeps_float32_state_and_tracks_float32(kind):
  init, s32, m32 = _step(kind, jnp.float32)
  _, s16, m16 = _step(kind, jnp.bfloat16)
  for tree in (s16.params, s16.opt_state, s16.batch_stats, m16):
    for leaf in jax.tree.leaves(tree):  # (the optimizer's step count is int32)
      assert leaf.dtype == np.float32 or np.issubdtype(leaf.dtype, np.integer), leaf.dtype
  # The update it takes is the float32 one up to bfloat16's ~3 significant
  # digits (relative to the update, not to the weights).
  d32 = np.concatenate([np.ravel(a - b) for a, b in
                        zip(jax.tree.leaves(s32.params), jax.tree.leaves(init.params))])
  d16 = np.concatenate([np.ravel(a - b) for a, b in
                        zip(jax.tree.leaves(s16.params), jax.tree.leaves(init.params))])
  rel = np.linalg.norm(d16 - d32) / np.linalg.norm(d32)
  assert rel < 0.05, rel
  # Negative control: it did compute in bfloat16 (not silently float32).
  assert rel > 1e-5, rel
  for k in m32:
    np.testing.assert_allclose(m16[k], m32[k], rtol=0.05, atol=1e-3, err_msg=k)


def test_bfloat16_forward_runs_in_bfloat16():
  x = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  v = train.init_variables(_model(jnp.float32), 0)
  _, inter = _model(jnp.bfloat16).apply(v, x, train=False, capture_intermediates=True)
  assert inter["intermediates"]["Conv_0"]["__call__"][0].dtype == jnp.bfloat16
  logits = _model(jnp.bfloat16).apply(v, x, train=False)
  assert logits.dtype == jnp.float32


def test_bfloat16_smoke_run_records_dtype_and_tracks_float32(cifar, few_run, tmp_path):
  """bfloat16 against its float32 twin: the shared smoke run of the
  experiment (same preset, seed 1; its CLI defaults are the preset's)."""
  import json
  cfg = dataclasses.replace(configs.get("smoke"), dtype="bfloat16")
  r16 = protocol.run_seed(cfg, cifar, tmp_path, ["retrain", "ugradsl_plus"], progress=False)
  r32 = json.loads((few_run / "results.json").read_text())
  assert r16["config"]["dtype"] == "bfloat16" and r32["config"]["dtype"] == "float32"
  same = lambda c: checkpoint.canonical(  # noqa: E731
      {k: v for k, v in c.items() if k not in ("dtype", "methods")})
  assert same(r16["config"]) == same(r32["config"])
  # The pretraining curves agree to a few percent, step by step.
  h16, h32 = ([row["train_loss"] for row in
               protocol.history.read(d / "original" / protocol.history.FILE)]
              for d in (tmp_path, few_run))
  assert len(h16) == len(h32) > 3
  np.testing.assert_allclose(h16, h32, rtol=0.05)
  assert h16 != h32  # not the same computation
  # Accuracies on 18-162 images agree within a few images. MIA-Efficacy is
  # left out: an SVC threshold fit to 18 confidences flips with any change.
  for name in ("retrain", "ugradsl_plus"):
    for k in ("UA", "RA", "TA"):
      assert abs(r16["methods"][name][k] - r32["methods"][name][k]) <= 10.0, (
          name, k, r16["methods"][name][k], r32["methods"][name][k])


def test_bad_dtype_is_a_config_error():
  with pytest.raises(configs.ConfigError, match="--dtype 'float16': must be one of float32, bfloat16"):
    configs.validate(dataclasses.replace(configs.get("smoke"), dtype="float16"))
