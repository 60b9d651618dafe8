"""Data sets by name (METHOD.md s.6-7): the CIFAR-100 hierarchy, tfds (mocked),
image folders and archives, Tiny-ImageNet's own layout, the shared CIFAR-10."""

import os
import shutil
import socket
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from ugradsl_jax import datasets as D


@pytest.fixture(autouse=True)
def _env(request, monkeypatch, tmp_path_factory):
  """No $UGRADSL_DATA_DIR; archive caches in a temp dir (the shared CIFAR-10
  copy keeps the home cache, so its ~15 s decode happens once per machine)."""
  monkeypatch.delenv(D.DATA_ENV, raising=False)
  if not {"shared_tar", "cifar"} & set(request.fixturenames):
    monkeypatch.setenv(D.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))


# --------------------------------------------------------------------------
# 1. CIFAR-100's hierarchy, typed in as METHOD.md s.6 lists it.

METHOD_TABLE = """\
0 aquatic_mammals: beaver, dolphin, otter, seal, whale
1 fish: aquarium_fish, flatfish, ray, shark, trout
2 flowers: orchid, poppy, rose, sunflower, tulip
3 food_containers: bottle, bowl, can, cup, plate
4 fruit_and_vegetables: apple, mushroom, orange, pear, sweet_pepper
5 household_electrical_devices: clock, keyboard, lamp, telephone, television
6 household_furniture: bed, chair, couch, table, wardrobe
7 insects: bee, beetle, butterfly, caterpillar, cockroach
8 large_carnivores: bear, leopard, lion, tiger, wolf
9 large_man-made_outdoor_things: bridge, castle, house, road, skyscraper
10 large_natural_outdoor_scenes: cloud, forest, mountain, plain, sea
11 large_omnivores_and_herbivores: camel, cattle, chimpanzee, elephant, kangaroo
12 medium_mammals: fox, porcupine, possum, raccoon, skunk
13 non-insect_invertebrates: crab, lobster, snail, spider, worm
14 people: baby, boy, girl, man, woman
15 reptiles: crocodile, dinosaur, lizard, snake, turtle
16 small_mammals: hamster, mouse, rabbit, shrew, squirrel
17 trees: maple_tree, oak_tree, palm_tree, pine_tree, willow_tree
18 vehicles_1: bicycle, bus, motorcycle, pickup_truck, train
19 vehicles_2: lawn_mower, rocket, streetcar, tank, tractor
"""


def _method_table():
  coarse, fine_to_coarse = [], {}
  for line in METHOD_TABLE.splitlines():
    head, fines = line.split(": ")
    idx, name = head.split(" ")
    assert int(idx) == len(coarse)
    coarse.append(name)
    for f in fines.split(", "):
      fine_to_coarse[f] = int(idx)
  return coarse, fine_to_coarse


def test_cifar100_hierarchy_matches_method_md():
  coarse, f2c = _method_table()
  assert len(coarse) == 20 and len(f2c) == 100
  assert D.CIFAR100_COARSE == tuple(coarse)
  assert len(D.CIFAR100_FINE) == 100 and list(D.CIFAR100_FINE) == sorted(f2c)
  assert D.CIFAR100_FINE[:3] == ("apple", "aquarium_fish", "baby")
  assert D.CIFAR100_FINE[-1] == "worm"
  table = D.cifar100_fine_to_coarse()
  assert table.shape == (100,) and table.dtype == np.int32
  assert table.tolist() == [f2c[f] for f in D.CIFAR100_FINE]
  assert np.bincount(table).tolist() == [5] * 20
  rocket = D.CIFAR100_FINE.index("rocket")
  assert table[rocket] == 19 and D.CIFAR100_COARSE[19] == "vehicles_2"
  assert table[0] == 4 and table[1] == 1 and table[2] == 14  # apple, aquarium_fish, baby


def test_unknown_dataset_name():
  with pytest.raises(D.DataError, match="--dataset 'imagenet': unknown"):
    D.load("imagenet")
  with pytest.raises(D.DataError, match="--dataset"):
    D.spec("cifar")


