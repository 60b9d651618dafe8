"""Writing files so that a kill never leaves a half-written one.

Every file the library writes beside checkpoints (results, scores, split,
history, caches) goes through `atomic`: the content goes to a temporary
name in the same folder, then one rename puts it in place.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic(path, suffix: str = ""):
  """Yields a temporary path beside `path`; on a clean exit it is renamed to
  `path`, on an error removed. `suffix` keeps an extension that a writer
  insists on (np.savez appends .npz to a name without it)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)


def write_text(path, text: str) -> None:
  with atomic(path) as tmp:
    tmp.write_text(text)


def write_npz(path, arrays: dict) -> None:
  with atomic(path, ".npz") as tmp:
    np.savez(tmp, **arrays)
