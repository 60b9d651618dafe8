"""Split the host CPU into several XLA devices, before JAX starts.

XLA:CPU keeps two cores busier with two half-batches side by side than with
one batch of small convolutions: on the 2-core development machine the
quick preset's width-8 ResNet-18 trains about 1.1x faster data-parallel over
two host devices (median 1.14x; benchmarks/README.md, "host_devices"). Entry points
call `request()` before anything imports JAX. It never overrides a device
count already in XLA_FLAGS, and it changes nothing on a GPU or TPU, where the
accelerators stay the default devices. No JAX import here, on purpose.
"""

from __future__ import annotations

import os

FLAG = "--xla_force_host_platform_device_count"
ENV = "UGRADSL_CPU_DEVICES"  # e.g. 1 to keep one host device
MAX_DEVICES = 8


def default_count(cpus: int | None = None) -> int:
  """The largest power of two <= min(cpus, 8): batch sizes (powers of two)
  must divide by the device count."""
  cpus = os.cpu_count() if cpus is None else cpus
  n = 1
  while n * 2 <= min(cpus or 1, MAX_DEVICES):
    n *= 2
  return n


def request(environ=None) -> int | None:
  """Adds FLAG=n to XLA_FLAGS unless a count is set there already.

  Returns the count added, or None when XLA_FLAGS was left alone. Has no
  effect once JAX has initialised its CPU backend.
  """
  env = os.environ if environ is None else environ
  flags = env.get("XLA_FLAGS", "")
  if FLAG in flags:
    return None
  raw = env.get(ENV, "")
  try:
    n = int(raw) if raw else default_count()
  except ValueError:
    n = 0
  if n < 1:
    raise ValueError(f"${ENV}={raw!r}: expected a positive integer")
  if n == 1:
    return None
  env["XLA_FLAGS"] = f"{flags} {FLAG}={n}".strip()
  return n