def test_tiny_imagenet_without_data_dir():
  with pytest.raises(D.DataError, match="no tfds source; pass --data_dir"):
    D.load("tiny_imagenet")


# --------------------------------------------------------------------------
# 2. tfds, under tfds.testing.mock_data (random examples, no files, no network).

_MOCK_N = 40


@pytest.fixture(scope="module")
def mocked(tmp_path_factory):
  tfds = pytest.importorskip("tensorflow_datasets")
  tfdir = tmp_path_factory.mktemp("tfds")
  (tfdir / "cifar10").mkdir()  # load() routes a dir holding cifar10/ to tfds
  out = {}
  old = os.environ.pop(D.DATA_ENV, None)
  try:
    with tfds.testing.mock_data(num_examples=_MOCK_N):
      for name, tname in (("cifar10", "cifar10"), ("cifar100", "cifar100"),
                          ("svhn", "svhn_cropped")):
        out[name] = D.load(name)
        # The second code path: tfds's own unbatched examples.
        out[name + "_raw"] = {sp: list(tfds.as_numpy(tfds.load(tname, split=sp)))
                              for sp in ("train", "test")}
      out["cifar10_dir"] = D.load("cifar10", str(tfdir))
  finally:
    if old is not None:
      os.environ[D.DATA_ENV] = old
  return out


@pytest.mark.parametrize("name,classes,mean,std", [
    ("cifar10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),  # METHOD.md s.3
    ("cifar100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    ("svhn", 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
])
def test_tfds_mocked(mocked, name, classes, mean, std):
  d, raw = mocked[name], mocked[name + "_raw"]
  assert d.name == name and d.source.endswith("(tfds)")
  assert d.num_classes == classes and d.input_shape == (32, 32, 3)
  np.testing.assert_allclose(d.mean, mean)
  np.testing.assert_allclose(d.std, std)
  for x, y, split in ((d.train_x, d.train_y, "train"), (d.test_x, d.test_y, "test")):
    assert x.shape == (_MOCK_N, 32, 32, 3) and x.dtype == np.uint8
    assert y.dtype == np.int32 and y.min() >= 0 and y.max() < classes
    ref = raw[split]
    np.testing.assert_array_equal(x, np.stack([e["image"] for e in ref]))
    np.testing.assert_array_equal(y, [e["label"] for e in ref])
    assert np.bincount(y, minlength=classes).tolist() == \
        np.bincount([e["label"] for e in ref], minlength=classes).tolist()
  if name == "cifar100":
    assert d.class_names == D.CIFAR100_FINE and d.coarse_names == D.CIFAR100_COARSE
    for cz, split in ((d.train_coarse, "train"), (d.test_coarse, "test")):
      assert cz.dtype == np.int32
      # From tfds's coarse_label: the mock draws it independently of label,
      # so the table (fine -> coarse) would give other values.
      np.testing.assert_array_equal(cz, [e["coarse_label"] for e in raw[split]])
    assert not np.array_equal(d.train_coarse, D.cifar100_fine_to_coarse()[d.train_y])
    c = d.coarse()
    assert c.num_classes == 20 and c.class_names == D.CIFAR100_COARSE
    np.testing.assert_array_equal(c.train_y, d.train_coarse)
  else:
    assert d.train_coarse is None
    with pytest.raises(D.DataError, match="no coarse labels"):
      d.coarse()
  if name == "cifar10":
    assert d.class_names == D.CIFAR10_CLASSES
  if name == "svhn":
    assert d.class_names == tuple("0123456789")


def test_tfds_data_dir_routes_to_tfds(mocked):
  # mock_data ignores data_dir (it injects its own), so this checks load()'s
  # routing of a dir holding cifar10/ to tfds, not tfds reading that dir.
  d = mocked["cifar10_dir"]
  assert d.source == "CIFAR-10 (tfds)" and d.train_x.shape == (_MOCK_N, 32, 32, 3)
  np.testing.assert_array_equal(d.train_x, mocked["cifar10"].train_x)


def test_tfds_offline_fails_fast_and_says_how(tmp_path, monkeypatch):
  pytest.importorskip("tensorflow_datasets")
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))  # nothing prepared there
  calls = []

  def offline(address, *a, **k):
    calls.append(address)
    raise OSError("Name or service not known")
  monkeypatch.setattr(socket, "create_connection", offline)
  with pytest.raises(D.DataError, match="cannot be reached.*pass --data_dir"):
    D.load("cifar100")
  assert calls == [("www.cs.toronto.edu", 443)]
  # A TFDS data dir without the prepared data set: no download, no network.
  (tmp_path / "svhn_cropped").mkdir()
  with pytest.raises(D.DataError, match="svhn_cropped there is not prepared"):
    D.load("svhn", str(tmp_path))
  assert len(calls) == 1


