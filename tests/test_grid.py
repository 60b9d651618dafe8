"""The grid through the protocol (smoke preset): every scenario through every
method, the other models, Tiny-ImageNet's 64x64 images, and the command line's
answers to a cell that does not exist."""

import dataclasses
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from ugradsl_jax import configs, datasets, protocol

# The adaptive rows differ from UGradSL(+) only in the rate, which test_adaptive
# and the smoke run of every method cover; leaving them out keeps these runs short.
# The other baselines (IU, Boundary Shrink, SSD) run in the smoke run of
# every method (test_experiment) and through the API (test_baseline_methods).
ALL = [m for m in configs.DEFAULT_METHODS if not m.endswith("_adaptive")]


def _png(rng, size):
  b = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(b, "PNG")
  return b.getvalue()


@pytest.fixture(scope="module")
def c100_tar(tmp_path_factory):
  """CIFAR-100 image-folder archive: real fine class names, random pixels,
  10 training and 2 test images a class."""
  rng = np.random.default_rng(0)
  path = tmp_path_factory.mktemp("c100") / "cifar100.tar.gz"
  with tarfile.open(path, "w:gz") as tf:
    for split, n in (("train", 10), ("test", 2)):
      for c in datasets.CIFAR100_FINE:
        for i in range(n):
          raw = _png(rng, 32)
          ti = tarfile.TarInfo(f"{split}/{c}/{i:04d}.png")
          ti.size = len(raw)
          tf.addfile(ti, io.BytesIO(raw))
  return path


@pytest.fixture(scope="module")
def c100(c100_tar, tmp_path_factory, monkeypatch_module):
  monkeypatch_module.setenv(datasets.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
  return datasets.load("cifar100", str(c100_tar))


@pytest.fixture(scope="module")
def monkeypatch_module():
  mp = pytest.MonkeyPatch()
  yield mp
  mp.undo()


def _run(cfg, data, wd, names=ALL, pretrain_epochs=None):
  if pretrain_epochs is not None:  # fewer steps; the protocol is the same
    cfg = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain,
                                                                epochs=pretrain_epochs))
  return protocol.run_seed(cfg, data, wd, names, progress=False)


# One method of each loop kind: Retrain's descent (FT's and l1's too), GA's
# ascent, RL's random wrong labels, SalUn's mask and the paired step
# (NegGrad+'s and UGradSL+'s too). Every method runs class-wise in the
# quick-preset check of the grid (../shared/acceptance).
CLASS_WISE = ["retrain", "ga", "rl", "salun", "ugradsl"]


def test_class_wise_each_loop_kind(cifar, tmp_path):
  cfg = configs.get("smoke", "cifar10", "class")
  cfg = dataclasses.replace(cfg, forget_classes=(3,))
  res = _run(cfg, cifar, tmp_path, CLASS_WISE)
  assert list(res["methods"]) == CLASS_WISE
  assert (res["scenario"], res["num_classes"], res["forgotten"]) == ("class", 10, "class 3 (cat)")
  s = protocol.labelled(cfg, cifar)[0]
  # The forget set is the whole class; the test set leaves it out and the
  # forgotten test images are exactly that class's share of the test subset.
  assert set(cifar.train_y[s.forget]) == {3} and 3 not in set(cifar.train_y[s.retain])
  assert 3 not in set(cifar.test_y[s.test]) and set(cifar.test_y[s.forgotten_test]) == {3}
  assert res["split_sizes"]["test"] == 90 and res["split_sizes"]["forgotten_test"] == 10
  for name, r in res["methods"].items():
    assert 0.0 <= r["forgotten_test_acc"] <= 100.0, name
    assert "forgotten_test_acc" in r["val"]
  # Retrain never saw the class: a tiny model never predicts it.
  assert res["methods"]["retrain"]["UA"] == 100.0
  assert res["methods"]["retrain"]["forgotten_test_acc"] == 0.0
  md = (tmp_path / "results.md").read_text()
  assert "class-wise forgetting (class 3 (cat))" in md and "forgotten TA" in md


