"""The public API (unlearn, evaluate), the model contract, mixing plugins,
and starting a run from another run's parts, in-process."""

import dataclasses
import json
import re
import subprocess
import tomllib
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ugradsl_jax as ug
from conftest import ROOT, FEW
from ugradsl_jax import configs, contract, mixing, protocol, registry


class MLP(nn.Module):
  """A user's model: no BatchNorm, a `train` switch it ignores."""
  classes: int = 3

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(self.classes)(nn.relu(nn.Dense(16)(x.reshape(len(x), -1))))


class DropoutNet(nn.Module):
  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    h = nn.Dropout(0.5)(nn.relu(nn.Dense(16)(x)), deterministic=deterministic)
    return nn.Dense(3)(h)


class NoSwitch(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(3)(x)


class Sown(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.relu(nn.Dense(8)(x))
    self.sow("intermediates", "features", h)
    return nn.Dense(3)(h)


@pytest.fixture(scope="module")
def toy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(240, 6)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
  return x, y


def _leaves_equal(a, b):
  return all(np.array_equal(p, q) for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_version_and_public_names():
  meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
  assert ug.__version__ == meta["project"]["version"]
  assert meta["tool"]["setuptools"]["packages"] == ["ugradsl_jax"]
  assert {"unlearn", "evaluate", "mixing", "__version__"} <= set(ug.__all__)
  assert callable(ug.unlearn) and callable(ug.evaluate)


def test_ga_one_full_batch_step_is_plain_gradient_ascent(toy):
  """GA through the API, one step over the whole forget set (no momentum,
  no weight decay), against jax.grad of optax's cross entropy by hand."""
  x, y = toy
  model = MLP()
  v = model.init(jax.random.key(1), x[:2])
  f, r = (x[:40], y[:40]), (x[40:], y[40:])
  lr = 0.3
  out = ug.unlearn(model, v, f, r, method="ga", lr=lr, epochs=1, batch_size=40,
                   momentum=0.0, weight_decay=0.0, alpha=0.0)

  def ce(p):
    logits = model.apply({"params": p}, f[0])
    return optax.softmax_cross_entropy_with_integer_labels(logits, f[1]).mean()
  want = jax.tree.map(lambda w, g: w + lr * g, v["params"], jax.grad(ce)(v["params"]))
  assert jax.tree.structure(out) == jax.tree.structure(v)
  for a, b in zip(jax.tree.leaves(out["params"]), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Negative control: descent (FT on the same set) moves the other way.
  ft = ug.unlearn(model, v, r, f, method="ft", lr=lr, epochs=1, batch_size=40,
                  momentum=0.0, weight_decay=0.0)
  d_ga = np.concatenate([np.ravel(a - b) for a, b in zip(jax.tree.leaves(out["params"]),
                                                          jax.tree.leaves(v["params"]))])
  d_ft = np.concatenate([np.ravel(a - b) for a, b in zip(jax.tree.leaves(ft["params"]),
                                                          jax.tree.leaves(v["params"]))])
  np.testing.assert_allclose(d_ga, -d_ft, rtol=1e-4, atol=1e-6)


def test_contract_errors_name_the_problem(toy):
  x, y = toy
  f, r = (x[:40], y[:40]), (x[40:], y[40:])
  m = MLP()
  v = m.init(jax.random.key(0), x[:2])
  with pytest.raises(TypeError, match="no_such_field.*its recipe fields are"):
    ug.unlearn(m, v, f, r, method="ugradsl", no_such_field=1)
  with pytest.raises(TypeError, match="train/eval switch"):
    ns = NoSwitch()
    ug.unlearn(ns, ns.init(jax.random.key(0), x[:2]), f, r)
  with pytest.raises(ValueError, match="sow them"):
    ug.unlearn(m, v, f, r, method="ugradsl_adaptive")
  with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
    ug.unlearn(m, v, (x[:40], y[:40] + 3), r)
  with pytest.raises(ValueError, match="unknown"):
    ug.unlearn(m, v, f, r, method="nope")
  with pytest.raises(TypeError, match="variables"):
    ug.unlearn(m, v["params"], f, r)
  with pytest.raises(ValueError, match="eval mode failed"):
    ug.unlearn(m, v, (x[:40, :4], y[:40]), (x[40:, :4], y[40:]))
  with pytest.raises(ValueError, match="mix_hparams.*no hyper-parameter tau"):
    ug.unlearn(m, v, f, r, mix_hparams={"tau": 1.0})


def test_dropout_and_deterministic_switch(toy):
  """A model with Dropout and a `deterministic` switch trains with a key per
  step, drawn from the seed: the seed changes the result, the same seed
  repeats it."""
  x, y = toy
  m = DropoutNet()
  v = m.init(jax.random.key(0), x[:2])
  assert contract.adapt(m, v, x[:4]).needs_rng
  f, r = (x[:40], y[:40]), (x[40:], y[40:])
  kw = dict(method="ugradsl", epochs=1, batch_size=20, lr=0.05)
  a = ug.unlearn(m, v, f, r, seed=0, **kw)
  b = ug.unlearn(m, v, f, r, seed=0, **kw)
  c = ug.unlearn(m, v, f, r, seed=1, **kw)
  assert _leaves_equal(a, b) and not _leaves_equal(a, c)


def test_adaptive_rate_with_sown_features(toy):
  x, y = toy
  m = Sown()
  v = m.init(jax.random.key(0), x[:2])
  rows = []
  out = ug.unlearn(m, v, (x[:40], y[:40]), (x[40:], y[40:]), method="ugradsl_adaptive",
                   epochs=1, batch_size=20, history=rows)
  assert not _leaves_equal(out, v)
  assert rows and all(-1.0 <= r["forget_alpha"] <= 0.0 for r in rows)


def test_registered_rule_gets_its_hparams_and_logs_diagnostics(toy):
  x, y = toy
  m = MLP()
  v = m.init(jax.random.key(0), x[:2])

  @mixing.register("test_scaled_retain", hparams={"tau": 1.0}, overwrite=True)
  def rule(g_r, g_f, hp):
    cos = mixing._dot(g_r, g_f) / (optax.tree.norm(g_r) * optax.tree.norm(g_f) + 1e-12)
    return jax.tree.map(lambda a: hp["tau"] * a, g_r), {"cos_rf": cos, "tau_seen": hp["tau"]}

  f, r = (x[:40], y[:40]), (x[40:], y[40:])
  kw = dict(method="ugradsl", mix="test_scaled_retain", weight_decay=0.0, epochs=1,
            batch_size=20)
  rows0, rows1 = [], []
  a = ug.unlearn(m, v, f, r, mix_hparams={"tau": 0.0}, history=rows0, **kw)
  b = ug.unlearn(m, v, f, r, mix_hparams={"tau": 0.5}, history=rows1, **kw)
  assert _leaves_equal(a["params"], v["params"])  # tau 0: no update at all
  assert not _leaves_equal(b["params"], v["params"])
  assert [row["tau_seen"] for row in rows1] == [0.5] * len(rows1)
  assert all(-1.0 <= row["cos_rf"] <= 1.0 for row in rows1)
  # The defaults apply when not given, and the recipe records what was given.
  assert mixing.hparams("test_scaled_retain") == {"tau": 1.0}
  assert ug.recipe("ugradsl", mix_hparams={"tau": 0.5}).mix_hparams == {"tau": 0.5}
  with pytest.raises(ValueError, match="registered already"):
    mixing.register("test_scaled_retain")(lambda g_r, g_f, hp: g_r)
  with pytest.raises(ValueError, match="the method's own"):
    mixing.register("bad_rule", hparams={"p": 0.1})(lambda g_r, g_f, hp: g_r)
  assert "bad_rule" not in registry.MIX_RULES


def test_evaluate_against_hand_computation(toy):
  x, y = toy
  m = MLP()
  v = m.init(jax.random.key(3), x[:2])
  f, r, t = (x[:40], y[:40]), (x[40:200], y[40:200]), (x[200:], y[200:])
  res = ug.evaluate(m, v, f, r, t)
  pred = lambda s: np.argmax(np.asarray(m.apply(v, s[0])), -1)  # noqa: E731
  assert res["UA"] == pytest.approx(100 - 100 * np.mean(pred(f) == f[1]))
  assert res["RA"] == pytest.approx(100 * np.mean(pred(r) == r[1]))
  assert res["TA"] == pytest.approx(100 * np.mean(pred(t) == t[1]))
  assert 0 <= res["MIA"] <= 100
  ref = {"UA": res["UA"] + 4, "RA": res["RA"] - 2, "TA": res["TA"], "MIA": res["MIA"] + 6}
  # |−4| + |2| + 0 + |−6| = 12, over four metrics: 3.
  assert ug.evaluate(m, v, f, r, t, reference=ref)["avg_gap"] == pytest.approx(3.0)


# ---------------------------------------------------------------- configs, flags


def test_every_recipe_field_is_a_flag_and_config_round_trips():
  from experiments import unlearn as cli
  help_text = cli.parser().format_help()
  for name in configs.METHODS[1:]:
    for field in configs.METHOD_READS[name]:
      assert f"--{name}_{field}" in help_text, f"--{name}_{field} missing from --help"
  for field in configs.TRAIN_FIELD_SPECS:
    assert f"--pretrain_{field}" in help_text
  a = cli.parser().parse_args(cli.join_negative_values(
      ["--preset", "smoke", "--salun_mask_ratio", "0.3", "--ugradsl_forget_batch_size", "8",
       "--ugradsl_mix_hparams", "", "--ft_nesterov", "true", "--ga_weight_decay", "0",
       "--l1_sparse_l1", "1e-5", "--ugradsl_alpha", "-0.7"]))
  cfg = cli.config_from_args(a)
  m = cfg.methods
  assert (m["salun"].mask_ratio, m["ugradsl"].forget_batch_size, m["ft"].nesterov,
          m["ga"].weight_decay, m["l1_sparse"].l1, m["ugradsl"].alpha) == \
      (0.3, 8, True, 0.0, 1e-5, -0.7)
  # config.json's "config" reads back to the same Config.
  again = configs.from_dict(json.loads(json.dumps({"config": cfg.to_dict()}))["config"])
  assert again == cfg
  with pytest.raises(cli.UsageError, match="unrecognized arguments: --ft_alpha"):
    cli.config_from_args(cli.parser().parse_args(["--ft_alpha", "-1"]))
  with pytest.raises(cli.UsageError, match="not a boolean"):
    cli.parser().parse_args(["--ft_nesterov", "maybe"])
  with pytest.raises(configs.ConfigError, match="known"):
    configs.validate(configs.with_method(cfg, "ugradsl", mix="nope"))


def test_config_flag_replays_a_run(tmp_path):
  from experiments import unlearn as cli
  cfg = configs.with_method(configs.get("smoke"), "ga", lr=0.123)
  (tmp_path / "config.json").write_text(json.dumps({"config": cfg.to_dict()}))
  a = cli.parser().parse_args(["--config", str(tmp_path / "config.json"), "--seed", "7"])
  got = cli.config_from_args(a)
  assert got == dataclasses.replace(cfg, seed=7)
  with pytest.raises(cli.UsageError, match="is a smoke run"):
    cli.config_from_args(cli.parser().parse_args(
        ["--config", str(tmp_path / "config.json"), "--preset", "quick"]))


# ---------------------------------------------------------------- from another run


def test_run_from_another_runs_parts_reproduces_its_rows(few_run, cifar, tmp_path):
  """The original model as a params-only Orbax checkpoint, the forget set
  from split.npz and Retrain reused: no phase is trained twice and the rows
  are the source run's. A Retrain of another split is refused."""
  import orbax.checkpoint as ocp
  from ugradsl_jax import checkpoint
  src = json.loads((few_run / "results.json").read_text())
  variables, _ = checkpoint.read_variables(few_run / "original")
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save((tmp_path / "orig_params").absolute(), variables)
  forget = np.load(few_run / "split.npz")["forget"]
  np.save(tmp_path / "forget.npy", forget)
  name = FEW.split(",")[0]
  cfg = dataclasses.replace(configs.get("smoke"), init_checkpoint=str(tmp_path / "orig_params"),
                            forget_indices=str(tmp_path / "forget.npy"),
                            retrain_from=str(few_run))
  res = protocol.run_seed(cfg, cifar, tmp_path / "wd", [name], progress=False)
  for m in ("retrain", name):
    for k in ("UA", "RA", "TA", "MIA"):
      assert res["methods"][m][k] == src["methods"][m][k], (m, k)
  assert not (tmp_path / "wd" / "original" / "history.jsonl").exists()
  assert not (tmp_path / "wd" / "retrain" / "history.jsonl").exists()
  assert res["provenance"]["forget_indices"]["count"] == len(forget)
  # What produced the numbers, read independently of report.environment.
  import flax
  env = res["provenance"]
  assert env["packages"]["jax"] == jax.__version__
  assert env["packages"]["flax"] == flax.__version__
  assert env["packages"]["optax"] == optax.__version__
  assert env["device_kind"] == jax.devices()[0].device_kind
  head = subprocess.run(["git", "-C", str(Path(protocol.__file__).parent), "rev-parse", "HEAD"],
                        capture_output=True, text=True)
  if head.returncode == 0:  # a git checkout, as in CI
    assert env["git"]["commit"] == head.stdout.strip()
    assert "Code: commit " + head.stdout.strip()[:10] in (tmp_path / "wd" / "results.md").read_text()
  assert res["config"]["retrain_from"] == str(few_run)
  split = np.load(tmp_path / "wd" / "split.npz")
  assert set(split.files) >= {"train", "val", "forget", "retain", "test"}
  np.testing.assert_array_equal(split["forget"], forget)
  # Negative control: another forget set is another split, and its Retrain
  # cannot be the source's.
  np.save(tmp_path / "other.npy", forget[1:])
  other = dataclasses.replace(cfg, forget_indices=str(tmp_path / "other.npy"))
  with pytest.raises(checkpoint.CheckpointError, match="another split"):
    protocol.run_seed(other, cifar, tmp_path / "wd2", [name], progress=False)


def test_no_retrain_table_says_so(few_run, cifar, tmp_path):
  cfg = dataclasses.replace(configs.get("smoke"), init_checkpoint=str(few_run / "original"),
                            no_retrain=True)
  name = FEW.split(",")[0]
  res = protocol.run_seed(cfg, cifar, tmp_path / "wd", [name], progress=False)
  assert list(res["methods"]) == [name] and "avg_gap" not in res["methods"][name]
  assert "no Avg. Gap" in (tmp_path / "wd" / "results.md").read_text()
  assert not (tmp_path / "wd" / "retrain").exists()
  with pytest.raises(configs.ConfigError, match="--no_retrain"):
    configs.validate(dataclasses.replace(cfg, sweep_alpha=(-1.0,)))


def test_forget_indices_split_rules():
  from ugradsl_jax import split as S
  y = np.repeat(np.arange(5), 40)
  a = S.make_split(y, 50, seed=3)
  same = S.make_split(y, 50, seed=3, forget_indices=a.forget)
  assert S.fingerprint(same) == S.fingerprint(a)
  np.testing.assert_array_equal(same.mia_members, a.mia_members)
  moved = S.make_split(y, 50, seed=3, forget_indices=np.array([a.val[0], a.train[0]]))
  assert a.val[0] in moved.forget and a.val[0] not in moved.val
  assert len(moved.val) == len(a.val) - 1
  for bad, msg in ((np.array([0, 0]), "repeat"), (np.array([500]), r"\[0, 200\)"),
                   (np.array([0.5]), "integers")):
    with pytest.raises(S.SplitError, match=msg):
      S.make_split(y, 50, seed=3, forget_indices=bad)
  with pytest.raises(S.SplitError, match="replaces the random draw"):
    S.make_split(y, 50, seed=3, scenario="class", forget_classes=(1,), test_strata=y[:50],
                 forget_indices=a.forget)


# ---------------------------------------------------------------- a method as a plugin


@pytest.fixture
def fresh_registries(monkeypatch):
  """The method registries as copies, restored afterwards (they are
  process-wide), and tests/plugin_anchor.py not yet imported."""
  import sys
  from ugradsl_jax import methods
  for attr in ("METHODS", "METHOD_READS", "PLUGIN_HPARAMS", "PLUGIN_RECIPES"):
    monkeypatch.setattr(configs, attr, type(getattr(configs, attr))(getattr(configs, attr)))
  monkeypatch.setattr(methods, "REGISTRY", dict(methods.REGISTRY))
  monkeypatch.delitem(sys.modules, "plugin_anchor", raising=False)


@pytest.fixture
def plugin_method(fresh_registries):
  """tests/plugin_anchor.py registered, and unregistered afterwards."""
  import plugin_anchor
  return plugin_anchor


def test_registered_method_runs_by_name_with_its_own_hparams(plugin_method, toy):
  """A method added from user code runs through unlearn() like a built-in
  one: with anchor 0 it is GA (one full-batch step: the data order cannot
  differ), with a large anchor it stays near the start; its own
  hyper-parameters are checked and its diagnostics logged."""
  x, y = toy
  model = MLP()
  v = model.init(jax.random.key(1), x[:2])
  f, r = (x[:40], y[:40]), (x[40:], y[40:])
  kw = dict(lr=0.3, epochs=1, batch_size=40, momentum=0.0, weight_decay=0.0, alpha=-0.5)
  assert "ga_anchor" in configs.METHODS and "ga_anchor" in configs.get("smoke").methods
  hist = []
  free = ug.unlearn(model, v, f, r, method="ga_anchor", method_hparams={"anchor": 0.0},
                    history=hist, **kw)
  ga = ug.unlearn(model, v, f, r, method="ga", **kw)
  for a, b in zip(jax.tree.leaves(free["params"]), jax.tree.leaves(ga["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert hist and hist[0]["anchor_dist"] == 0.0  # at the start of the step
  # Negative control: the anchor's term enters the objective (its gradient
  # is 0 at the start, so over several steps).
  kw["epochs"] = 4
  free = ug.unlearn(model, v, f, r, method="ga_anchor", method_hparams={"anchor": 0.0}, **kw)
  held = ug.unlearn(model, v, f, r, method="ga_anchor", method_hparams={"anchor": 5.0}, **kw)
  dist = lambda out: sum(float(np.sum((a - b) ** 2)) for a, b in zip(  # noqa: E731
      jax.tree.leaves(out["params"]), jax.tree.leaves(v["params"])))
  assert dist(held) < 0.75 * dist(free)  # 0.60 measured
  with pytest.raises(configs.ConfigError, match="no hyper-parameter tau; it takes: anchor"):
    ug.unlearn(model, v, f, r, method="ga_anchor", method_hparams={"tau": 1.0}, **kw)
  with pytest.raises(TypeError, match="unknown keyword mask_ratio"):
    ug.unlearn(model, v, f, r, method="ga_anchor", mask_ratio=0.5)


def test_registered_method_on_the_command_line(fresh_registries, few_run, cifar, tmp_path):
  """--import, read before the parser is built, brings the method's flags
  into --help and its own values into the recipe; the protocol runs it as a
  table row."""
  from experiments import unlearn as cli
  argv = ["--preset", "smoke", "--import", "plugin_anchor",
          "--ga_anchor_method_hparams", "anchor=0.5", "--ga_anchor_lr", "0.02",
          "--no_retrain", "--init_checkpoint", str(few_run / "original")]
  assert "--ga_anchor_method_hparams" not in cli.parser().format_help()  # not yet imported
  assert cli.plugins_of(argv) == ["plugin_anchor"]
  assert cli.plugins_of(["--import=a", "--import", "b"]) == ["a", "b"]
  cli.import_plugins(cli.plugins_of(argv))  # as main does, before its parser
  assert "--ga_anchor_method_hparams" in cli.parser().format_help()
  a = cli.parser().parse_args(argv)
  cfg = cli.config_from_args(a)
  assert cfg.methods["ga_anchor"].method_hparams == {"anchor": 0.5}
  res = protocol.run_seed(cfg, cifar, tmp_path / "w", ["ga_anchor"], progress=False)
  row = res["methods"]["ga_anchor"]
  assert row["hparams"]["method_hparams"] == {"anchor": 0.5} and row["hparams"]["lr"] == 0.02
  assert row["UA"] is not None and not row["diverged"]
  rows = [json.loads(line) for line in
          (tmp_path / "w" / "ga_anchor" / "history.jsonl").read_text().splitlines()]
  assert rows and all("anchor_dist" in r for r in rows)
  assert cli.main(["--preset", "smoke", "--methods", "nope_method", "--no_progress"]) == 2


def test_sweep_over_a_rules_own_value(few_run, cifar, tmp_path):
  """--sweep_mix: a registered rule's own hyper-parameter is swept like
  alpha (one vmapped program), recorded in the row's mix_hparams, and drawn
  as one heatmap a value; each member equals a single run at its value."""
  @mixing.register("test_forget_scale", hparams={"tau": 1.0}, overwrite=True)
  def rule(g_r, g_f, hp):
    return jax.tree.map(lambda r, f: hp["p"] * r - hp["tau"] * (1 - hp["p"]) * f, g_r, g_f)

  base = configs.with_method(configs.get("smoke"), "ugradsl", mix="test_forget_scale", lr=0.1)
  cfg = dataclasses.replace(base, init_checkpoint=str(few_run / "original"),
                            retrain_from=str(few_run), sweep_mix={"tau": (0.0, 2.0)})
  with pytest.raises(configs.ConfigError, match="takes tau"):
    configs.validate(dataclasses.replace(cfg, sweep_mix={"gamma": (1.0,)}), ["ugradsl"])
  from experiments import unlearn as cli
  flags = ["--preset", "smoke", "--sweep_mix", "tau=0,2", "--ugradsl_mix", "test_forget_scale"]
  assert cli.config_from_args(cli.parser().parse_args(flags)).sweep_mix == {"tau": (0.0, 2.0)}
  with pytest.raises(cli.UsageError, match="expected NAME=v1,v2"):
    cli.config_from_args(cli.parser().parse_args(["--sweep_mix", "tau"]))
  res = protocol.run_seed(cfg, cifar, tmp_path / "sw", ["ugradsl"], progress=False)
  row = res["methods"]["ugradsl"]
  assert [t["tau"] for t in row["sweep"]] == [0.0, 2.0] and row["sweep_size"] == 2
  best = min(row["sweep"], key=lambda t: t["val_avg_gap"])
  assert row["hparams"]["mix_hparams"] == {"tau": best["tau"]}
  assert row["sweep"][0]["val_avg_gap"] != row["sweep"][1]["val_avg_gap"]  # the values matter
  assert {p.name for p in (tmp_path / "sw").glob("sweep_ugradsl*.png")} == {
      "sweep_ugradsl_tau=0.png", "sweep_ugradsl_tau=2.png"}
  single = dataclasses.replace(configs.with_method(base, "ugradsl",
                                                   mix_hparams={"tau": best["tau"]}),
                               init_checkpoint=cfg.init_checkpoint,
                               retrain_from=cfg.retrain_from)
  one = protocol.run_seed(single, cifar, tmp_path / "one", ["ugradsl"], progress=False)
  for k in ("UA", "RA", "TA"):
    assert one["methods"]["ugradsl"][k] == pytest.approx(row[k], abs=0.3)
