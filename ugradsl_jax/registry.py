"""Names that user code can add to: mixing rules and their hyper-parameters.

JAX-free, so that configs.validate can check a rule's name and its
hyper-parameters without importing JAX. mixing.register fills it; a plugin
module imported before the config is validated (the command line's
--import) adds its own rules the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping


@dataclasses.dataclass(frozen=True)
class MixEntry:
  fn: Callable
  hparams: Mapping[str, float]  # the rule's own hyper-parameters and their defaults


# The built-in rules' names, known before mixing.py (JAX) fills in their functions.
# Keys the paired step's hp carries already.
RESERVED = frozenset({"alpha", "p", "beta", "lr", "weight_decay", "total_steps", "l1"})

MIX_RULES: dict[str, MixEntry] = {n: MixEntry(None, {}) for n in ("weighted", "normalized",
                                                                  "pcgrad")}


def add_mix_rule(name: str, fn: Callable, hparams: Mapping[str, float] | None = None,
                 overwrite: bool = False) -> None:
  if not isinstance(name, str) or not name.isidentifier():
    raise ValueError(f"mixing rule name {name!r}: must be an identifier (letters, digits, _)")
  old = MIX_RULES.get(name)
  if old is not None and old.fn is not None and old.fn is not fn and not overwrite:
    raise ValueError(f"mixing rule {name!r} is registered already; pass overwrite=True "
                     "to replace it")
  hp = dict(hparams or {})
  taken = sorted(set(hp) & RESERVED)
  if taken:
    raise ValueError(f"mixing rule {name!r}: hyper-parameter names {', '.join(taken)} are "
                     "the method's own (hp already carries them)")
  for k, v in hp.items():
    if not isinstance(k, str) or not k.isidentifier():
      raise ValueError(f"mixing rule {name!r}: hyper-parameter name {k!r} must be an identifier")
    if not isinstance(v, (int, float)) or isinstance(v, bool):
      raise ValueError(f"mixing rule {name!r}: hyper-parameter {k} default {v!r} must be a number")
  MIX_RULES[name] = MixEntry(fn, {k: float(v) for k, v in hp.items()})


def mix_hparams(name: str, given: Mapping[str, float] | None = None,
                what: str = "mix_hparams") -> dict[str, float]:
  """The rule's hyper-parameters: its defaults with `given` on top. An
  unknown rule or key is a ValueError naming it and what is known."""
  if name not in MIX_RULES:
    raise ValueError(f"mixing rule {name!r}: unknown; known: {', '.join(MIX_RULES)} "
                     "(register one with ugradsl_jax.mixing.register)")
  known = MIX_RULES[name].hparams
  extra = sorted(set(given or {}) - set(known))
  if extra:
    takes = ", ".join(known) if known else "none"
    raise ValueError(f"{what}: rule {name!r} has no hyper-parameter "
                     f"{', '.join(extra)}; it takes: {takes}")
  out = dict(known)
  for k, v in (given or {}).items():
    if not isinstance(v, (int, float)) or isinstance(v, bool):
      raise ValueError(f"{what}: {k} {v!r} must be a number")
    out[k] = float(v)
  return out