# --------------------------------------------------------------------------
# 3. Image folders and .tar.gz archives of them (synthetic PNG trees).

def _png(path, rng, size=32):
  path.parent.mkdir(parents=True, exist_ok=True)
  px = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
  Image.fromarray(px).save(path)
  return px


def _tree(root, classes, per=(2, 1), size=32, seed=0):
  """train/<c>/<k>.png, test/<c>/<k>.png; returns {split: [(class, pixels)]}."""
  rng = np.random.default_rng(seed)
  out = {"train": [], "test": []}
  for split, n in zip(("train", "test"), per):
    for c in classes:
      for k in range(n):
        out[split].append((c, _png(root / split / c / f"{k:04d}.png", rng, size)))
  return out


def _tar(root, dest, top=None):
  with tarfile.open(dest, "w:gz") as t:
    for split in ("train", "test"):
      t.add(root / split, f"{top}/{split}" if top else split)
  return dest


@pytest.fixture(scope="module")
def c100(tmp_path_factory):
  root = tmp_path_factory.mktemp("c100") / "tree"
  # Written in table order, not alphabetical: the loader must sort.
  _, f2c = _method_table()
  return root, _tree(root, list(f2c))


def _expected(pixels, names):
  """Rows sorted by (class name, file): what the loader must return."""
  order = sorted(range(len(pixels)), key=lambda i: names.index(pixels[i][0]))
  return (np.stack([pixels[i][1] for i in order]),
          np.array([names.index(pixels[i][0]) for i in order]))


def test_cifar100_folder(c100):
  root, px = c100
  d = D.load("cifar100", str(root))
  assert d.num_classes == 100 and d.class_names == D.CIFAR100_FINE
  assert d.train_x.shape == (200, 32, 32, 3) and d.test_x.shape == (100, 32, 32, 3)
  assert d.source == "CIFAR-100 (image folder: tree)"
  for split, x, y in (("train", d.train_x, d.train_y), ("test", d.test_x, d.test_y)):
    ex, ey = _expected(px[split], list(D.CIFAR100_FINE))
    np.testing.assert_array_equal(x, ex)
    np.testing.assert_array_equal(y, ey)
  # Coarse labels by hand (METHOD.md s.6).
  by_name = {n: d.train_coarse[d.train_y == i] for i, n in enumerate(d.class_names)}
  for fine, coarse in (("apple", 4), ("aquarium_fish", 1), ("baby", 14), ("rocket", 19),
                       ("beaver", 0), ("willow_tree", 17), ("worm", 13), ("lamp", 5)):
    assert by_name[fine].tolist() == [coarse, coarse]
  assert d.test_coarse[d.test_y == D.CIFAR100_FINE.index("rocket")].tolist() == [19]
  c = d.coarse()
  assert c.num_classes == 20 and c.class_names == D.CIFAR100_COARSE
  np.testing.assert_array_equal(c.train_y, d.train_coarse)
  np.testing.assert_array_equal(c.test_y, d.test_coarse)
  assert np.bincount(c.train_y).tolist() == [10] * 20  # 5 fine classes x 2
  assert c.train_coarse is None
  np.testing.assert_array_equal(c.train_x, d.train_x)


