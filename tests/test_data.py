"""Loaders on the shared CIFAR-10 copy: tar.gz, image folder, and their errors."""

import tarfile

import numpy as np
import pytest

from ugradsl_jax import data as D


def test_tar_loader_shapes_and_labels(cifar):
  assert cifar.train_x.shape == (50000, 32, 32, 3) and cifar.train_x.dtype == np.uint8
  assert cifar.test_x.shape == (10000, 32, 32, 3)
  assert np.bincount(cifar.train_y).tolist() == [5000] * 10
  assert np.bincount(cifar.test_y).tolist() == [1000] * 10
  assert "JPEG copy" in cifar.source
  # Channel means of the JPEG copy (data README: ~0.485/0.477/0.439).
  np.testing.assert_allclose(cifar.train_x[::10].mean((0, 1, 2)) / 255,
                             [0.485, 0.477, 0.439], atol=0.02)


def _subset_tree(shared_tar, root, per_class=3):
  """Extract a few images per class of each split; returns their member names."""
  names = []
  with tarfile.open(shared_tar) as tar:
    seen = {}
    for m in tar:
      if not m.isfile():
        continue
      split, cls, _ = m.name.split("/")[-3:]
      if seen.get((split, cls), 0) < per_class:
        seen[(split, cls)] = seen.get((split, cls), 0) + 1
        tar.extract(m, root, filter="data")
        names.append(m.name)
  return names


def test_folder_loader_matches_tar_loader(shared_tar, cifar, tmp_path):
  _subset_tree(shared_tar, tmp_path)
  small = D.load(str(tmp_path))
  assert small.train_x.shape == (30, 32, 32, 3) and small.test_x.shape == (30, 32, 32, 3)
  assert small.train_y.tolist() == np.repeat(np.arange(10), 3).tolist()
  # Files 0000..0002 of each class are the first three of that class in the
  # full (sorted) tar load: a second code path gives the same pixels.
  full_idx = np.concatenate([np.flatnonzero(cifar.train_y == c)[:3] for c in range(10)])
  np.testing.assert_array_equal(small.train_x, cifar.train_x[full_idx])


def test_tar_of_a_small_tree(shared_tar, tmp_path):
  _subset_tree(shared_tar, tmp_path / "tree", per_class=2)
  tgz = tmp_path / "small.tar.gz"
  with tarfile.open(tgz, "w:gz") as t:
    t.add(tmp_path / "tree" / "train", "train")
    t.add(tmp_path / "tree" / "test", "test")
  small = D._load_tar(tgz)
  assert small.train_x.shape == (20, 32, 32, 3)


def test_truncated_tar_is_a_clear_error(shared_tar, tmp_path):
  bad = tmp_path / "cut.tar.gz"
  bad.write_bytes(shared_tar.read_bytes()[:200_000])
  with pytest.raises(D.DataError, match="corrupted or truncated"):
    D.load(str(bad))


def test_wrong_class_count(shared_tar, tmp_path):
  _subset_tree(shared_tar, tmp_path, per_class=1)
  import shutil
  shutil.rmtree(tmp_path / "train" / "truck")
  with pytest.raises(D.DataError, match="9 class folders, expected 10"):
    D.load(str(tmp_path))


def test_unreadable_image(shared_tar, tmp_path):
  _subset_tree(shared_tar, tmp_path, per_class=1)
  next((tmp_path / "train" / "cat").glob("*.jpg")).write_bytes(b"not a jpeg")
  with pytest.raises(D.DataError, match="unreadable image"):
    D.load(str(tmp_path))


@pytest.mark.parametrize("make", ["missing", "empty_dir", "text_file"])
def test_bad_paths(tmp_path, make):
  p = tmp_path / "x"
  if make == "empty_dir":
    p.mkdir()
  elif make == "text_file":
    p = tmp_path / "x.txt"
    p.write_text("hi")
  with pytest.raises(D.DataError, match="--data_dir"):
    D.load(str(p))


def test_no_internet_and_no_data_dir_says_how_to_point_at_local_data(tmp_path, monkeypatch):
  import socket
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))  # nothing prepared there
  monkeypatch.delenv(D.DATA_ENV, raising=False)

  def offline(*a, **k):
    raise OSError("Name or service not known")
  monkeypatch.setattr(socket, "create_connection", offline)
  with pytest.raises(D.DataError, match="cannot be reached.*pass --data_dir"):
    D.load(None)
