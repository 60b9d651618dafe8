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


def test_iu_chunks_of_retain_gradients_change_nothing(toy, monkeypatch):
  """WoodFisher's 102 retain gradients in chunks of 64 (the last padded,
  then cut) give the step of one unpadded chunk of 102."""
  from ugradsl_jax import baseline_methods
  x, y, m, v = toy
  f, r = (x[:30], y[:30]), (x[30:], y[30:])
  kw = dict(method="iu", num_samples=100, batch_size=32, scale=0.1)
  chunked = _delta(ug.unlearn(m, v, f, r, **kw), v)
  monkeypatch.setattr(baseline_methods, "IU_CHUNK", 102)
  whole = _delta(ug.unlearn(m, v, f, r, **kw), v)
  np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-8)
  # Negative control: fewer retain gradients are another estimate.
  fewer = _delta(ug.unlearn(m, v, f, r, **{**kw, "num_samples": 40}), v)
  assert np.abs(fewer - whole).max() > 1e-6


def test_scrub_refuses_a_reduction_it_does_not_read(toy):
  x, y, m, v = toy
  assert "reduction" not in configs.METHOD_READS["scrub"]
  with pytest.raises((TypeError, ValueError, configs.ConfigError), match="reduction"):
    ug.unlearn(m, v, (x[:30], y[:30]), (x[30:], y[30:]), method="scrub", reduction="sum")


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


# ---------------------------------------------------------------- SCRUB


def test_scrub_passes_follow_its_schedule():
  from ugradsl_jax import baseline_methods as B
  forget, retain = np.arange(10), np.arange(10, 50)
  b, total = B.scrub_batches(forget, retain, 8, seed=0, epochs=3, msteps=2)
  f, r = 2, 5  # ceil(10 / 8), ceil(40 / 8)
  assert total == 2 * (f + r) + r
  kinds = [float(b(s)["m"][0]) for s in range(total)]
  assert kinds == ([1.0] * f + [0.0] * r) * 2 + [0.0] * r
  first_max = np.concatenate([b(s)["idx"][b(s)["w"] > 0] for s in range(f)])
  np.testing.assert_array_equal(np.sort(first_max), forget)


def _scrub_step(mode, model, student, teacher, x, y, batch, tx):
  import functools
  from ugradsl_jax import baseline_methods as B, parallel, train
  par = parallel.make(mode, None if mode == "none" else 4)
  step = par.wrap(functools.partial(B.scrub_step, model=model, tx=tx, temperature=2.0,
                                    kd_weight=0.5, ce_weight=0.9))
  state = train.create_state(student["params"], {}, tx)
  data = {"x": x, "y": y, "teacher": {"params": teacher["params"], "batch_stats": {}}}
  s, m = step(par.replicate(jax.device_get(state)), par.replicate(data), par.shard(batch),
              par.put_hp({}))
  return jax.device_get(par.unreplicate(s)).params, jax.device_get(par.unreplicate(m))


def test_scrub_step_against_its_objective_by_hand(toy):
  import optax
  from ugradsl_jax import baselines
  x, y, m, teacher = toy
  student = m.init(jax.random.key(7), x[:2])  # differs from the teacher
  tx = optax.sgd(0.3)
  for kind in (1.0, 0.0):
    idx, w = np.arange(12, 28), np.ones(16, np.float32)
    batch = {"idx": idx, "w": w, "m": np.full(16, kind, np.float32)}
    got, metrics = _scrub_step("none", m, student, teacher, x, y, batch, tx)

    def objective(p):
      s_logits, t_logits = m.apply(p, x[idx]), m.apply(teacher, x[idx])
      kl = baselines.distill_kl(s_logits, t_logits, 2.0)
      ce = optax.softmax_cross_entropy_with_integer_labels(s_logits, y[idx]).mean()
      return -kl if kind else 0.9 * ce + 0.5 * kl
    g = jax.grad(objective)(student)["params"]
    want = jax.tree.map(lambda p, d: p - 0.3 * d, student["params"], g)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert float(metrics["max_step"]) == kind
  # The same step data-parallel over 4 devices, the last shard half padding.
  idx, w = batching_padded(np.arange(12, 26), 16)
  batch = {"idx": idx, "w": w, "m": np.ones(16, np.float32)}
  one, _ = _scrub_step("none", m, student, teacher, x, y, batch, tx)
  four, _ = _scrub_step("shard_map", m, student, teacher, x, y, batch, tx)
  for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(four)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def batching_padded(idx, n):
  from ugradsl_jax import batching
  return batching.padded(idx, n)


def test_scrub_through_the_api(toy):
  x, y, m, v = toy
  rows = []
  out = ug.unlearn(m, v, (x[:30], y[:30]), (x[30:], y[30:]), method="scrub", epochs=2,
                   msteps=1, batch_size=16, lr=0.05, history=rows)
  assert np.abs(_delta(out, v)).max() > 0
  assert [r["max_step"] for r in rows][:2] == [1.0, 1.0]  # ceil(30 / 16) max steps first
  assert rows[-1]["max_step"] == 0.0
  with pytest.raises(configs.ConfigError, match="--scrub_msteps 3"):
    ug.unlearn(m, v, (x[:30], y[:30]), (x[30:], y[30:]), method="scrub", epochs=2, msteps=3)


# ---------------------------------------------------------------- Boundary Expanding


@pytest.mark.parametrize("name", ["resnet18", "vit"])
def test_the_head_is_the_part_a_class_more_changes(name):
  from ugradsl_jax import baseline_methods as B, baselines, models, train
  build = lambda k: models.build(name, num_classes=k, mean=models.CIFAR_MEAN,  # noqa: E731
                                 std=models.CIFAR_STD, tiny=True)
  small = train.init_variables(build(10), 0)["params"]
  big = jax.eval_shape(lambda: train.init_variables(build(11), 0))["params"]
  path = B._head_path(small, big)
  head = B._at(small, path)
  assert head["kernel"].shape[-1] == 10
  grown = baselines.add_shadow_class(head, jax.random.key(0))
  assert jax.tree.map(np.shape, B._with(small, path, grown)) == jax.tree.map(np.shape, big)
  back = B._with(small, path, baselines.prune_shadow_class(grown))
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(small)):
    np.testing.assert_array_equal(a, b)


def test_boundary_expanding_needs_a_library_model(toy):
  x, y, m, v = toy
  with pytest.raises(configs.ConfigError, match="rebuilds the model's head"):
    ug.unlearn(m, v, (x[:30], y[:30]), (x[30:], y[30:]), method="boundary_expanding")
