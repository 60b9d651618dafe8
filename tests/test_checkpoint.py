"""Orbax save -> restore, resume == uninterrupted, and refusing a mismatched dir."""

import functools

import jax
import numpy as np
import pytest

from conftest import tiny_resnet
from ugradsl_jax import batching, checkpoint, loop, models, parallel, train


def _problem(mode="none"):
  par = parallel.make(mode, num_devices=4 if mode != "none" else None)
  tx = train.sgd(train.lr_schedule("cosine", 0.05, 8, 4), 0.9, 5e-4, nesterov=True)
  v = train.init_variables(tiny_resnet(), 0)
  state = jax.device_get(train.create_state(v["params"], v["batch_stats"], tx))
  rng = np.random.default_rng(0)
  data = par.replicate({"x": rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
                        "y": rng.integers(0, 10, 64).astype(np.int32)})
  batches, _ = batching.epochs(np.arange(64), 16, seed=5, augment=True)
  step = functools.partial(train.descent_step, model=tiny_resnet(par.axis_name),
                           tx=tx)
  return par, state, data, batches, step


def _fit(par, state, data, batches, step, n, store=None):
  return loop.fit(phase="t", par=par, step_fn=step, state=state, data=data,
                  batches=batches, num_steps=n, images_per_step=16, ckpt_every=2,
                  hooks=[] if store is None else [loop.Checkpoints(store)])


def _equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_save_restore_identical(tmp_path):
  par, state, data, batches, step = _problem()
  res = _fit(par, state, data, batches, step, 3)
  store = checkpoint.PhaseStore(tmp_path / "p", {"a": 1})
  store.save(3, res.state)
  back = store.restore(checkpoint.abstract_of(state))
  _equal(back, res.state)
  assert int(back.step) == 3


@pytest.mark.parametrize("mode", ["none", "pmap"])
def test_resume_equals_uninterrupted(tmp_path, mode):
  par, state, data, batches, step = _problem(mode)
  full = _fit(par, state, data, batches, step, 8)

  store = checkpoint.PhaseStore(tmp_path / "p", {"a": 1})
  _fit(par, state, data, batches, step, 4, store)  # "killed" after step 4
  store.close()
  store = checkpoint.PhaseStore(tmp_path / "p", {"a": 1})
  resumed = store.restore(checkpoint.abstract_of(state))
  assert int(resumed.step) == 4
  rest = _fit(par, resumed, data, batches, step, 8, store)
  _equal(rest.state, full.state)
  # Negative control: resuming with another data order does not match.
  other, _ = batching.epochs(np.arange(64), 16, seed=6, augment=True)
  wrong = _fit(par, resumed, data, other, step, 8)
  with pytest.raises(AssertionError):
    _equal(wrong.state.params, full.state.params)


def test_mismatched_meta_is_refused(tmp_path):
  par, state, *_ = _problem()
  store = checkpoint.PhaseStore(tmp_path / "p", {"width": 4, "seed": 1})
  store.save(1, state)
  store.close()
  with pytest.raises(checkpoint.CheckpointError, match="width: saved 4, now 8"):
    checkpoint.PhaseStore(tmp_path / "p", {"width": 8, "seed": 1})
  # The refused directory is untouched and still loads with the right meta.
  again = checkpoint.PhaseStore(tmp_path / "p", {"width": 4, "seed": 1})
  _equal(again.restore(checkpoint.abstract_of(state)), state)


def test_corrupted_checkpoint_is_a_clear_error(tmp_path):
  par, state, *_ = _problem()
  store = checkpoint.PhaseStore(tmp_path / "p", {"a": 1})
  store.save(1, state)
  store.close()
  for f in (tmp_path / "p" / "1" / "state").rglob("*"):
    if f.is_file() and f.stat().st_size > 0:
      f.write_bytes(b"\0" * 7)
  store = checkpoint.PhaseStore(tmp_path / "p", {"a": 1})
  with pytest.raises(checkpoint.CheckpointError, match="corrupted"):
    store.restore(checkpoint.abstract_of(state))
