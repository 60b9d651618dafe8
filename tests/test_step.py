"""The update steps' fidelity: what they report, what the divergence check
reads, the sum reduction, and a weight mask that is a hard constraint."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import tiny_resnet
from ugradsl_jax import loop, losses, mixing, parallel, train, ugradsl_step

PAR = parallel.make("none")


def _setup(momentum=0.9, wd=5e-4, nesterov=False, lr=0.05):
  model = tiny_resnet()
  tx = train.sgd(train.lr_schedule("constant", lr, 10, 10), momentum, wd, nesterov)
  v = train.init_variables(model, 0)
  state = jax.device_get(train.create_state(v["params"], v["batch_stats"], tx))
  rng = np.random.default_rng(0)
  data = {"x": rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
          "y": rng.integers(0, 10, 64).astype(np.int32)}
  return model, tx, state, data


def _paired(r0, r1, f0, f1):
  return {"retain": {"idx": np.arange(r0, r1)}, "forget": {"idx": np.arange(f0, f1)}}


def _grads(model, state, data, idx, loss):
  """Second code path: the gradient of one set's loss, by jax.grad directly."""
  x, y = jnp.asarray(data["x"][idx]), jnp.asarray(data["y"][idx])

  def f(p, x, y):
    logits, _ = model.apply({"params": p, "batch_stats": state.batch_stats}, x,
                            train=True, mutable=["batch_stats"])
    return loss(logits, y)
  return jax.jit(jax.grad(f))(state.params, x, y)  # one compile beats op-by-op dispatch


def test_paired_step_reports_each_term_and_no_weighted_loss():
  model, tx, state, data = _setup()
  step = PAR.wrap(functools.partial(ugradsl_step.unlearn_step, model=model, tx=tx,
                                    mix=mixing.normalized))
  hp = {"alpha": -0.5, "p": 0.7}
  _, m = step(PAR.replicate(state), PAR.replicate(data), PAR.shard(_paired(0, 16, 40, 48)), hp)
  m = jax.device_get(m)
  assert "loss" not in m  # a weighted loss is only right for the weighted sum
  g_r = _grads(model, state, data, np.arange(0, 16),
               lambda lg, y: jnp.mean(losses.cross_entropy(lg, y)))
  g_f = _grads(model, state, data, np.arange(40, 48),
               lambda lg, y: jnp.mean(losses.smoothed_cross_entropy(lg, y, -0.5)))
  np.testing.assert_allclose(m["retain_grad_norm"], optax.tree.norm(g_r), rtol=1e-5)
  np.testing.assert_allclose(m["forget_grad_norm"], optax.tree.norm(g_f), rtol=1e-5)
  # The norm of the direction the rule mixed (normalized: not the weighted sum).
  d = mixing.normalized(g_r, g_f, hp)
  np.testing.assert_allclose(m["update_norm"], optax.tree.norm(d), rtol=1e-5)
  assert abs(float(m["update_norm"]) -
             float(optax.tree.norm(mixing.weighted_sum(g_r, g_f, hp)))) > 1e-3
  x, y = data["x"][40:48], data["y"][40:48]
  logits = model.apply({"params": state.params, "batch_stats": state.batch_stats}, x,
                       train=True, mutable=["batch_stats"])[0]
  np.testing.assert_allclose(
      m["forget_loss"], jnp.mean(losses.smoothed_cross_entropy(logits, y, -0.5)), rtol=1e-5)
  np.testing.assert_allclose(m["forget_acc"], np.mean(np.argmax(logits, -1) == y))


def test_divergence_check_reads_the_terms_not_the_mix():
  """A rule that ignores the forget gradient still leaves a NaN forget term
  visible: the step is flagged. Negative control: finite terms are not."""
  model, tx, state, data = _setup()
  retain_only = lambda g_r, g_f, hp: g_r  # noqa: E731
  step = PAR.wrap(functools.partial(ugradsl_step.unlearn_step, model=model, tx=tx,
                                    mix=retain_only))
  batch = PAR.shard(_paired(0, 16, 40, 48))
  s, m = step(PAR.replicate(state), PAR.replicate(data), batch,
              {"alpha": float("nan"), "p": 1.0})
  assert np.isfinite(m["retain_loss"]) and not np.isfinite(m["forget_loss"])
  assert bool(s.nonfinite)
  s, _ = step(PAR.replicate(state), PAR.replicate(data), batch, {"alpha": -0.5, "p": 1.0})
  assert not bool(s.nonfinite)


