"""The paper preset on a CPU warns with an estimated run time, from a speed
probe of the first steps; elsewhere nothing is printed."""

import functools
import io

import jax
import numpy as np

from conftest import tiny_resnet
from ugradsl_jax import budget, configs, loop, parallel, split as split_lib, train


def _split(cfg, n_per_class=50):
  y = np.repeat(np.arange(10), n_per_class).astype(np.int32)
  return split_lib.make_split(y, 100, seed=1, scenario="random", val_fraction=0.1,
                              forget_fraction=0.1, test_strata=np.repeat(np.arange(10), 10))


def test_table_images_counts_every_phase_by_hand():
  cfg = configs.get("paper")
  s = _split(cfg)
  tr, r, f = len(s.train), len(s.retain), len(s.forget)
  m = cfg.methods
  want = cfg.pretrain.epochs * (tr + r)            # original + Retrain
  want += m["ft"].epochs * r + m["ga"].epochs * f + m["rl"].epochs * tr
  want += 2 * m["ugradsl"].epochs * f              # a retain batch per forget batch
  want += 6 * (tr + len(s.val) + len(s.test)) // 3  # six evaluations, forward only
  got = budget.table_images(cfg, s, ["retrain", "ft", "ga", "rl", "ugradsl"])
  assert abs(got - want) <= 1, (got, want)


def test_cpu_probe_warns_once_only_for_paper_on_cpu():
  paper, quick = configs.get("paper"), configs.get("quick")
  s = _split(paper)
  names = ["retrain", "ft"]
  assert budget.cpu_probe(quick, s, names, backend="cpu") is None
  assert budget.cpu_probe(paper, s, names, backend="gpu") is None
  out = io.StringIO()
  probe = budget.cpu_probe(paper, s, names, backend="cpu", out=out)
  probe(100.0)
  probe(50.0)  # once only
  lines = out.getvalue().splitlines()
  assert len(lines) == 1 and lines[0].startswith("warning: --preset paper")
  assert "GPU or TPU" in lines[0] and "100 images/s" in lines[0]
  hours = budget.table_images(paper, s, names) / 100.0 / 3600
  assert f"estimated {hours:.1f} h" in lines[0]


def test_fit_calls_the_probe_once_after_the_first_steps():
  model = tiny_resnet()
  tx = train.sgd(train.lr_schedule("constant", 0.05, 10, 10))
  v = train.init_variables(model, 0)
  state = jax.device_get(train.create_state(v["params"], v["batch_stats"], tx))
  rng = np.random.default_rng(0)
  data = {"x": rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
          "y": rng.integers(0, 10, 64).astype(np.int32)}
  par = parallel.make("none")
  seen = []
  loop.fit(phase="t", par=par, step_fn=functools.partial(train.descent_step, model=model,
                                                         tx=tx),
           state=state, data=par.replicate(data), batches=lambda i: {"idx": np.arange(8)},
           num_steps=5, images_per_step=8, hooks=[loop.Probe(seen.append, 8)])
  assert len(seen) == 1 and np.isfinite(seen[0]) and seen[0] > 0
