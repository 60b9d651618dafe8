"""A phase's metric history: one JSON line per logged step, in its directory.

The file is cut back to the checkpoint a phase resumes from, so that after
a crash it holds each step once and, the steps being deterministic, the same
rows an uninterrupted run writes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import distributed, files

FILE = "history.jsonl"


def _clean(v):
  # NaN/Inf (a diverging step) as null: strict JSON, readable anywhere.
  if isinstance(v, float) and not math.isfinite(v):
    return None
  if isinstance(v, list):
    return [_clean(x) for x in v]
  return v


def clean(row: dict) -> dict:
  """The row as strict JSON holds it (non-finite numbers as None)."""
  return {k: _clean(v) for k, v in row.items()}


def read(path: Path) -> list[dict]:
  """Rows of a history file; [] when there is none. A torn last line (a
  kill mid-write) is dropped."""
  path = Path(path)
  if not path.exists():
    return []
  rows = []
  for line in path.read_text().splitlines():
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      break
  return rows


class History:
  """Rows in memory, appended to `path` (None: memory only) as they come."""

  def __init__(self, path: Path | None, resume_step: int = 0):
    self.path = None if path is None else Path(path)
    self.rows = [] if self.path is None else \
        [r for r in read(self.path) if r["step"] <= resume_step]
    if not distributed.is_primary():  # process 0 writes the job's history
      self.path = None
    if self.path is not None:
      files.write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))

  def append(self, row: dict) -> None:
    row = clean(row)
    self.rows.append(row)
    if self.path is not None:
      with self.path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def of_phases(workdir: Path, names) -> dict[str, list[dict]]:
  """The histories of the named phases under `workdir` that have one, a
  sweep's left out (its K runs log K values a row: not one curve)."""
  hists = {n: read(Path(workdir) / n / FILE) for n in names}
  return {n: h for n, h in hists.items() if h and not isinstance(h[0].get("step"), list)}