def test_sum_reduction_is_the_papers_objective():
  """reduction="sum" descends p * sum_r CE - (1 - p) * sum_f NLS (jax.grad of
  it written out), which differs from the mean form by the batch sizes:
  with |B_r| = 16, |B_f| = 8 the forget term's relative weight halves."""
  model, tx, state, data = _setup()
  hp = {"alpha": -0.5, "p": 0.6}
  p = hp["p"]
  g_sum_r = _grads(model, state, data, np.arange(0, 16),
                   lambda lg, y: jnp.sum(losses.cross_entropy(lg, y)))
  g_sum_f = _grads(model, state, data, np.arange(40, 48),
                   lambda lg, y: jnp.sum(losses.smoothed_cross_entropy(lg, y, -0.5)))
  want = jax.tree.map(lambda r, f: p * r - (1 - p) * f, g_sum_r, g_sum_f)
  # Capture the direction the step applies: plain SGD (lr 1, no momentum or
  # decay) moves the weights by exactly minus it.
  sgd = optax.sgd(1.0)
  st = jax.device_get(train.create_state(state.params, state.batch_stats, sgd))
  batch = PAR.shard(_paired(0, 16, 40, 48))
  moved = {}
  for red in ("mean", "sum"):
    step = PAR.wrap(functools.partial(ugradsl_step.unlearn_step, model=model, tx=sgd,
                                      reduction=red), donate=False)
    new, _ = step(PAR.replicate(st), PAR.replicate(data), batch, hp)
    moved[red] = jax.tree.map(lambda a, b: np.asarray(a, np.float64) - b, st.params,
                              jax.device_get(new.params))
  for a, b in zip(jax.tree.leaves(moved["sum"]), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-5)
  # The mean form is the same with each term divided by its batch size.
  want_mean = jax.tree.map(lambda r, f: p * r / 16 - (1 - p) * f / 8, g_sum_r, g_sum_f)
  for a, b in zip(jax.tree.leaves(moved["mean"]), jax.tree.leaves(want_mean)):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-6)
  # Negative control: scaling the mean direction by one batch size is not
  # the sum form when the sizes differ.
  off = max(float(np.abs(16 * a - b).max()) for a, b in
            zip(jax.tree.leaves(moved["mean"]), jax.tree.leaves(moved["sum"])))
  assert off > 1e-2


def test_descent_sum_reduction_scales_by_the_batch():
  model, tx, state, data = _setup()
  sgd = optax.sgd(1.0)
  st = jax.device_get(train.create_state(state.params, state.batch_stats, sgd))
  batch = PAR.shard({"idx": np.arange(0, 16)})
  out = {}
  for red in ("mean", "sum"):
    step = PAR.wrap(functools.partial(train.descent_step, model=model, tx=sgd,
                                      reduction=red), donate=False)
    new, m = step(PAR.replicate(st), PAR.replicate(data), batch, {})
    out[red] = (jax.tree.map(lambda a, b: np.asarray(a, np.float64) - b, st.params,
                             jax.device_get(new.params)), m)
  for a, b in zip(jax.tree.leaves(out["mean"][0]), jax.tree.leaves(out["sum"][0])):
    np.testing.assert_allclose(16 * a, b, rtol=1e-3, atol=1e-6)
  # Reported losses stay per-example means in both forms.
  np.testing.assert_allclose(out["mean"][1]["train_loss"], out["sum"][1]["train_loss"])


def _half_mask(params):
  rng = np.random.default_rng(7)
  return jax.tree.map(lambda w: (rng.random(w.shape) < 0.5).astype(np.float32), params)


@pytest.mark.parametrize("kind,momentum,wd,nesterov", [
    ("descent", 0.9, 5e-3, True), ("paired", 0.9, 5e-3, False),
    ("descent", 0.0, 5e-3, False)])