def test_cifar100_folder_with_a_foreign_class_name(c100, tmp_path):
  root = tmp_path / "tree"
  shutil.copytree(c100[0], root)
  for split in ("train", "test"):
    (root / split / "rocket").rename(root / split / "spaceship")
  with pytest.raises(D.DataError, match="spaceship are not CIFAR-100 fine class names"):
    D.load("cifar100", str(root))


def test_cifar100_tar_equals_folder_and_is_cached(c100, tmp_path, monkeypatch):
  monkeypatch.setenv(D.CACHE_ENV, str(tmp_path / "cache"))
  tgz = _tar(c100[0], tmp_path / "c100.tar.gz", top="cifar100")  # with a top folder
  a = D.load("cifar100", str(c100[0]))
  b = D.load("cifar100", str(tgz))
  assert b.source == "CIFAR-100 (image folder: c100.tar.gz)"
  for f in ("train_x", "train_y", "test_x", "test_y", "train_coarse", "test_coarse"):
    np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
  assert a.class_names == b.class_names and a.coarse_names == b.coarse_names
  caches = list((tmp_path / "cache").glob("cifar100-*.npz"))
  assert len(caches) == 1

  def no_decode(*a, **k):
    raise AssertionError("decoded again instead of read from the cache")
  monkeypatch.setattr(D, "_load_tar", no_decode)
  c = D.load("cifar100", str(tgz))
  for f in ("train_x", "train_y", "test_x", "test_y", "train_coarse", "test_coarse"):
    np.testing.assert_array_equal(getattr(a, f), getattr(c, f))
    assert getattr(c, f).dtype == getattr(a, f).dtype
  assert c.class_names == a.class_names and c.coarse_names == D.CIFAR100_COARSE
  assert c.mean == a.mean and c.std == a.std and c.source == b.source
  np.testing.assert_array_equal(c.coarse().train_y, a.train_coarse)


def test_cifar10_folder_and_tar(tmp_path):
  px = _tree(tmp_path / "tree", list(D.CIFAR10_CLASSES), per=(2, 2), seed=1)
  a = D.load("cifar10", str(tmp_path / "tree"))
  assert a.class_names == D.CIFAR10_CLASSES and a.num_classes == 10
  assert a.train_y.tolist() == np.repeat(np.arange(10), 2).tolist()
  np.testing.assert_array_equal(a.train_x, _expected(px["train"], list(D.CIFAR10_CLASSES))[0])
  b = D.load("cifar10", str(_tar(tmp_path / "tree", tmp_path / "c10.tgz")))
  np.testing.assert_array_equal(a.test_x, b.test_x)
  np.testing.assert_array_equal(a.test_y, b.test_y)


def test_cifar10_folder_with_nine_classes(tmp_path):
  _tree(tmp_path, list(D.CIFAR10_CLASSES[:9]), per=(1, 1))
  with pytest.raises(D.DataError, match="train/ has 9 class folders, expected 10"):
    D.load("cifar10", str(tmp_path))


def test_train_and_test_class_folders_differ(tmp_path):
  _tree(tmp_path, list(D.CIFAR10_CLASSES), per=(1, 1))
  (tmp_path / "test" / "truck").rename(tmp_path / "test" / "lorry")
  with pytest.raises(D.DataError, match="different class folders"):
    D.load("cifar10", str(tmp_path))


def test_svhn_folder(tmp_path):
  digits = [str(i) for i in range(10)]
  px = _tree(tmp_path, digits, per=(2, 1), seed=2)
  d = D.load("svhn", str(tmp_path))
  assert d.class_names == tuple(digits) and d.num_classes == 10
  assert d.test_y.tolist() == list(range(10))
  np.testing.assert_array_equal(d.test_x, np.stack([p for _, p in px["test"]]))
  assert d.source == f"SVHN (image folder: {tmp_path.name})"


def test_wrong_image_size(tmp_path):
  _tree(tmp_path, list(D.CIFAR10_CLASSES), per=(1, 1), size=28)
  with pytest.raises(D.DataError, match=r"shape \(28, 28, 3\), expected \(32, 32, 3\)"):
    D.load("cifar10", str(tmp_path))


