"""Data sets by name: uint8 image arrays with their class count, class names,
normalisation and (CIFAR-100) coarse labels; or, for text (20 Newsgroups),
int32 token ids with their vocabulary (text.py).

  load("cifar100", "path/to/cifar100.tar.gz") -> Dataset
  load("20newsgroups", "path/to/20news-bydate.tar.gz", text=cfg.text) -> Dataset

Sources, whatever the data set:
  None                 tfds by name (downloads where there is internet)
  a TFDS data dir      holding <tfds name>/ already prepared
  an image folder      train/<class>/*.{jpg,png,...} and test/<class>/...,
                       classes in alphabetical = label order
  a .tar.gz / .tar     of such a folder (an optional top folder is allowed);
                       decoded arrays are cached by the file's content
Tiny-ImageNet reads its official `tiny-imagenet-200/` layout (folder or .zip)
instead: wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG labelled by
val/val_annotations.txt (its val set serves as the test set).

Adding a data set is one `Spec` line in REGISTRY (plus a loader when its
files have a layout of their own, like Tiny-ImageNet).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from . import text as text_lib
from .dataset import CACHE_ENV, DataError, Dataset, cached, check_online  # noqa: F401
from .dataset import split_class_files

DATA_ENV = "UGRADSL_DATA_DIR"
_IMG_EXT = (".jpg", ".jpeg", ".png", ".bmp")
_CACHE_VERSION = 3  # bump when what a cache file holds changes


# --------------------------------------------------------------------------
# CIFAR-100's fixed hierarchy (METHOD.md s.6): superclass -> its fine classes.

CIFAR100_HIERARCHY = (
    ("aquatic_mammals", ("beaver", "dolphin", "otter", "seal", "whale")),
    ("fish", ("aquarium_fish", "flatfish", "ray", "shark", "trout")),
    ("flowers", ("orchid", "poppy", "rose", "sunflower", "tulip")),
    ("food_containers", ("bottle", "bowl", "can", "cup", "plate")),
    ("fruit_and_vegetables", ("apple", "mushroom", "orange", "pear", "sweet_pepper")),
    ("household_electrical_devices", ("clock", "keyboard", "lamp", "telephone",
                                      "television")),
    ("household_furniture", ("bed", "chair", "couch", "table", "wardrobe")),
    ("insects", ("bee", "beetle", "butterfly", "caterpillar", "cockroach")),
    ("large_carnivores", ("bear", "leopard", "lion", "tiger", "wolf")),
    ("large_man-made_outdoor_things", ("bridge", "castle", "house", "road",
                                       "skyscraper")),
    ("large_natural_outdoor_scenes", ("cloud", "forest", "mountain", "plain", "sea")),
    ("large_omnivores_and_herbivores", ("camel", "cattle", "chimpanzee", "elephant",
                                        "kangaroo")),
    ("medium_mammals", ("fox", "porcupine", "possum", "raccoon", "skunk")),
    ("non-insect_invertebrates", ("crab", "lobster", "snail", "spider", "worm")),
    ("people", ("baby", "boy", "girl", "man", "woman")),
    ("reptiles", ("crocodile", "dinosaur", "lizard", "snake", "turtle")),
    ("small_mammals", ("hamster", "mouse", "rabbit", "shrew", "squirrel")),
    ("trees", ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree")),
    ("vehicles_1", ("bicycle", "bus", "motorcycle", "pickup_truck", "train")),
    ("vehicles_2", ("lawn_mower", "rocket", "streetcar", "tank", "tractor")),
)
CIFAR100_FINE = tuple(sorted(f for _, fs in CIFAR100_HIERARCHY for f in fs))
CIFAR100_COARSE = tuple(c for c, _ in CIFAR100_HIERARCHY)


def cifar100_fine_to_coarse() -> np.ndarray:
  """[100] int32: fine label (alphabetical) -> coarse label (table order)."""
  table = {f: ci for ci, (_, fs) in enumerate(CIFAR100_HIERARCHY) for f in fs}
  return np.array([table[f] for f in CIFAR100_FINE], np.int32)


# --------------------------------------------------------------------------
# The registry.

@dataclasses.dataclass(frozen=True)
class Spec:
  title: str               # "CIFAR-10", goes into the source label
  tfds_name: str | None
  num_classes: int
  image_shape: tuple | None  # (H, W, C) of every image; None for text
  mean: tuple
  std: tuple
  class_names: tuple | None = None   # None: taken from the folders / tfds
  coarse: bool = False               # has CIFAR-100's superclasses
  folder_loader: Callable | None = None  # a layout of its own (Tiny-ImageNet)
  download_host: str | None = None   # checked before a tfds download
  modality: str = "image"            # "image" | "text" (the models that fit)


# Channel statistics of each training set, in [0, 1] units: the values the
# OPTML codebases normalise with (CIFAR-10 as METHOD.md s.3).
_CIFAR10 = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_CIFAR100 = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
_SVHN = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
_TINY = ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262))

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


def _tiny_imagenet_loader(path: Path, spec: Spec) -> "Dataset":
  return _load_tiny_imagenet(path, spec)


REGISTRY: dict[str, Spec] = {
    "cifar10": Spec("CIFAR-10", "cifar10", 10, (32, 32, 3), *_CIFAR10,
                    class_names=CIFAR10_CLASSES, download_host="www.cs.toronto.edu"),
    "cifar100": Spec("CIFAR-100", "cifar100", 100, (32, 32, 3), *_CIFAR100,
                     class_names=CIFAR100_FINE, coarse=True,
                     download_host="www.cs.toronto.edu"),
    "svhn": Spec("SVHN", "svhn_cropped", 10, (32, 32, 3), *_SVHN,
                 class_names=tuple(str(d) for d in range(10)),
                 download_host="ufldl.stanford.edu"),
    "tiny_imagenet": Spec("Tiny-ImageNet", None, 200, (64, 64, 3), *_TINY,
                          folder_loader=_tiny_imagenet_loader),
    # 20 Newsgroups, "bydate" (scikit-learn's split): 11,314 / 7,532 posts.
    "20newsgroups": Spec("20 Newsgroups", None, 20, None, (), (),
                         download_host="ndownloader.figshare.com", modality="text"),
}
NAMES = tuple(REGISTRY)


def spec(name: str) -> Spec:
  if name not in REGISTRY:
    raise DataError(f"--dataset {name!r}: unknown; known: {', '.join(REGISTRY)}")
  return REGISTRY[name]


def load(name: str = "cifar10", data_dir: str | None = None, text=None) -> Dataset:
  """Loads data set `name` from `data_dir` (or $UGRADSL_DATA_DIR), else tfds
  (text: scikit-learn). `text`: the config's text options (configs.TextCfg),
  which a text data set needs: they decide its tokens."""
  s = spec(name)
  data_dir = data_dir or os.environ.get(DATA_ENV) or None
  if s.modality == "text":
    path = None if data_dir is None else Path(data_dir).expanduser()
    if path is not None and not path.exists():
      raise DataError(f"--data_dir {data_dir}: no such file or directory")
    return text_lib.load_20newsgroups(path, s, text, name)
  if data_dir is None:
    if s.tfds_name is None:
      raise DataError(f"--dataset {name}: has no tfds source; pass --data_dir "
                      f"(or ${DATA_ENV}) pointing at its files")
    return _load_tfds(name, s, None)
  path = Path(data_dir).expanduser()
  if not path.exists():
    raise DataError(f"--data_dir {data_dir}: no such file or directory")
  if s.folder_loader is not None:
    if path.is_file():
      return _cached(name, path, lambda p: s.folder_loader(p, s))
    return s.folder_loader(path, s)
  if path.is_file():
    if not path.name.endswith((".tar.gz", ".tgz", ".tar")):
      raise DataError(f"--data_dir {data_dir}: a file must be a .tar.gz of "
                      "train/<class>/*.jpg and test/<class>/*.jpg")
    return _cached(name, path, lambda p: _load_tar(name, s, p))
  if (path / "train").is_dir() and (path / "test").is_dir():
    return _load_folder(name, s, path)
  if s.tfds_name and (path / s.tfds_name).is_dir():
    return _load_tfds(name, s, str(path))
  raise DataError(f"--data_dir {data_dir}: expected train/ and test/ class "
                  f"folders, a .tar.gz of them, or a TFDS data dir with {s.tfds_name}/")


# --------------------------------------------------------------------------
# Image folders and archives of them.

def _decode(raw: bytes, name: str, shape: tuple) -> np.ndarray:
  from PIL import Image, UnidentifiedImageError
  try:
    img = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
  except (UnidentifiedImageError, OSError) as e:
    raise DataError(f"unreadable image {name}: {e}") from None
  if img.shape != tuple(shape):
    raise DataError(f"image {name} has shape {img.shape}, expected {tuple(shape)}")
  return img


def _assemble(name: str, s: Spec, items: list[tuple[str, str, str, bytes]],
              where: str, source: str) -> Dataset:
  """items: (split, class_name, file_name, raw bytes) -> a Dataset."""
  out, names = {}, None
  for split in ("train", "test"):
    rows = sorted((c, f, raw) for sp, c, f, raw in items if sp == split)
    classes = sorted({c for c, _, _ in rows})
    if len(classes) != s.num_classes:
      raise DataError(f"{where}: {split}/ has {len(classes)} class folders, "
                      f"expected {s.num_classes} for --dataset {name}")
    if names is not None and classes != names:
      raise DataError(f"{where}: train/ and test/ have different class folders")
    names = classes
    index = {c: i for i, c in enumerate(classes)}
    x = np.stack([_decode(raw, f"{split}/{c}/{f}", s.image_shape) for c, f, raw in rows])
    y = np.array([index[c] for c, _, _ in rows], np.int32)
    out[split] = (x, y)
  extra = {}
  if s.coarse:
    unknown = sorted(set(names) - set(CIFAR100_FINE))
    if unknown:
      raise DataError(f"{where}: class folders {', '.join(unknown[:3])} are not "
                      f"CIFAR-100 fine class names (e.g. apple, aquarium_fish)")
    f2c = cifar100_fine_to_coarse()
    extra = dict(train_coarse=f2c[out["train"][1]], test_coarse=f2c[out["test"][1]],
                 coarse_names=CIFAR100_COARSE)
  return Dataset(name, *out["train"], *out["test"], class_names=tuple(names),
                 mean=s.mean, std=s.std, source=source, **extra)


def _source(name: str, s: Spec, path: Path) -> str:
  if name == "cifar10":
    # The shared offline copy is JPEG re-encoded; results must say so.
    return f"CIFAR-10 (JPEG copy: {path.name})"
  return f"{s.title} (image folder: {path.name})"


def _load_folder(name: str, s: Spec, path: Path) -> Dataset:
  items = []
  for split in ("train", "test"):
    for f in sorted((path / split).glob("*/*")):
      if f.suffix.lower() in _IMG_EXT:
        items.append((split, f.parent.name, f.name, f.read_bytes()))
  return _assemble(name, s, items, f"--data_dir {path}", _source(name, s, path))


def _load_tar(name: str, s: Spec, path: Path) -> Dataset:
  items = split_class_files(path, lambda f: f.lower().endswith(_IMG_EXT))
  if not items:
    raise DataError(f"--data_dir {path}: archive holds no train/<class>/*.jpg")
  return _assemble(name, s, items, f"--data_dir {path}", _source(name, s, path))


# --------------------------------------------------------------------------
# Tiny-ImageNet's own layout.

class _Files:
  """Read-only view of a folder or a .zip by relative path (posix)."""

  def __init__(self, path: Path):
    self.path = path
    self.zip = None
    if path.is_file():
      try:
        self.zip = zipfile.ZipFile(path)
      except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"--data_dir {path}: not a readable .zip ({e})") from None
      names = [n for n in self.zip.namelist() if not n.endswith("/")]
    else:
      names = [str(p.relative_to(path)).replace(os.sep, "/")
               for p in path.rglob("*") if p.is_file()]
    self.names = sorted(names)

  def read(self, name: str) -> bytes:
    try:
      return self.zip.read(name) if self.zip else (self.path / name).read_bytes()
    except Exception as e:
      raise DataError(f"--data_dir {self.path}: cannot read {name} "
                      f"({type(e).__name__}: {e})") from None


def _load_tiny_imagenet(path: Path, s: Spec) -> Dataset:
  files = _Files(path)
  # The root is the folder holding wnids.txt: the given one or one below it
  # (tiny-imagenet-200/ inside a zip or a parent folder).
  roots = sorted({n[:-len("wnids.txt")] for n in files.names
                  if n == "wnids.txt" or n.endswith("/wnids.txt")})
  if not roots:
    raise DataError(f"--data_dir {path}: no wnids.txt; expected the "
                    "tiny-imagenet-200/ layout (wnids.txt, train/, val/)")
  # The shallowest; two at that depth are two copies: ambiguous.
  top = [r for r in roots if r.count("/") == min(q.count("/") for q in roots)]
  if len(top) > 1:
    raise DataError(f"--data_dir {path}: several wnids.txt ({', '.join(top[:3])}); "
                    "point --data_dir at one tiny-imagenet-200/")
  root = top[0]
  wnids = sorted(w.strip() for w in files.read(root + "wnids.txt").decode().split()
                 if w.strip())
  if len(wnids) != s.num_classes:
    raise DataError(f"--data_dir {path}: wnids.txt lists {len(wnids)} classes, "
                    f"expected {s.num_classes} for --dataset tiny_imagenet")
  index = {w: i for i, w in enumerate(wnids)}
  words = {}
  if root + "words.txt" in files.names:
    for line in files.read(root + "words.txt").decode(errors="replace").splitlines():
      wnid, _, text = line.partition("\t")
      words[wnid.strip()] = text.strip()
  ann_name = root + "val/val_annotations.txt"
  if ann_name not in files.names:
    raise DataError(f"--data_dir {path}: no val/val_annotations.txt")
  val_label = {}
  for line in files.read(ann_name).decode().splitlines():
    cols = line.split("\t")
    if len(cols) >= 2:
      if cols[1] not in index:
        raise DataError(f"--data_dir {path}: val_annotations.txt names class "
                        f"{cols[1]} that wnids.txt does not list")
      val_label[cols[0]] = index[cols[1]]
  train, test = [], []
  for n in files.names:
    if not n.startswith(root):  # e.g. a sibling copy next to tiny-imagenet-200/
      continue
    rel = n[len(root):]
    parts = rel.split("/")
    if not parts[-1].lower().endswith(_IMG_EXT):
      continue
    if len(parts) == 4 and parts[0] == "train" and parts[2] == "images":
      if parts[1] not in index:
        raise DataError(f"--data_dir {path}: train/{parts[1]} is not in wnids.txt")
      train.append((index[parts[1]], n))
    elif len(parts) == 3 and parts[:2] == ["val", "images"]:
      if parts[2] not in val_label:
        raise DataError(f"--data_dir {path}: val image {parts[2]} has no label "
                        "in val_annotations.txt")
      test.append((val_label[parts[2]], n))
  if not train or not test:
    raise DataError(f"--data_dir {path}: no train/<wnid>/images/*.JPEG or "
                    "val/images/*.JPEG")
  def arrays(rows):
    rows = sorted(rows)
    x = np.stack([_decode(files.read(n), n, s.image_shape) for _, n in rows])
    return x, np.array([y for y, _ in rows], np.int32)
  names = tuple(words.get(w, w) for w in wnids)
  return Dataset("tiny_imagenet", *arrays(train), *arrays(test), class_names=names,
                 mean=s.mean, std=s.std, source=f"Tiny-ImageNet ({path.name})")


# --------------------------------------------------------------------------
# Cache and tfds.

def _cached(name: str, path: Path, loader) -> Dataset:
  """Decoding 60k JPEGs takes ~12 s; the arrays are cached by file content."""
  digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
  return cached(f"{name}-{digest}-v{_CACHE_VERSION}", lambda: loader(path))


def _load_tfds(name: str, s: Spec, data_dir: str | None) -> Dataset:
  try:
    import tensorflow_datasets as tfds  # slow import; only on this path
  except ImportError:
    raise DataError("tensorflow-datasets is not installed; install it or pass "
                    f"--data_dir (or ${DATA_ENV}) pointing at a {s.title} image "
                    "folder or .tar.gz") from None
  hint = (f"Offline, pass --data_dir (or set ${DATA_ENV}) to a {s.title} image "
          "folder or .tar.gz" + (", e.g. --data_dir ../shared/data/cifar10-jpeg.tar.gz"
                                 if name == "cifar10" else ""))
  try:
    builder = tfds.builder(s.tfds_name, data_dir=data_dir)
    # Only train/test: svhn_cropped's 531k-image "extra" split stays unread.
    # Fixed batches, not batch_size=-1 (that one batches by the split sizes
    # in the info, which tfds.testing.mock_data does not know).
    kw = dict(split=["train", "test"], batch_size=10_000)
    # Read what is there first (mock_data serves it unprepared); check the
    # network only right before a download.
    try:
      ds = tfds.load(s.tfds_name, data_dir=data_dir, download=False, **kw)
    except AssertionError:  # tfds: "could not find data": not prepared there
      if data_dir is not None:
        raise DataError(f"--data_dir {data_dir}: {s.tfds_name} there is not prepared")
      check_online(s.download_host, f"{s.title} (with tfds)")
      ds = tfds.load(s.tfds_name, download=True, **kw)
    keys = ("image", "label") + (("coarse_label",) if s.coarse else ())
    ds = {split: {k: np.concatenate([b[k] for b in batches]) for k in keys}
          for split, batches in zip(("train", "test"),
                                    (list(tfds.as_numpy(d)) for d in ds))}
    names = tuple(builder.info.features["label"].names) if s.class_names is None \
        else s.class_names
  except DataError as e:
    raise DataError(f"{e}. {hint}") from None
  except Exception as e:
    raise DataError(
        f"could not load {s.title} with tfds (the default source downloads it; "
        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). {hint}"
    ) from None
  tr, te = ds["train"], ds["test"]
  extra = {}
  if s.coarse:
    extra = dict(train_coarse=tr["coarse_label"].astype(np.int32),
                 test_coarse=te["coarse_label"].astype(np.int32),
                 coarse_names=CIFAR100_COARSE)
  return Dataset(name, tr["image"].astype(np.uint8), tr["label"].astype(np.int32),
                 te["image"].astype(np.uint8), te["label"].astype(np.int32),
                 class_names=names, mean=s.mean, std=s.std,
                 source=f"{s.title} (tfds)", **extra)