def test_masked_out_weights_stay_bit_for_bit(kind, momentum, wd, nesterov):
  model, tx, state, data = _setup(momentum, wd, nesterov)
  mask = _half_mask(state.params)
  rdata = PAR.replicate({**data, "mask": mask})

  def run(mask_key, grad_only=False):
    if kind == "descent":
      step = functools.partial(train.descent_step, model=model, tx=tx, mask_key=mask_key)
      batches = [{"idx": np.arange(8 * i, 8 * i + 8)} for i in range(3)]
      hp = {}
    else:
      step = functools.partial(ugradsl_step.unlearn_step, model=model, tx=tx, mask_key=mask_key)
      batches = [_paired(8 * i, 8 * i + 8, 40 + 4 * i, 44 + 4 * i) for i in range(3)]
      hp = {"alpha": -0.5, "p": 0.5}
    if grad_only:  # what a masked gradient alone does: the old behaviour
      step = functools.partial(_grad_mask_only, kind=kind, model=model, tx=tx)
    f = PAR.wrap(step)
    s = PAR.replicate(state)
    for b in batches:
      s, _ = f(s, rdata, PAR.shard(b), hp)
    return jax.device_get(s.params)

  new = run("mask")
  for w0, w1, m in zip(jax.tree.leaves(state.params), jax.tree.leaves(new),
                       jax.tree.leaves(mask)):
    out = m == 0
    np.testing.assert_array_equal(w1[out].view(np.uint32), w0[out].view(np.uint32))
  moved_in = sum(int(np.sum((w1 != w0) & (m == 1))) for w0, w1, m in zip(
      jax.tree.leaves(state.params), jax.tree.leaves(new), jax.tree.leaves(mask)))
  assert moved_in > 0.4 * sum(int(m.sum()) for m in jax.tree.leaves(mask))
  if (kind, nesterov) != ("descent", True):
    return  # one negative control is enough (each costs a compilation)
  # Negative control: masking only the gradient lets weight decay (and
  # momentum) move the weights outside the mask.
  old = run(None, grad_only=True)
  moved_out = sum(int(np.sum((w1 != w0) & (m == 0))) for w0, w1, m in zip(
      jax.tree.leaves(state.params), jax.tree.leaves(old), jax.tree.leaves(mask)))
  assert moved_out > 0


def _grad_mask_only(state, data, batch, hp, *, axis_name, kind, model, tx):
  """The step as it was: the gradient masked, the optimizer free."""
  if kind == "descent":
    x, y = train.gather_augment(data, batch)

    def obj(p):
      logits, _, _ = train.forward(model, p, state.batch_stats, x)
      return jnp.mean(losses.cross_entropy(logits, y))
    g = jax.grad(obj)(state.params)
  else:
    xr, yr = train.gather_augment(data, batch["retain"])
    xf, yf = train.gather_augment(data, batch["forget"])

    def obj(p):
      lr_, _, _ = train.forward(model, p, state.batch_stats, xr)
      lf, _, _ = train.forward(model, p, state.batch_stats, xf)
      return (hp["p"] * jnp.mean(losses.cross_entropy(lr_, yr)) - (1 - hp["p"]) *
              jnp.mean(losses.smoothed_cross_entropy(lf, yf, hp["alpha"])))
    g = jax.grad(obj)(state.params)
  g = train.masked(g, data["mask"])
  updates, opt = tx.update(g, state.opt_state, state.params)
  return state.replace(params=optax.apply_updates(state.params, updates),
                       opt_state=opt, step=state.step + 1), {}



