"""Method building blocks: GA as a special case of the UGradSL step, RL labels,
SalUn's mask, the l1 schedule, and the batch orders."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_resnet
from ugradsl_jax import augment, batching, methods, mixing, models, parallel, train, ugradsl_step


def test_ga_equals_ugradsl_step_with_p0_alpha0():
  """Two code paths: GA as methods.ga wires it (ascent, sign -1, on the
  smoothed cross entropy at alpha 0), and the UGradSL step at p=0, alpha=0.
  The weights agree; the BatchNorm running statistics do not, because
  UGradSL still runs the retain forward pass (its term has weight 0, its
  statistics update does not)."""
  model = tiny_resnet()
  tx = train.sgd(train.lr_schedule("constant", 0.1, 3, 3), 0.9, 5e-4)
  v = train.init_variables(model, 0)
  state = jax.device_get(train.create_state(v["params"], v["batch_stats"], tx))
  rng = np.random.default_rng(0)
  data = {"x": rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8),
          "y": rng.integers(0, 10, 48).astype(np.int32)}
  par = parallel.make("none")
  forget = [{"idx": np.arange(i * 8, i * 8 + 8),
             **augment.crop_flip_params(np.random.default_rng(i), 8)} for i in range(3)]
  retain = [{"idx": np.arange(24 + i * 8, 32 + i * 8)} for i in range(3)]

  ga = par.wrap(functools.partial(train.descent_step, model=model, tx=tx,
                                  loss_fn=methods.smoothed_ce, sign=-1.0))
  ug = par.wrap(functools.partial(ugradsl_step.unlearn_step, model=model, tx=tx,
                                  mix=mixing.weighted_sum))
  hp = {"alpha": 0.0, "p": 0.0}
  s1, s2 = par.replicate(state), par.replicate(state)
  for f, r in zip(forget, retain):
    s1, _ = ga(s1, data, par.shard(f), hp)
    s2, _ = ug(s2, data, par.shard({"forget": f, "retain": r}), hp)
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(s1.batch_stats),
                                                   jax.tree.leaves(s2.batch_stats)))
  # Negative control: p=0.5 brings the retain gradient in and changes the result.
  s3 = par.replicate(state)
  for f, r in zip(forget, retain):
    s3, _ = ug(s3, data, par.shard({"forget": f, "retain": r}), {"alpha": 0.0, "p": 0.5})
  d = max(float(np.abs(a - b).max()) for a, b in
          zip(jax.tree.leaves(s1.params), jax.tree.leaves(s3.params)))
  assert d > 1e-4


def test_saliency_mask_keeps_the_top_share_globally():
  g = {"a": jnp.array([0.1, -5.0, 0.2]), "b": jnp.array([[3.0, -0.05], [0.3, 1.0]])}
  m = methods.saliency_mask(g, 0.5)  # 7 weights -> top 4 by |g|: 5, 3, 1, 0.3
  np.testing.assert_array_equal(m["a"], [0, 1, 0])
  np.testing.assert_array_equal(m["b"], [[1, 0], [1, 1]])


def test_epochs_visit_each_example_once_per_epoch():
  idx = np.arange(100, 164)
  b, steps = batching.epochs(idx, 16, seed=3)
  assert steps == 4
  e0 = np.concatenate([b(s)["idx"] for s in range(4)])
  e1 = np.concatenate([b(s)["idx"] for s in range(4, 8)])
  np.testing.assert_array_equal(np.sort(e0), idx)
  np.testing.assert_array_equal(np.sort(e1), idx)
  assert not np.array_equal(e0, e1)  # reshuffled
  np.testing.assert_array_equal(b(5)["idx"], batching.epochs(idx, 16, seed=3)[0](5)["idx"])


def test_paired_cycles_the_secondary_set():
  forget, retain = np.arange(10), np.arange(100, 125)
  b, steps = batching.paired(forget, retain, 5, 10, seed=0, augment=True)
  assert steps == 2
  stream = np.concatenate([b(s)["retain"]["idx"] for s in range(5)])  # 50 = 2 passes
  np.testing.assert_array_equal(np.sort(stream[:25]), retain)
  np.testing.assert_array_equal(np.sort(stream[25:]), retain)
  x = b(3)
  assert x["forget"]["off"].shape == (5, 2) and x["retain"]["flip"].shape == (10,)
  assert x["forget"]["off"].min() >= 0 and x["forget"]["off"].max() <= 8


def test_phase_without_workdir_equals_the_checkpointed_phase(cifar, tmp_path):
  """workdir=None (screening, benchmarks) trains the same model and writes nothing."""
  import dataclasses
  from ugradsl_jax import configs, experiment, phases, protocol
  cfg = configs.get("smoke")
  exp = protocol.setup(cfg, cifar)

  def original(wd, seed=1):
    e = experiment.make(dataclasses.replace(cfg, seed=seed), cifar, exp.split,
                        parallel.make("none"))
    return phases.run(e, phases.Runner(wd, progress=False), methods.original(e))
  saved = original(tmp_path / "w")
  bare = original(None)
  leaves = lambda p: jax.tree.leaves(jax.device_get(p.state.params))
  for a, b in zip(leaves(saved), leaves(bare)):
    np.testing.assert_array_equal(a, b)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]
  # Negative control: another seed initialises and orders data differently.
  other = original(None, seed=2)
  assert not all(np.array_equal(a, b) for a, b in zip(leaves(bare), leaves(other)))
