"""UGradSL in JAX/Flax: machine unlearning with negatively smoothed labels.

  import ugradsl_jax as ug
  after = ug.unlearn(model, variables, (x_f, y_f), (x_r, y_r), method="ugradsl")
  scores = ug.evaluate(model, after, (x_f, y_f), (x_r, y_r), (x_t, y_t))

`unlearn` and `evaluate` (api.py) load JAX on first use, so that the
JAX-free modules (configs, report, host_devices) stay importable before
JAX starts.
"""

__version__ = "0.2.0"

__all__ = ["__version__", "unlearn", "evaluate", "recipe", "mixing", "methods", "configs",
           "METHODS"]

from .configs import METHODS  # noqa: E402  (JAX-free)


def __getattr__(name):
  # importlib, not `from . import`: that would ask this very hook first.
  import importlib
  if name in ("unlearn", "evaluate", "recipe"):
    return getattr(importlib.import_module(f"{__name__}.api"), name)
  if name in ("mixing", "methods"):
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module 'ugradsl_jax' has no attribute {name!r}")