def test_subclass_end_to_end(c100, tmp_path):
  cfg = configs.get("smoke", "cifar100", "subclass")
  cfg = dataclasses.replace(cfg, forget_subclass="rocket")
  # The scenario is the split and the labels; the methods are class-wise's
  # (test_class_wise_each_loop_kind): the descent and the paired step here.
  res = _run(cfg, c100, tmp_path, ["retrain", "ugradsl"], pretrain_epochs=1)
  assert list(res["methods"]) == ["retrain", "ugradsl"]
  assert res["num_classes"] == 20 and res["scenario"] == "subclass"
  split, view = protocol.labelled(cfg, c100)
  rocket = datasets.CIFAR100_FINE.index("rocket")
  # Forget = exactly rocket's training images (9: one of 10 went to
  # validation); labels are the superclasses, rocket's is vehicles_2 (19).
  np.testing.assert_array_equal(
      split.forget, np.intersect1d(split.train, np.flatnonzero(c100.train_y == rocket)))
  assert len(split.forget) == 9 and set(view.train_y[split.forget]) == {19}
  assert view.num_classes == 20 and view.train_y.max() == 19
  # The fine class stays in the test set; its images are reported apart.
  assert set(split.forgotten_test) <= set(split.test)
  assert set(c100.test_y[split.forgotten_test]) == {rocket} and len(split.forgotten_test) == 2
  assert all("forgotten_test_acc" in r for r in res["methods"].values())


def test_subclass_needs_coarse_labels_and_a_real_fine_class(cifar, c100):
  with pytest.raises(configs.ConfigError, match="needs a data set with coarse labels"):
    configs.get("smoke", "cifar10", "subclass")
  # A config built by hand is refused by the protocol too, before any split.
  cfg = dataclasses.replace(configs.get("smoke", "cifar10"), scenario="subclass",
                            forget_fraction=None, forget_subclass="cat")
  with pytest.raises(configs.ConfigError, match="needs a data set with coarse labels"):
    protocol.labelled(cfg, cifar)
  cfg = dataclasses.replace(configs.get("smoke", "cifar100", "subclass"),
                                    forget_subclass="rockett")
  with pytest.raises(configs.ConfigError, match="--forget_subclass 'rockett'"):
    protocol.labelled(cfg, c100)


@pytest.mark.parametrize("model", ["vgg16", "vit"])
def test_other_models_through_the_protocol(model, cifar, tmp_path):
  cfg = configs.get("smoke", "cifar10", "random", model)
  # SalUn's mask over a model without BatchNorm on the ViT; the descent
  # and the paired step on both.
  names = ["retrain", "salun", "ugradsl"] if model == "vit" else ["retrain", "ugradsl"]
  res = _run(cfg, cifar, tmp_path, names)
  assert res["model"] == model and list(res["methods"]) == names
  for r in res["methods"].values():
    assert all(np.isfinite(r[k]) for k in ("UA", "MIA", "RA", "TA"))
  # A rerun restores every phase from its checkpoints (ViT's are without
  # BatchNorm statistics) and gives the same numbers.
  again = _run(cfg, cifar, tmp_path, names)
  for n in names:
    for k in ("UA", "MIA", "RA", "TA"):
      assert again["methods"][n][k] == res["methods"][n][k]


