"""One data set in memory (`Dataset`), the error for data that cannot be
used, the on-disk cache of decoded arrays, and reading the archives data
sets come in. The loaders (datasets.py for images, text.py for 20
Newsgroups) build on this module and never on each other's internals.
"""

from __future__ import annotations

import dataclasses
import os
import tarfile
from pathlib import Path
from typing import Callable

import numpy as np

from . import files

CACHE_ENV = "UGRADSL_CACHE_DIR"


class DataError(ValueError):
  """Input data that cannot be used; the message names the problem."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str              # registry name, e.g. "cifar100"
  train_x: np.ndarray    # uint8 [N, H, W, C] (text: int32 token ids [N, L])
  train_y: np.ndarray    # int32 [N]
  test_x: np.ndarray
  test_y: np.ndarray
  class_names: tuple
  mean: tuple            # per channel, [0, 1] units; the model normalises
  std: tuple
  source: str            # human-readable, goes into results tables
  train_coarse: np.ndarray | None = None  # CIFAR-100 superclasses
  test_coarse: np.ndarray | None = None
  coarse_names: tuple | None = None
  vocab_size: int | None = None      # text: token ids are in [0, vocab_size)
  tokenizer_json: str | None = None  # text: the tokenizer, serialised

  @property
  def modality(self) -> str:
    return "text" if self.vocab_size is not None else "image"

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def input_shape(self) -> tuple:
    return tuple(self.train_x.shape[1:])

  def coarse(self) -> "Dataset":
    """The same images labelled by superclass (the sub-class scenario)."""
    if self.train_coarse is None:
      raise DataError(f"{self.name} has no coarse labels")
    return dataclasses.replace(
        self, train_y=self.train_coarse, test_y=self.test_coarse,
        class_names=self.coarse_names, train_coarse=None, test_coarse=None,
        coarse_names=None)


# --------------------------------------------------------------------------
# The cache of decoded arrays.

def cache_dir() -> Path:
  return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "ugradsl_jax"))


_TUPLES = ("class_names", "mean", "std", "coarse_names")


def _to_arrays(data: Dataset) -> dict:
  out = {}
  for f in dataclasses.fields(Dataset):
    v = getattr(data, f.name)
    if v is not None:
      out[f.name] = np.array(v) if f.name in _TUPLES else v
  return out


def _from_arrays(z) -> Dataset:
  kw = {}
  for f in dataclasses.fields(Dataset):
    if f.name not in z.files:
      continue
    v = z[f.name]
    if f.name in _TUPLES:
      v = tuple(v.tolist())
    elif v.ndim == 0:  # name, source, vocab_size, tokenizer_json
      v = v.item()
    kw[f.name] = v
  return Dataset(**kw)


def cached(key: str, make: Callable[[], Dataset]) -> Dataset:
  """The Dataset cached under `key` (which must name everything its arrays
  depend on), else make() saved there. A broken cache file is rebuilt; a
  read-only cache folder means no cache."""
  path = cache_dir() / f"{key}.npz"
  if path.exists():
    try:
      with np.load(path, allow_pickle=False) as z:
        return _from_arrays(z)
    except Exception:  # a broken cache is just rebuilt
      pass
  data = make()
  try:
    files.write_npz(path, _to_arrays(data))
  except OSError:
    pass
  return data


# --------------------------------------------------------------------------
# Archives.

def split_class_files(path: Path, accept: Callable[[str], bool] = lambda name: True):
  """[(split, class folder, file name, bytes)] of every `[root/]split/class/file`
  in a .tar / .tar.gz whose split is train or test and whose file name
  `accept`s."""
  items = []
  try:
    with tarfile.open(path) as tar:
      for m in tar:
        parts = Path(m.name).parts
        if m.isfile() and len(parts) >= 3 and parts[-3] in ("train", "test") \
            and accept(parts[-1]):
          items.append((parts[-3], parts[-2], parts[-1], tar.extractfile(m).read()))
  except Exception as e:  # tarfile, gzip, zlib and EOF errors all mean "broken"
    raise DataError(f"--data_dir {path}: corrupted or truncated archive "
                    f"({type(e).__name__}: {e})") from None
  return items


def check_online(host: str | None, title: str, timeout: float = 5.0) -> None:
  """Fail in seconds, not after minutes of download retries."""
  if host is None:
    return
  import socket
  try:
    socket.create_connection((host, 443), timeout=timeout).close()
  except OSError as e:
    raise DataError(f"no --data_dir was given, so {title} would be downloaded, "
                    f"but {host} cannot be reached ({e})") from None
