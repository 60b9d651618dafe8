"""JAX's persistent compilation cache for the entry points, on by default.

A table compiles one step program per method and phase (3-6 s each on the
2-core CPU at the quick size, 10-20 s on a GPU at the paper's); a rerun, the
next seed or the next table of the same shapes reads them from disk instead
of compiling again. Where: `--compile_cache DIR`, else $UGRADSL_XLA_CACHE,
else a JAX_COMPILATION_CACHE_DIR the user set, else
~/.cache/ugradsl_jax/xla. Off: `--compile_cache off` (or UGRADSL_XLA_CACHE=off).
The cache changes no result: XLA keys a program by everything it depends on
(the computation, the compiler version and its flags, the devices).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "UGRADSL_XLA_CACHE"
OFF = ("off", "none", "0", "false")


def resolve(choice: str | None = None) -> str | None:
  """The cache folder the entry point will use, or None when switched off."""
  choice = choice or os.environ.get(ENV) or os.environ.get("JAX_COMPILATION_CACHE_DIR")
  if choice is not None and choice.lower() in OFF:
    return None
  return str(Path(choice or Path.home() / ".cache" / "ugradsl_jax" / "xla").expanduser())


def enable(choice: str | None = None) -> str | None:
  """Point JAX at the cache (before the first compilation); returns the folder."""
  import jax
  path = resolve(choice)
  if path is None:
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", path)
  # Cache every step program; the eval and init programs that compile in
  # well under a second are not worth a file (unless the user said otherwise).
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  return path
