"""Protocol details that change numbers, each against an independent
reference: every example in every epoch (padded last batches), the l1
schedule of the reference code, and RL's relabelled loop."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ugradsl_jax as ug
from ugradsl_jax import batching, configs, loop, methods, parallel, phases, train, ugradsl_step


class Linear(nn.Module):
  """No BatchNorm, so a padded row could only act through the loss."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(4)(x)


@pytest.fixture(scope="module")
def toy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 5)).astype(np.float32)
  y = rng.integers(0, 4, 64).astype(np.int32)
  model = Linear()
  v = model.init(jax.random.key(0), x[:1])
  return x, y, model, v


# ---------------------------------------------------------------- partial batches


@pytest.mark.parametrize("n,batch", [(450, 256), (37, 8), (32, 8), (5, 16)])
def test_an_epoch_covers_every_example_in_ceil_steps(n, batch):
  idx = np.arange(1000, 1000 + n)
  b, steps = batching.epochs(idx, batch, seed=4)
  assert steps == -(-n // batch)  # ceil, as a DataLoader with drop_last=False
  for e in range(2):
    rows = [b(e * steps + s) for s in range(steps)]
    assert all(r["idx"].shape == (batch,) and r["w"].shape == (batch,) for r in rows)
    real = np.concatenate([r["idx"][r["w"] > 0] for r in rows])
    np.testing.assert_array_equal(np.sort(real), idx)  # each example exactly once
    assert sum(float(r["w"].sum()) for r in rows) == n


def _descent(model, tx, batch, x, y, v, **kw):
  state = train.create_state(v["params"], {}, tx)
  step = functools.partial(train.descent_step, axis_name=None, model=model, tx=tx, **kw)
  return jax.jit(step)(state, {"x": jnp.asarray(x), "y": jnp.asarray(y)},
                       jax.tree.map(jnp.asarray, batch), {})[0]


def test_padded_rows_change_no_gradient(toy):
  """A batch of 5 real rows padded to 8 steps exactly as the 5 rows alone;
  the same 8 rows all weighted 1 (negative control) step differently."""
  x, y, model, v = toy
  tx = optax.sgd(0.5)
  real = np.array([3, 9, 12, 40, 41])
  idx, w = batching.padded(real, 8)
  assert list(idx[5:]) == [3, 9, 12] and list(w) == [1] * 5 + [0] * 3
  a = _descent(model, tx, {"idx": idx, "w": w}, x, y, v)
  b = _descent(model, tx, {"idx": real}, x, y, v)
  c = _descent(model, tx, {"idx": idx, "w": np.ones(8, np.float32)}, x, y, v)
  for p, q in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)
  assert max(float(np.abs(p - q).max()) for p, q in
             zip(jax.tree.leaves(a.params), jax.tree.leaves(c.params))) > 1e-4
  # reduction "sum" sums the real rows only: 5 x the mean's step.
  s = _descent(model, optax.sgd(0.1), {"idx": idx, "w": w}, x, y, v, reduction="sum")
  m = _descent(model, optax.sgd(0.5), {"idx": real}, x, y, v)
  for p, q in zip(jax.tree.leaves(s.params), jax.tree.leaves(m.params)):
    np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)


def test_padded_forget_rows_change_no_paired_gradient(toy):
  x, y, model, v = toy
  tx = optax.sgd(0.1)
  hp = {"alpha": -0.5, "p": 0.5}
  data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
  step = jax.jit(functools.partial(ugradsl_step.unlearn_step, axis_name=None, model=model,
                                   tx=tx))
  state = train.create_state(v["params"], {}, tx)
  retain = {"idx": np.arange(20, 28), "w": np.ones(8, np.float32)}
  f_idx, f_w = batching.padded(np.array([1, 2, 5]), 8)
  padded = step(state, data, {"retain": retain, "forget": {"idx": f_idx, "w": f_w}}, hp)[0]
  # The reference: the 3 forget rows alone (no weights anywhere).
  alone = step(state, data, {"retain": {"idx": retain["idx"]},
                             "forget": {"idx": np.array([1, 2, 5])}}, hp)[0]
  for p, q in zip(jax.tree.leaves(padded.params), jax.tree.leaves(alone.params)):
    np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)


def test_a_phase_takes_epochs_times_ceil_steps(toy):
  """GA over 13 forget examples at batch 4 for 3 epochs: 3 * ceil(13 / 4) = 12
  steps, counted from the logged history (one row a step)."""
  x, y, model, v = toy
  rows = []
  ug.unlearn(model, v, (x[:13], y[:13]), (x[13:], y[13:]), method="ga", epochs=3,
             batch_size=4, history=rows)
  assert [r["step"] for r in rows] == list(range(1, 3 * 4 + 1))


# ---------------------------------------------------------------- l1-sparse