def test_unreadable_image(tmp_path):
  _tree(tmp_path, list(D.CIFAR10_CLASSES), per=(1, 1))
  (tmp_path / "train" / "cat" / "0000.png").write_bytes(b"not a png")
  with pytest.raises(D.DataError, match="unreadable image train/cat/0000.png"):
    D.load("cifar10", str(tmp_path))


def test_truncated_and_empty_archives(tmp_path):
  _tree(tmp_path / "tree", list(D.CIFAR10_CLASSES), per=(2, 1))
  tgz = _tar(tmp_path / "tree", tmp_path / "ok.tar.gz")
  cut = tmp_path / "cut.tar.gz"
  cut.write_bytes(tgz.read_bytes()[: tgz.stat().st_size // 2])
  with pytest.raises(D.DataError, match="corrupted or truncated"):
    D.load("cifar10", str(cut))
  empty = tmp_path / "empty.tar.gz"
  with tarfile.open(empty, "w:gz") as t:
    t.add(tmp_path / "tree" / "train" / "cat" / "0000.png", "cat.png")
  with pytest.raises(D.DataError, match="holds no train/<class>"):
    D.load("cifar10", str(empty))


@pytest.mark.parametrize("make", ["missing", "empty_dir", "text_file"])
def test_bad_paths(tmp_path, make):
  p = tmp_path / "x"
  if make == "empty_dir":
    p.mkdir()
  elif make == "text_file":
    p = tmp_path / "x.txt"
    p.write_text("hi")
  with pytest.raises(D.DataError, match="--data_dir"):
    D.load("cifar10", str(p))


def test_data_dir_from_env(tmp_path, monkeypatch):
  _tree(tmp_path, [str(i) for i in range(10)], per=(1, 1))
  monkeypatch.setenv(D.DATA_ENV, str(tmp_path))
  assert D.load("svhn").train_x.shape == (10, 32, 32, 3)


# --------------------------------------------------------------------------
# 4. Tiny-ImageNet's official layout (synthetic: 200 classes, 1-2 images each).

def _jpeg(path, rng):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path, "JPEG")


def _decoded(path):
  return np.asarray(Image.open(path).convert("RGB"))


def _tiny(base, seed=0):
  """base/tiny-imagenet-200/...; returns (root, wnids in file order, val class)."""
  rng = np.random.default_rng(seed)
  root = base / "tiny-imagenet-200"
  root.mkdir(parents=True)
  wnids = [f"n{v:08d}" for v in rng.choice(10**8, 200, replace=False)]  # unsorted
  (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
  words = [f"{w}\tthing {w}, also {i}" for i, w in enumerate(wnids)]
  words += ["n00001740\tentity", "n99999999\tnot in the list"]
  (root / "words.txt").write_text("\n".join(words) + "\n")
  for i, w in enumerate(wnids):
    boxes = []
    for k in range(1 + i % 2):
      _jpeg(root / "train" / w / "images" / f"{w}_{k}.JPEG", rng)
      boxes.append(f"{w}_{k}.JPEG\t0\t0\t63\t63")
    (root / "train" / w / f"{w}_boxes.txt").write_text("\n".join(boxes) + "\n")
  val_class = rng.permutation(200)  # val_i.JPEG shows class wnids[val_class[i]]
  ann = []
  for i in range(200):
    _jpeg(root / "val" / "images" / f"val_{i}.JPEG", rng)
    ann.append(f"val_{i}.JPEG\t{wnids[val_class[i]]}\t1\t2\t60\t61")
  (root / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
  _jpeg(root / "test" / "images" / "test_0.JPEG", rng)  # unlabelled: ignored
  return root, wnids, val_class


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  base = tmp_path_factory.mktemp("tiny")
  root, wnids, val_class = _tiny(base)
  return root, wnids, val_class, D.load("tiny_imagenet", str(root))


def test_tiny_imagenet_folder(tiny):
  root, wnids, val_class, d = tiny
  srt = sorted(wnids)
  assert d.num_classes == 200 and d.input_shape == (64, 64, 3)
  assert d.train_x.shape == (300, 64, 64, 3) and d.test_x.shape == (200, 64, 64, 3)
  assert d.train_x.dtype == np.uint8 and d.train_y.dtype == np.int32
  assert d.class_names == tuple(f"thing {w}, also {wnids.index(w)}" for w in srt)
  assert d.source == "Tiny-ImageNet (tiny-imagenet-200)"
  assert d.train_coarse is None
  # Train: label = the folder's index among the sorted wnids; rows by (label, file).
  files = [(srt.index(w), p) for w in wnids
           for p in sorted((root / "train" / w / "images").glob("*.JPEG"))]
  files.sort()
  assert d.train_y.tolist() == [y for y, _ in files]
  np.testing.assert_array_equal(d.train_x, np.stack([_decoded(p) for _, p in files]))
  # Val (the test set): one image per class, labels from val_annotations.txt.
  assert d.test_y.tolist() == list(range(200))
  for i in (0, 1, 57, 199):
    label = srt.index(wnids[val_class[i]])
    np.testing.assert_array_equal(d.test_x[label],
                                  _decoded(root / "val" / "images" / f"val_{i}.JPEG"))
  assert np.bincount(d.train_y).tolist() == [1 + wnids.index(w) % 2 for w in srt]


def _zip(root, dest):
  with zipfile.ZipFile(dest, "w") as z:
    for p in sorted(root.rglob("*")):
      z.write(p, f"tiny-imagenet-200/{p.relative_to(root).as_posix()}")
  return dest


def _same(a, b):
  for f in ("train_x", "train_y", "test_x", "test_y"):
    np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
  assert a.class_names == b.class_names


def test_tiny_imagenet_zip_and_parent_folder(tiny, tmp_path):
  root, _, _, d = tiny
  z = D.load("tiny_imagenet", str(_zip(root, tmp_path / "tiny-imagenet-200.zip")))
  _same(d, z)
  assert z.source == "Tiny-ImageNet (tiny-imagenet-200.zip)"
  _same(d, D.load("tiny_imagenet", str(root.parent)))


def test_tiny_imagenet_sibling_folders(tiny, tmp_path):
  # A partial old copy next to it, its name as long as "tiny-imagenet-200":
  # its files are not read as the root's.
  root, wnids, _, d = tiny
  shutil.copytree(root, tmp_path / "tiny-imagenet-200")
  old = tmp_path / "tiny-imagenet-old"
  shutil.copytree(root / "train" / wnids[0], old / "train" / wnids[0])
  shutil.copytree(root / "val", old / "val")
  _same(d, D.load("tiny_imagenet", str(tmp_path)))
  # A deeper copy (a backup inside a subfolder) loses to the shallower one.
  shutil.copytree(root, tmp_path / "backup" / "tiny-imagenet-200")
  (tmp_path / "backup" / "tiny-imagenet-200" / "wnids.txt").write_text("n1 n2")
  _same(d, D.load("tiny_imagenet", str(tmp_path)))
  # Two complete copies side by side: which one is meant is not guessed.
  (old / "wnids.txt").write_text("\n".join(wnids) + "\n")
  with pytest.raises(D.DataError, match="several wnids.txt"):
    D.load("tiny_imagenet", str(tmp_path))


@pytest.mark.parametrize("defect,msg", [
    ("wnids_199", "wnids.txt lists 199 classes, expected 200"),
    ("no_annotations", "no val/val_annotations.txt"),
    ("unlabelled_val", "val image extra.JPEG has no label"),
    ("unknown_val_class", "names class n00000000 that wnids.txt does not list"),
    ("no_wnids", "no wnids.txt"),
])
def test_tiny_imagenet_errors(tiny, tmp_path, defect, msg):
  src, wnids, _, _ = tiny
  root = tmp_path / "tiny-imagenet-200"
  shutil.copytree(src, root)
  if defect == "wnids_199":
    (root / "wnids.txt").write_text("\n".join(wnids[:199]))
  elif defect == "no_annotations":
    (root / "val" / "val_annotations.txt").unlink()
  elif defect == "unlabelled_val":
    shutil.copy(root / "val" / "images" / "val_0.JPEG", root / "val" / "images" / "extra.JPEG")
  elif defect == "unknown_val_class":
    with open(root / "val" / "val_annotations.txt", "a") as f:
      f.write("val_0.JPEG\tn00000000\t0\t0\t1\t1\n")
  elif defect == "no_wnids":
    (root / "wnids.txt").unlink()
  with pytest.raises(D.DataError, match=msg):
    D.load("tiny_imagenet", str(root))


def test_tiny_imagenet_bad_zip(tmp_path):
  bad = tmp_path / "tiny.zip"
  bad.write_bytes(b"PK not really")
  with pytest.raises(D.DataError, match="not a readable .zip"):
    D.load("tiny_imagenet", str(bad))


# --------------------------------------------------------------------------
# 5. The shared real CIFAR-10 copy (JPEG re-encoded), skipped where absent.

def test_shared_cifar10(cifar):
  assert cifar.name == "cifar10" and cifar.class_names == D.CIFAR10_CLASSES
  assert cifar.train_x.shape == (50000, 32, 32, 3) and cifar.train_x.dtype == np.uint8
  assert cifar.test_x.shape == (10000, 32, 32, 3)
  assert np.bincount(cifar.train_y).tolist() == [5000] * 10
  assert np.bincount(cifar.test_y).tolist() == [1000] * 10
  assert "JPEG copy" in cifar.source and cifar.input_shape == (32, 32, 3)
  # Channel means of the JPEG copy (data README: ~0.485/0.477/0.439).
  np.testing.assert_allclose(cifar.train_x[::10].mean((0, 1, 2)) / 255,
                             [0.485, 0.477, 0.439], atol=0.02)


def _subset_tree(shared_tar, root, per_class=3):
  """Extract the first few images per class of each split."""
  seen = {}
  with tarfile.open(shared_tar) as tar:
    for m in tar:
      if not m.isfile():
        continue
      split, cls, _ = m.name.split("/")[-3:]
      if seen.get((split, cls), 0) < per_class:
        seen[(split, cls)] = seen.get((split, cls), 0) + 1
        tar.extract(m, root, filter="data")
  tops = {p.parent for p in root.rglob("train")}
  assert len(tops) == 1
  return tops.pop()


def test_shared_folder_subset_matches_tar(shared_tar, cifar, tmp_path, monkeypatch):
  top = _subset_tree(shared_tar, tmp_path / "x")
  small = D.load("cifar10", str(top))
  assert small.train_x.shape == (30, 32, 32, 3) and small.test_x.shape == (30, 32, 32, 3)
  assert small.train_y.tolist() == np.repeat(np.arange(10), 3).tolist()
  # The first three files of each class are the first three of that class in
  # the full (sorted) tar load: a second code path gives the same pixels.
  for x, full_x, full_y in ((small.train_x, cifar.train_x, cifar.train_y),
                            (small.test_x, cifar.test_x, cifar.test_y)):
    idx = np.concatenate([np.flatnonzero(full_y == c)[:3] for c in range(10)])
    np.testing.assert_array_equal(x, full_x[idx])
  monkeypatch.setenv(D.CACHE_ENV, str(tmp_path / "cache"))
  again = D.load("cifar10", str(_tar(top, tmp_path / "small.tar.gz")))
  np.testing.assert_array_equal(again.train_x, small.train_x)
  assert again.source == "CIFAR-10 (JPEG copy: small.tar.gz)"


def test_shared_truncated_tar(shared_tar, tmp_path, monkeypatch):
  monkeypatch.setenv(D.CACHE_ENV, str(tmp_path / "cache"))
  bad = tmp_path / "cut.tar.gz"
  with open(shared_tar, "rb") as f:
    bad.write_bytes(f.read(200_000))
  with pytest.raises(D.DataError, match="corrupted or truncated"):
    D.load("cifar10", str(bad))
