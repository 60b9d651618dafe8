"""Four fake CPU devices for the data-parallel tests; set before JAX starts."""

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The end-to-end tests start many processes that compile the same small steps;
# JAX's persistent cache (inherited by subprocesses) compiles each only once.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(Path(os.environ.get("TMPDIR", "/tmp")) / "ugradsl_jax_test_xla_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_TAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def shared_tar():
  if not SHARED_TAR.exists():
    pytest.skip(f"{SHARED_TAR} is absent (the offline CIFAR-10 copy lives in ../shared)")
  return SHARED_TAR


@pytest.fixture(scope="session")
def cifar(shared_tar):
  from ugradsl_jax import datasets
  return datasets.load("cifar10", str(shared_tar))


def tiny_resnet(axis_name=None):
  """The smoke preset's CIFAR-10 model (ResNet-18 family at its tiny size)."""
  from ugradsl_jax import models
  return models.build("resnet18", num_classes=10, mean=models.CIFAR_MEAN,
                      std=models.CIFAR_STD, width=4, tiny=True, axis_name=axis_name)


# The end-to-end tests run the experiment as a user would, in a subprocess.
FEW = "ga,ugradsl_plus"  # the resume tests use fewer methods to stay fast


def cli(args, env_extra=None, check=True):
  env = {**os.environ, **(env_extra or {})}
  p = subprocess.run([sys.executable, "-m", "experiments.cifar_random_forget", *args],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  if check and p.returncode != 0:
    raise AssertionError(f"exit {p.returncode}\n{p.stderr[-3000:]}")
  return p


def smoke_args(tar, workdir, methods="all", *extra):
  return ["--preset", "smoke", "--data_dir", str(tar), "--workdir", str(workdir),
          "--methods", methods, "--no_progress", *extra]


RESULT_FILES = ("results.json", "results.md", "results.png", "curves.png")


def from_few_run(few_run, wd, drop=(), files=RESULT_FILES):
  """A copy of few_run at `wd` without the phases in `drop` and without
  `files`: the original model and Retrain reused, as a rerun reuses them."""
  shutil.copytree(few_run, wd)
  for name in drop:
    shutil.rmtree(wd / name)
  for f in files:
    (wd / f).unlink()
  return wd


@pytest.fixture(scope="session")
def few_run(shared_tar, tmp_path_factory):
  """FEW on one device (the smoke preset's --parallel none), seed 1: the
  reference of the resume, parallel-mode and multi-process tests, and the
  original model and Retrain they reuse. Read-only to the tests (they copy
  it). Under pytest-xdist the workers share one run: the first to need it
  makes it, under a lock, and the others wait for it."""
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # common to every worker of this session
  wd, done = base / "few_shared", base / "few_shared.done"
  with open(base / "few_shared.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.exists():
      shutil.rmtree(wd, ignore_errors=True)  # a worker that failed midway
      cli(smoke_args(shared_tar, wd, FEW))
      done.touch()
  return wd