def test_l1_coefficient_follows_the_reference_schedule():
  # FT_iter: l1 * (1 - e / (E - no_l1)), constant within each epoch.
  hp = {"l1": 0.1, "steps_per_epoch": 10.0, "epochs": 4.0, "no_l1_epochs": 0.0}
  coef = lambda s, h=hp: float(methods.l1_coefficient(jnp.int32(s), h))  # noqa: E731
  assert [coef(s) for s in (0, 9, 10, 19, 20, 39)] == pytest.approx(
      [0.1, 0.1, 0.075, 0.075, 0.05, 0.025])
  assert coef(39) > 0  # never 0 in the last epoch
  one = {**hp, "epochs": 1.0}
  assert coef(9, one) == pytest.approx(0.1)  # a one-epoch run: full weight throughout
  tail = {**hp, "no_l1_epochs": 1.0}  # E - no_l1 = 3: 0.1, 0.0667, 0.0333, then 0
  assert [coef(s, tail) for s in (0, 10, 20, 30)] == pytest.approx([0.1, 0.1 * 2 / 3,
                                                                      0.1 / 3, 0.0])


def test_l1_term_enters_the_objective_as_its_gradient(toy):
  """One SGD step with the l1 term minus one without = -lr * coef * sign(w)."""
  x, y, model, v = toy
  lr, l1 = 0.2, 0.03
  tx = optax.sgd(lr)
  batch = {"idx": np.arange(8)}
  hp = {"l1": l1, "steps_per_epoch": 5.0, "epochs": 2.0, "no_l1_epochs": 0.0}
  state = train.create_state(v["params"], {}, tx)
  data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
  with_l1 = jax.jit(functools.partial(train.descent_step, axis_name=None, model=model, tx=tx,
                                      reg_fn=methods.l1_penalty))
  plain = jax.jit(functools.partial(train.descent_step, axis_name=None, model=model, tx=tx))
  a, metrics = with_l1(state, data, batch, hp)
  b, _ = plain(state, data, batch, hp)
  assert float(metrics["l1_coef"]) == pytest.approx(l1)
  for pa, pb, w in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params),
                       jax.tree.leaves(v["params"])):
    np.testing.assert_allclose(pa - pb, -lr * l1 * np.sign(w), rtol=1e-4, atol=1e-7)


