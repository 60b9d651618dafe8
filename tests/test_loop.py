"""The loop's hooks: which events come, in which order, and that a global
hook joins every fit (the tests' kill switch is one)."""

import functools

import flax.linen as nn
import jax
import numpy as np
import optax

from ugradsl_jax import loop, parallel, train


class Dense(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(3)(x.reshape(len(x), -1).astype(np.float32))


class Recorder:
  def __init__(self):
    self.events = []

  def start(self, phase, start, num_steps):
    self.events.append(("start", start, num_steps))

  def dispatched(self, phase, done, state):
    self.events.append(("dispatched", done))

  def logged(self, phase, row):
    self.events.append(("logged", row["step"]))

  def checkpoint(self, phase, done, host_state):
    self.events.append(("checkpoint", done, int(host_state.step)))

  def stepped(self, phase, done):
    self.events.append(("stepped", done))

  def end(self, phase, result):
    self.events.append(("end", int(result.state.step)))


def _fit(state, num_steps, hooks):
  model, tx = Dense(), optax.sgd(0.1)
  rng = np.random.default_rng(0)
  data = {"x": rng.normal(size=(32, 4)).astype(np.float32),
          "y": rng.integers(0, 3, 32).astype(np.int32)}
  par = parallel.make("none")
  step = functools.partial(train.descent_step, model=model, tx=tx)
  return loop.fit(phase="t", par=par, step_fn=step, state=state, data=par.replicate(data),
                  batches=lambda i: {"idx": np.arange(8) + 8 * (i % 4)}, num_steps=num_steps,
                  images_per_step=8, ckpt_every=2, log_every=1, hooks=hooks)


def _state():
  v = Dense().init(jax.random.key(0), np.zeros((1, 4), np.float32))
  return jax.device_get(train.create_state(v["params"], {}, optax.sgd(0.1)))


def test_events_come_in_the_loops_order():
  rec = Recorder()
  res = _fit(_state(), 3, [rec])
  ev = rec.events
  assert ev[0] == ("start", 0, 3) and ev[-1] == ("end", 3)
  assert [e[1] for e in ev if e[0] == "dispatched"] == [1, 2, 3]
  assert [e[1] for e in ev if e[0] == "stepped"] == [1, 2, 3]
  assert [e[1] for e in ev if e[0] == "logged"] == [1, 2, 3] == [r["step"] for r in res.history]
  # Checkpoints every 2 steps and at the last, each with that step's state,
  # before the step's `stepped` (a kill there leaves the checkpoint behind).
  assert [e for e in ev if e[0] == "checkpoint"] == [("checkpoint", 2, 2), ("checkpoint", 3, 3)]
  assert ev.index(("checkpoint", 2, 2)) < ev.index(("stepped", 2))
  # A resumed fit starts where its state is and runs no step twice.
  again = Recorder()
  _fit(res.state, 5, [again])
  assert again.events[0] == ("start", 3, 5)
  assert [e[1] for e in again.events if e[0] == "dispatched"] == [4, 5]


def test_a_global_hook_joins_every_fit(monkeypatch):
  rec = Recorder()
  monkeypatch.setattr(loop, "_GLOBAL_HOOKS", [])
  loop.add_global_hook(rec)
  _fit(_state(), 2, [])
  assert [e[1] for e in rec.events if e[0] == "stepped"] == [1, 2]
  loop.notify("scored", "t")  # an event a hook lacks is skipped
  seen = []
  rec.scored = seen.append
  loop.notify("scored", "ga")
  assert seen == ["ga"]
  # Negative control: once the hook is no longer global, a fit tells it nothing.
  monkeypatch.setattr(loop, "_GLOBAL_HOOKS", [])
  before = len(rec.events)
  _fit(_state(), 2, [])
  assert len(rec.events) == before