def test_rte_leaves_out_checkpoint_saves_and_history_is_lagged_but_complete(tmp_path):
  """fit() times saves apart (io_s) and still logs every step's metrics."""
  import time
  model, tx, state, data = _setup()

  class SlowStore:  # a save that takes 0.5 s: I/O, not unlearning
    dir = tmp_path

    def save(self, step, state):
      time.sleep(0.5)

  step = functools.partial(train.descent_step, model=model, tx=tx)
  t0 = time.perf_counter()
  res = loop.fit(phase="t", par=PAR, step_fn=step, state=state, data=PAR.replicate(data),
                 batches=lambda i: {"idx": np.arange(8 * (i % 4), 8 * (i % 4) + 8)},
                 num_steps=6, images_per_step=8, ckpt_every=2, log_every=1,
                 lr_fn=lambda s: 0.05,
                 hooks=[loop.Checkpoints(SlowStore()),
                        loop.HistoryFile(tmp_path / "history.jsonl")])
  wall = time.perf_counter() - t0
  assert res.io_s >= 1.5  # three saves
  assert res.run_s + res.io_s + res.compile_s <= wall
  assert res.run_s < wall - 1.5
  rows = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
  assert rows == res.history and all(r["lr"] == 0.05 for r in rows)
  # The logged metrics are the steps' own: replaying the steps gives them.
  f = PAR.wrap(step)
  s = PAR.replicate(state)
  for i in range(6):
    s, m = f(s, PAR.replicate(data), PAR.shard({"idx": np.arange(8 * (i % 4), 8 * (i % 4) + 8)}),
             {})
    assert float(m["train_loss"]) == pytest.approx(rows[i]["train_loss"], rel=1e-6)


# ---------------------------------------------------------------- one pass

def _paired_step(passes, mode="none", batch=None, alpha=-0.5, mix="pcgrad", steps=2):
  model, tx, state, data = _setup()
  par = parallel.make(mode, num_devices=None if mode == "none" else 4)
  if mode != "none":
    from conftest import tiny_resnet as build
    model = build(par.axis_name)
  step = par.wrap(functools.partial(ugradsl_step.unlearn_step, model=model, tx=tx,
                                    mix=mixing.RULES[mix], passes=passes))
  rstate = par.replicate(state)
  for i in range(steps):
    b = batch or _paired(16 * i, 16 * i + 16, 40 - 8 * i, 56 - 8 * i)
    rstate, m = step(rstate, par.replicate(data), par.shard(b), {"alpha": alpha, "p": 0.7})
  return jax.device_get(par.unreplicate(rstate)), jax.device_get(par.unreplicate(m))


def _close(a, b, rtol=2e-5, atol=2e-6):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64),
                               rtol=rtol, atol=atol)


@pytest.mark.parametrize("mode", ["none", "pmap", "shard_map"])
def test_one_pass_equals_two_passes(mode):
  """Same semantics in one vmapped pass: per-set batch statistics, running
  statistics updated retain first then forget, each term's gradient apart
  (pcgrad reads both), two steps so the running statistics feed back."""
  two, m2 = _paired_step("two", mode)
  one, m1 = _paired_step("one", mode)
  _close(one.params, two.params)
  _close(one.batch_stats, two.batch_stats)
  _close(one.opt_state, two.opt_state)
  _close(m1, m2, rtol=1e-5, atol=1e-6)
  if mode != "none":
    return  # the control below is the layout-free one; once is enough
  # Negative control: the sets' roles swapped (the forget batch descended,
  # the retain batch ascended, BatchNorm updated in the other order) differ.
  swapped, _ = _paired_step("two", mode, batch={"retain": {"idx": np.arange(40, 56)},
                                                "forget": {"idx": np.arange(0, 16)}},
                            steps=1)
  single, _ = _paired_step("one", mode, steps=1)
  diff = max(float(np.abs(a - b).max()) for a, b in
             zip(jax.tree.leaves(swapped.batch_stats), jax.tree.leaves(single.batch_stats)))
  assert diff > 1e-4


def test_one_pass_needs_equal_batches_and_a_fixed_rate():
  unequal = _paired(0, 16, 40, 48)
  with pytest.raises(ValueError, match="equal batches"):
    _paired_step("one", batch=unequal, steps=1)
  # auto falls back to two passes where one cannot serve
  auto, _ = _paired_step("auto", batch=unequal, steps=1)
  two, _ = _paired_step("two", batch=unequal, steps=1)
  _close(auto.params, two.params, rtol=0, atol=0)
  x = jnp.zeros((16, 32, 32, 3))
  assert ugradsl_step.one_pass_applies(x, x, "fixed")
  assert not ugradsl_step.one_pass_applies(x, x, "adaptive")
  assert not ugradsl_step.one_pass_applies(x, x[:8], "fixed")