def test_l1_coef_is_logged(toy):
  x, y, model, v = toy
  rows = []
  ug.unlearn(model, v, (x[:16], y[:16]), (x[16:], y[16:]), method="l1_sparse", epochs=2,
             batch_size=16, l1=1e-3, history=rows)
  per_epoch = -(-48 // 16)
  assert [r["l1_coef"] for r in rows] == pytest.approx([1e-3] * per_epoch +
                                                       [5e-4] * per_epoch)


# ---------------------------------------------------------------- RL's loop


def test_rl_sequential_loop_relabels_forget_batches_then_passes_the_retain_set():
  labels = np.repeat(np.arange(10), 30).astype(np.int32)  # 300 examples, 10 classes
  forget, retain = np.arange(0, 300, 10), np.setdiff1d(np.arange(300), np.arange(0, 300, 10))
  b, steps = batching.relabelled(forget, retain, 16, seed=2, stream=7, labels=labels,
                                 num_classes=10, loop="sequential")
  assert steps == 2 + 17  # ceil(30 / 16) + ceil(270 / 16)
  rows = [b(s) for s in range(steps)]
  f_rows, r_rows = rows[:2], rows[2:]
  got_f = np.concatenate([r["idx"][r["w"] > 0] for r in f_rows])
  np.testing.assert_array_equal(np.sort(got_f), forget)
  got_r = np.concatenate([r["idx"][r["w"] > 0] for r in r_rows])
  np.testing.assert_array_equal(np.sort(got_r), retain)
  for r in r_rows:  # retain rows keep their labels
    np.testing.assert_array_equal(r["y"], labels[r["idx"]])
  y_f = np.concatenate([r["y"][r["w"] > 0] for r in f_rows])
  assert not np.array_equal(y_f, labels[got_f])  # relabelled...
  assert set(y_f) <= set(range(10))
  # ...afresh for every batch: the next epoch draws other labels for the same rows.
  again = b(steps)
  assert not np.array_equal(again["y"], rows[0]["y"]) or \
      not np.array_equal(again["idx"], rows[0]["idx"])
  # The true class is a possible draw (randint(0, K)), not excluded.
  many = np.concatenate([b(e * steps)["y"] - labels[b(e * steps)["idx"]] for e in range(30)])
  assert np.any(many == 0)


def test_rl_union_loop_and_auto_choice():
  labels = np.repeat(np.arange(5), 20).astype(np.int32)
  forget, retain = np.arange(10), np.arange(10, 100)
  b, steps = batching.relabelled(forget, retain, 32, seed=1, stream=3, labels=labels,
                                 num_classes=5, loop="union")
  assert steps == 4  # ceil(100 / 32)
  rows = [b(s) for s in range(steps)]
  real = np.concatenate([r["idx"][r["w"] > 0] for r in rows])
  np.testing.assert_array_equal(np.sort(real), np.arange(100))
  is_f = np.concatenate([np.isin(r["idx"], forget)[r["w"] > 0] for r in rows])
  ys = np.concatenate([r["y"][r["w"] > 0] for r in rows])
  np.testing.assert_array_equal(ys[~is_f], labels[real[~is_f]])
  m = configs.MethodCfg(epochs=1, lr=0.1)
  assert methods.rl_loop(m, "cifar100") == "union"
  assert methods.rl_loop(m, "cifar10") == "sequential"
  assert methods.rl_loop(configs.MethodCfg(epochs=1, lr=0.1, rl_loop="union"), "svhn") == "union"


def test_descent_step_trains_on_the_batch_labels(toy):
  """RL's batch labels, not the data set's, enter the loss: the step equals
  one on the data set relabelled by hand."""
  x, y, model, v = toy
  tx = optax.sgd(0.5)
  idx = np.arange(8)
  new = (y[idx] + 1) % 4
  a = _descent(model, tx, {"idx": idx, "y": new}, x, y, v)
  y2 = y.copy()
  y2[idx] = new
  b = _descent(model, tx, {"idx": idx}, x, y2, v)
  c = _descent(model, tx, {"idx": idx}, x, y, v)
  for p, q in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(p, q, rtol=1e-6)
  assert not np.allclose(jax.tree.leaves(a.params)[0], jax.tree.leaves(c.params)[0])


def test_data_parallel_padded_step_equals_one_device(toy):
  """The weighted mean across 4 devices (a shard of mostly padding on the
  last one) is the one-device step."""
  x, y, model, v = toy
  tx = optax.sgd(0.5)
  idx, w = batching.padded(np.arange(10), 16)
  state = train.create_state(v["params"], {}, tx)
  data = {"x": x, "y": y}
  out = {}
  for mode in ("none", "shard_map"):
    par = parallel.make(mode, None if mode == "none" else 4)
    step = par.wrap(functools.partial(train.descent_step, model=model, tx=tx))
    s, _ = step(par.replicate(jax.device_get(state)), par.replicate(data),
                par.shard({"idx": idx, "w": w}), par.put_hp({}))
    out[mode] = jax.device_get(par.unreplicate(s)).params
  for p, q in zip(jax.tree.leaves(out["none"]), jax.tree.leaves(out["shard_map"])):
    np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- divergence


def _fit(model, v, x, y, lr, steps=6, log_every=1):
  tx = optax.sgd(lr)
  batches, _ = batching.epochs(np.arange(32), 8, seed=0)
  data = {"x": jnp.asarray(x * 1e3), "y": jnp.asarray(y)}  # large inputs: big gradients
  step = functools.partial(train.descent_step, model=model, tx=tx)
  return loop.fit(phase="t", par=parallel.make("none"), step_fn=step,
                  state=train.create_state(v["params"], {}, tx), data=data,
                  batches=batches, num_steps=steps, images_per_step=8,
                  log_every=log_every, ckpt_every=1000)


def test_a_diverged_phase_keeps_its_last_finite_parameters(toy):
  x, y, model, v = toy
  fine = _fit(model, v, x, y, 1e-3)
  assert not fine.diverged and fine.diverged_step is None
  res = _fit(model, v, x, y, 1e33)
  assert res.diverged and 1 <= res.diverged_step <= 6
  leaves = jax.tree.leaves(res.state.params)
  assert all(np.all(np.isfinite(a)) for a in leaves)
  # The last finite parameters are those of the steps before the divergence,
  # newer than any checkpoint (ckpt_every 1000), so not the starting model's.
  if not res.no_finite_step:
    assert not all(np.array_equal(a, b) for a, b in zip(leaves, jax.tree.leaves(v["params"])))
  # Caught within one logged step: at most log_every rows past the first bad one.
  assert len(res.history) == res.diverged_step


def test_divergence_on_the_first_step_leaves_nothing_to_score(toy):
  x, y, model, v = toy
  res = _fit(model, v, x, y, 3e38)
  assert res.diverged and res.diverged_step == 1 and res.no_finite_step
  for a, b in zip(jax.tree.leaves(res.state.params), jax.tree.leaves(v["params"])):
    np.testing.assert_array_equal(a, b)
  from ugradsl_jax import protocol
  row = protocol._row(phases.Phase(res.state, {
      "diverged": True, "diverged_step": 1, "no_finite_step": True, "rte_s": 0.1,
      "compile_s": 0.0}), {"test": {"UA": 5.0, "RA": 90.0, "TA": 80.0, "MIA": 3.0},
                           "val": {"UA": 5.0, "RA": 90.0, "TA": 80.0, "MIA": 3.0}}, {})
  assert row["UA"] is None and row["val"]["TA"] is None
  from ugradsl_jax import metrics, report
  assert metrics.avg_gap(row, {"UA": 1.0, "RA": 1.0, "TA": 1.0, "MIA": 1.0}) is None
  assert "no finite model to score" in report.table({"ga": {**row, "avg_gap": None}})
