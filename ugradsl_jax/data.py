"""CIFAR-10 as uint8 arrays from tfds, an image-folder tree or a .tar.gz of one."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tarfile
from pathlib import Path

import numpy as np

NUM_CLASSES = 10
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
DATA_ENV = "UGRADSL_DATA_DIR"
CACHE_ENV = "UGRADSL_CACHE_DIR"
_IMG_EXT = (".jpg", ".jpeg", ".png", ".bmp")


class DataError(ValueError):
  """Input data that cannot be used; the message names the problem."""


@dataclasses.dataclass(frozen=True)
class Cifar:
  train_x: np.ndarray  # uint8 [N, 32, 32, 3]
  train_y: np.ndarray  # int32 [N]
  test_x: np.ndarray
  test_y: np.ndarray
  source: str          # human-readable, goes into results tables


def load(data_dir: str | None = None) -> Cifar:
  """Loads CIFAR-10 from `data_dir` (or $UGRADSL_DATA_DIR), else from tfds."""
  data_dir = data_dir or os.environ.get(DATA_ENV) or None
  if data_dir is None:
    return _load_tfds(None)
  path = Path(data_dir).expanduser()
  if not path.exists():
    raise DataError(f"--data_dir {data_dir}: no such file or directory")
  if path.is_file():
    if not path.name.endswith((".tar.gz", ".tgz", ".tar")):
      raise DataError(f"--data_dir {data_dir}: a file must be a .tar.gz of "
                      "train/<class>/*.jpg and test/<class>/*.jpg")
    return _cached(path, _load_tar)
  if (path / "train").is_dir() and (path / "test").is_dir():
    return _load_folder(path)
  if (path / "cifar10").is_dir():
    return _load_tfds(str(path))
  raise DataError(f"--data_dir {data_dir}: expected train/ and test/ class "
                  "folders, a .tar.gz of them, or a TFDS data dir with cifar10/")


def _decode(raw: bytes, name: str) -> np.ndarray:
  from PIL import Image, UnidentifiedImageError
  try:
    img = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
  except (UnidentifiedImageError, OSError) as e:
    raise DataError(f"unreadable image {name}: {e}") from None
  if img.shape != (32, 32, 3):
    raise DataError(f"image {name} has shape {img.shape}, expected (32, 32, 3)")
  return img


def _assemble(items: list[tuple[str, str, str, bytes]], where: str) -> Cifar:
  """items: (split, class_name, file_name, raw bytes)."""
  out = {}
  for split in ("train", "test"):
    rows = sorted((c, f, raw) for s, c, f, raw in items if s == split)
    classes = sorted({c for c, _, _ in rows})
    if len(classes) != NUM_CLASSES:
      raise DataError(f"{where}: {split}/ has {len(classes)} class folders, "
                      f"expected {NUM_CLASSES}")
    index = {c: i for i, c in enumerate(classes)}
    x = np.stack([_decode(raw, f"{split}/{c}/{f}") for c, f, raw in rows])
    y = np.array([index[c] for c, _, _ in rows], np.int32)
    out[split] = (x, y)
  return Cifar(*out["train"], *out["test"], source=where)


def _load_folder(path: Path) -> Cifar:
  items = []
  for split in ("train", "test"):
    for f in sorted((path / split).glob("*/*")):
      if f.suffix.lower() in _IMG_EXT:
        items.append((split, f.parent.name, f.name, f.read_bytes()))
  return _assemble(items, _label(path))


def _load_tar(path: Path) -> Cifar:
  items = []
  try:
    with tarfile.open(path) as tar:
      for m in tar:
        parts = Path(m.name).parts
        # Accept an optional top folder: [root/]split/class/file.
        if m.isfile() and len(parts) >= 3 and parts[-3] in ("train", "test") \
            and parts[-1].lower().endswith(_IMG_EXT):
          items.append((parts[-3], parts[-2], parts[-1],
                        tar.extractfile(m).read()))
  except DataError:
    raise
  except Exception as e:  # tarfile, gzip, zlib and EOF errors all mean "broken"
    raise DataError(f"--data_dir {path}: corrupted or truncated archive "
                    f"({type(e).__name__}: {e})") from None
  if not items:
    raise DataError(f"--data_dir {path}: archive holds no train/<class>/*.jpg")
  return _assemble(items, _label(path))


def _label(path: Path) -> str:
  # The shared offline copy is JPEG re-encoded; results must say so.
  return f"CIFAR-10 (JPEG copy: {path.name})"


def _cached(path: Path, loader) -> Cifar:
  """Decoding 60k JPEGs takes ~12 s; cache the arrays keyed by file content."""
  digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
  cache_dir = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "ugradsl_jax"))
  cache = cache_dir / f"cifar10-{digest}.npz"
  if cache.exists():
    try:
      with np.load(cache) as z:
        return Cifar(z["train_x"], z["train_y"], z["test_x"], z["test_y"],
                     source=str(z["source"]))
    except Exception:  # a broken cache is just rebuilt
      pass
  data = loader(path)
  try:
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, train_x=data.train_x, train_y=data.train_y,
             test_x=data.test_x, test_y=data.test_y, source=data.source)
    os.replace(tmp, cache)
  except OSError:
    pass  # read-only home: just no cache
  return data


def _load_tfds(data_dir: str | None) -> Cifar:
  try:
    import tensorflow_datasets as tfds  # slow import; only on this path
  except ImportError:
    raise DataError("tensorflow-datasets is not installed; install it or pass "
                    f"--data_dir (or ${DATA_ENV}) pointing at a CIFAR-10 "
                    "image folder or .tar.gz") from None
  hint = (f"Offline, pass --data_dir (or set ${DATA_ENV}) to a CIFAR-10 image "
          "folder or .tar.gz, e.g. --data_dir ../shared/data/cifar10-jpeg.tar.gz")
  try:
    builder = tfds.builder("cifar10", data_dir=data_dir)
    if not builder.is_prepared():
      if data_dir is not None:
        raise DataError(f"--data_dir {data_dir}: cifar10 there is not prepared")
      _check_online()
    ds = tfds.as_numpy(tfds.load("cifar10", data_dir=data_dir, batch_size=-1,
                                 download=data_dir is None))
  except DataError as e:
    raise DataError(f"{e}. {hint}") from None
  except Exception as e:
    raise DataError(
        "could not load CIFAR-10 with tfds (the default source downloads it; "
        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). {hint}"
    ) from None
  tr, te = ds["train"], ds["test"]
  return Cifar(tr["image"].astype(np.uint8), tr["label"].astype(np.int32),
               te["image"].astype(np.uint8), te["label"].astype(np.int32),
               source="CIFAR-10 (tfds)")


CIFAR_HOST = "www.cs.toronto.edu"  # where tfds downloads CIFAR-10 from


def _check_online(timeout: float = 5.0) -> None:
  """Fail in seconds, not after minutes of tfds download retries."""
  import socket
  try:
    socket.create_connection((CIFAR_HOST, 443), timeout=timeout).close()
  except OSError as e:
    raise DataError("no --data_dir was given, so CIFAR-10 would be downloaded "
                    f"with tfds, but {CIFAR_HOST} cannot be reached ({e})") from None