def _jpeg(rng, size=64):
  b = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(b, "JPEG")
  return b.getvalue()


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory):
  """tiny-imagenet-200/ in its distributed layout: 200 wnids, 10 training
  images and 2 val images a class (random pixels)."""
  rng = np.random.default_rng(1)
  root = tmp_path_factory.mktemp("tin") / "tiny-imagenet-200"
  wnids = [f"n{10000000 + i:08d}" for i in range(200)]
  (root / "val" / "images").mkdir(parents=True)
  (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
  (root / "words.txt").write_text("".join(f"{w}\tthing {i}\n" for i, w in enumerate(wnids)))
  ann = []
  for i, w in enumerate(wnids):
    d = root / "train" / w / "images"
    d.mkdir(parents=True)
    for k in range(10):
      (d / f"{w}_{k}.JPEG").write_bytes(_jpeg(rng))
    for k in range(2):
      name = f"val_{2 * i + k}.JPEG"
      (root / "val" / "images" / name).write_bytes(_jpeg(rng))
      ann.append(f"{name}\t{w}\t0\t0\t63\t63\n")
  (root / "val" / "val_annotations.txt").write_text("".join(ann))
  return root


def test_tiny_imagenet_random_forgetting(tiny_imagenet, tmp_path):
  data = datasets.load("tiny_imagenet", str(tiny_imagenet))
  assert data.input_shape == (64, 64, 3) and data.num_classes == 200
  cfg = configs.get("smoke", "tiny_imagenet", "random", "resnet18")
  # 5 of the 10 images a class, one of them for validation: 800 to train on.
  cfg = dataclasses.replace(cfg, train_per_class=5, val_fraction=0.2)
  res = _run(cfg, data, tmp_path, ["retrain", "ugradsl"], pretrain_epochs=1)
  assert res["num_classes"] == 200 and res["split_sizes"]["test"] == 400
  assert res["split_sizes"]["train"] == 800
  assert all(np.isfinite(r["TA"]) for r in res["methods"].values())


def test_config_names_are_the_registries():
  from ugradsl_jax import models, split
  from ugradsl_jax import ugradsl_step
  assert configs.MODELS == models.NAMES and configs.SCENARIOS == split.SCENARIOS
  assert configs.ALPHA_MODES == ugradsl_step.ALPHA_MODES
  assert configs.REDUCTIONS == ugradsl_step.REDUCTIONS


def test_methods_augment_as_the_model_they_start_from_was_trained():
  """One augmentation story: in every preset each method's augmentation is
  the pretraining's (quick: flips only; before, methods took crop+flip)."""
  for preset in configs.PRESETS:
    for scenario in ("random", "class"):
      cfg = configs.get(preset, "cifar10", scenario)
      augs = {m.augment for m in cfg.methods.values() if m is not None}
      assert augs == {cfg.pretrain.augment}, (preset, scenario, augs)
  assert configs.get("quick").pretrain.augment == "flip"
  # The presets use the mean reduction (README says why), and the fixed
  # rate but for the *_adaptive rows.
  for preset in configs.PRESETS:
    ms = {n: m for n, m in configs.get(preset).methods.items() if m is not None}
    assert {m.reduction for m in ms.values()} == {"mean"}
    assert {n for n, m in ms.items() if m.alpha_mode == "adaptive"} == {
        "ugradsl_adaptive", "ugradsl_plus_adaptive"}


def test_quick_preset_sizes_the_cells():
  """CIFAR-10 keeps the measured quick preset; other data sets get as many
  images spread over their classes; class-wise drops the forget fraction."""
  c10 = configs.get("quick")
  assert (c10.train_per_class, c10.test_size, c10.width, c10.model) == (2000, 2000, 8, "resnet18")
  c100 = configs.get("quick", "cifar100", "subclass")
  assert (c100.train_per_class, c100.test_size) == (200, 2000)
  tin = configs.get("quick", "tiny_imagenet")
  assert (tin.train_per_class, tin.test_size) == (100, 2000)
  cls = configs.get("quick", "cifar10", "class")
  assert cls.forget_fraction is None
  # Class-wise has its own values chosen on validation; random keeps its own.
  assert (cls.methods["ugradsl"].lr, cls.methods["ugradsl"].alpha) == (2e-3, -2.0)
  assert (c10.methods["ugradsl"].lr, c10.methods["ugradsl"].alpha) == (0.01, -0.2)
  # The class-wise adaptive rows start from the class-wise fixed rows, with
  # their own beta (before: the fixed values and beta 0.2, untuned).
  ad = cls.methods["ugradsl_adaptive"]
  assert (ad.alpha_mode, ad.alpha, ad.lr, ad.beta) == ("adaptive", -2.0, 2e-3, 0.05)
  assert c10.methods["ugradsl_adaptive"].beta == 0.3
  assert cls.pretrain == c10.pretrain
  assert configs.get("paper", "cifar10", "random", "vit").width == 192
  for bad, flag in ((("quick", "imagenet"), "--dataset"), (("quick", "cifar10", "groups"), "--scenario"),
                    (("quick", "cifar10", "random", "alexnet"), "--model")):
    with pytest.raises(configs.ConfigError, match=flag):
      configs.get(*bad)


def test_audit_preset_keeps_the_quick_recipes_but_size_and_rates():
  """The audit preset differs from the quick one where docs/audit.md says:
  the subset, the pretraining length and batch, the methods' batch and the
  learning rates chosen for it; its adaptive rows are its fixed rows with
  the quick adaptive alpha and beta (not the quick learning rates)."""
  q, a = configs.get("quick"), configs.get("audit")
  assert (a.train_per_class, a.test_size, a.width) == (150, 1000, q.width)
  assert dataclasses.replace(a.pretrain, epochs=q.pretrain.epochs, lr=q.pretrain.lr,
                             batch_size=q.pretrain.batch_size) == q.pretrain
  for name, m in a.methods.items():
    if m is None or name.endswith("_adaptive"):
      continue
    back = dataclasses.replace(m, batch_size=q.methods[name].batch_size, lr=q.methods[name].lr,
                               forget_batch_size=q.methods[name].forget_batch_size)
    assert back == q.methods[name], name
    assert m.batch_size == 64
  for base in ("ugradsl", "ugradsl_plus"):
    ad, fixed = a.methods[f"{base}_adaptive"], a.methods[base]
    assert ad.lr == fixed.lr
    assert dataclasses.replace(ad, alpha_mode="fixed", alpha=fixed.alpha, beta=fixed.beta) == fixed