def test_passes_flag_is_checked_before_anything_runs(tmp_path):
  import dataclasses
  from ugradsl_jax import configs, protocol
  cfg = configs.get("quick")
  assert configs.PASSES == ugradsl_step.PASSES and cfg.passes == "two"
  with pytest.raises(configs.ConfigError, match="--passes 'three'"):
    configs.validate(dataclasses.replace(cfg, passes="three"))
  # UGradSL+ of the quick preset pairs 256 retain with 64 forget images.
  smoke = dataclasses.replace(configs.get("smoke"), passes="one")
  exp = protocol.setup(configs.with_method(smoke, "ugradsl_plus", forget_batch_size=8),
                       _fake_data())
  with pytest.raises(configs.ConfigError, match="ugradsl_plus needs a fixed rate and equal"):
    protocol.preflight(exp, tmp_path, ["retrain", "ugradsl", "ugradsl_plus"])
  with pytest.raises(configs.ConfigError, match="ugradsl_adaptive needs a fixed rate"):
    protocol.preflight(exp, tmp_path, ["retrain", "ugradsl_adaptive"])
  protocol.preflight(exp, tmp_path, ["retrain", "ugradsl"])  # equal batches, fixed rate: fine
  assert not any(tmp_path.iterdir())  # refused before anything was written


def _fake_data():
  from ugradsl_jax import datasets
  rng = np.random.default_rng(0)
  y = np.repeat(np.arange(10), 50).astype(np.int32)
  return datasets.Dataset("cifar10", rng.integers(0, 256, (500, 32, 32, 3), dtype=np.uint8),
                          y, rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8),
                          np.repeat(np.arange(10), 10).astype(np.int32),
                          class_names=tuple("abcdefghij"), mean=(0.5,) * 3, std=(0.25,) * 3,
                          source="fake")


def test_hp_sgd_equals_sgd_and_shares_one_program_across_learning_rates():
  """HpSGD (lr and weight decay as step data) takes the same steps as sgd at
  a constant rate, with the same optimizer state, and two rates lower to one
  program: what lets UGradSL, UGradSL+ and NegGrad+ share a compilation."""
  model, tx, state, data = _setup(lr=0.05, wd=5e-4, nesterov=True)
  hp_tx = train.HpSGD(0.9, nesterov=True)
  assert (jax.tree.structure(hp_tx.init(state.params))
          == jax.tree.structure(state.opt_state))  # old checkpoints restore
  step = functools.partial(ugradsl_step.unlearn_step, axis_name=None, model=model,
                           mix=mixing.weighted_sum)
  batch = _paired(0, 16, 40, 56)
  base = {"alpha": -0.5, "p": 0.7}
  jitted = {t: jax.jit(functools.partial(step, tx=t)) for t in (tx, hp_tx)}
  run = lambda t, hp: jitted[t](state, data, batch, hp)
  ref, _ = run(tx, base)
  got, _ = run(hp_tx, {**base, "lr": 0.05, "weight_decay": 5e-4})
  np.testing.assert_allclose(jax.tree.leaves(got.params)[0], jax.tree.leaves(ref.params)[0],
                             rtol=1e-6, atol=1e-7)
  for a, b in zip(jax.tree.leaves((got.params, got.opt_state)),
                  jax.tree.leaves((ref.params, ref.opt_state))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  # Negative control: the rate is really read from hp.
  other, _ = run(hp_tx, {**base, "lr": 0.01, "weight_decay": 5e-4})
  moved = lambda s: jax.tree.leaves(s.params)[0] - jax.tree.leaves(state.params)[0]
  np.testing.assert_allclose(moved(other), moved(got) / 5, rtol=1e-3, atol=1e-6)

  def hlo(t, hp):
    return jax.jit(functools.partial(step, tx=t)).lower(state, data, batch, hp).as_text()
  assert hlo(hp_tx, {**base, "lr": 0.05, "weight_decay": 5e-4}) == \
      hlo(hp_tx, {**base, "lr": 0.01, "weight_decay": 1e-3})
  # ... where constants compiled into the program make two.
  tx2 = train.sgd(train.lr_schedule("constant", 0.01, 10, 10), 0.9, 5e-4, True)
  assert hlo(tx, base) != hlo(tx2, base)
