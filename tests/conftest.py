"""Four fake CPU devices for the data-parallel tests; set before JAX starts."""

import os
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
