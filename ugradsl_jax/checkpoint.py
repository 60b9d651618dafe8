"""Orbax checkpoints, one directory per model, with a config/split match check.

Layout of a phase directory (e.g. workdir/original/):
  <step>/state, <step>/meta   orbax checkpoints (atomically finalised by orbax)
  outcome.json                written last, atomically: the phase is done
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from . import distributed, files


OUTCOME = "outcome.json"  # a phase's last file: its presence means finished


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be used as-is; the message says why and what to do."""


def write_json(path: Path, obj) -> None:
  """Write-then-rename, so a kill never leaves a half-written file. In a
  multi-process job only process 0 writes (the others pass the same obj)."""
  if not distributed.is_primary():
    return
  # Insertion order kept: results list Retrain first, then methods as run.
  files.write_text(path, json.dumps(obj, indent=2, default=_jsonable))


def read_json(path: Path):
  try:
    return json.loads(Path(path).read_text())
  except (OSError, ValueError) as e:
    raise CheckpointError(f"{path}: unreadable ({e}); delete it or use another "
                          "--workdir") from None


def _jsonable(x):
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (np.floating,)):
    return float(x)
  if isinstance(x, np.ndarray):
    return x.tolist()
  if isinstance(x, (tuple, set)):
    return list(x)
  return str(x)


def canonical(obj):
  """JSON round trip, so tuples/lists and numpy scalars compare equal."""
  return json.loads(json.dumps(obj, sort_keys=True, default=_jsonable))


def diff_keys(saved: dict, current: dict, prefix="") -> list[str]:
  out = []
  for k in sorted(set(saved) | set(current)):
    a, b = saved.get(k, "<absent>"), current.get(k, "<absent>")
    if isinstance(a, dict) and isinstance(b, dict):
      out += diff_keys(a, b, f"{prefix}{k}.")
    elif a != b:
      out.append(f"{prefix}{k}: saved {a!r}, now {b!r}")
  return out


class PhaseStore:
  """Checkpoints of one model (a training phase or an unlearning method).

  `meta` is everything the result depends on (config, split fingerprint, data
  source, model). A directory made with other meta is refused, never reused.
  """

  def __init__(self, directory: Path, meta: dict, max_to_keep: int = 2):
    self.dir = Path(directory).absolute()
    self.meta = canonical(meta)
    self.dir.mkdir(parents=True, exist_ok=True)
    self._mngr = ocp.CheckpointManager(
        self.dir, options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True,
            enable_async_checkpointing=False))
    self._check_meta()

  @property
  def outcome_path(self) -> Path:
    return self.dir / OUTCOME

  def _saved_meta(self):
    step = self._mngr.latest_step()
    if step is not None:
      try:
        return self._mngr.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore()))["meta"]
      except Exception as e:
        raise CheckpointError(f"checkpoint {self.dir}/{step} is corrupted "
                              f"({type(e).__name__}); delete {self.dir} or "
                              "use another --workdir") from None
    if self.outcome_path.exists():
      return read_json(self.outcome_path).get("meta")
    return None

  def _check_meta(self):
    saved = self._saved_meta()
    if saved is not None and saved != self.meta:
      diffs = diff_keys(saved, self.meta)
      raise CheckpointError(
          f"{self.dir} was made with another config ({'; '.join(diffs[:3])}"
          f"{' ...' if len(diffs) > 3 else ''}); use another --workdir or "
          "delete that directory")

  def latest_step(self) -> int | None:
    return self._mngr.latest_step()

  def outcome(self) -> dict | None:
    return read_json(self.outcome_path) if self.outcome_path.exists() else None

  def save(self, step: int, state) -> None:
    """Synchronous: a returned save is on disk (the outcome file, written by
    finish(), is what marks a phase as done)."""
    self._mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(self.meta)),
        force=True)
    self._mngr.wait_until_finished()

  def restore(self, abstract_state, step: int | None = None):
    step = self._mngr.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"{self.dir} holds no checkpoint")
    try:
      out = self._mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state)))
    except Exception as e:
      raise CheckpointError(
          f"checkpoint {self.dir}/{step} is corrupted or from another model "
          f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''});"
          f" delete {self.dir} or use another --workdir") from None
    return out["state"]

  def finish(self, outcome: dict) -> None:
    write_json(self.outcome_path, {**outcome, "meta": self.meta})

  def close(self):
    self._mngr.close()


def abstract_of(tree):
  """Shape/dtype skeleton for StandardRestore, on the default device."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def read_variables(path) -> tuple[dict, dict | None]:
  """({"params", "batch_stats"}, the phase's outcome.json or None) from

  - a finished phase directory (a workdir's original/ or retrain/, with its
    outcome.json): its last step;
  - an Orbax checkpoint of a pytree holding "params" (and "batch_stats"),
    or of the params alone.

  The restored arrays are host numpy arrays; the caller checks that their
  tree fits its model."""
  d = Path(path)
  if not d.is_dir():
    raise CheckpointError(f"{d}: no such checkpoint directory")
  steps = sorted(int(p.name) for p in d.iterdir() if p.name.isdigit() and p.is_dir())
  outcome = read_json(d / OUTCOME) if (d / OUTCOME).exists() else None
  phase = bool(steps) and (d / str(steps[-1]) / "state").exists()
  if phase and outcome is None:
    raise CheckpointError(f"{d}: an unfinished phase (no outcome.json); finish its run "
                          "first, or point at a finished one")
  try:
    if phase:
      with ocp.CheckpointManager(d.absolute()) as mngr:
        step = mngr.latest_step()
        tree = mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore()))["state"]
    else:
      tree = ocp.StandardCheckpointer().restore(d.absolute())
  except Exception as e:  # orbax raises many kinds; the message says which
    raise CheckpointError(f"{d}: not a readable Orbax checkpoint ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:160] if str(e) else ''})") from None
  tree = jax.tree.map(np.asarray, tree)
  if isinstance(tree, dict) and "params" in tree:
    variables = {"params": tree["params"], "batch_stats": tree.get("batch_stats") or {}}
  else:
    variables = {"params": tree, "batch_stats": {}}
  return variables, outcome


def tree_mismatch(got, want, prefix: str = "") -> str | None:
  """The first path where `got` differs from `want` in keys or shapes."""
  if isinstance(want, dict):
    if not isinstance(got, dict):
      return f"{prefix or '<root>'}: a {type(got).__name__} where the model has a dict"
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
      return (f"{prefix or '<root>'}: " + (f"missing {missing[:3]} " if missing else "")
              + (f"unexpected {extra[:3]}" if extra else "")).strip()
    for k in want:
      bad = tree_mismatch(got[k], want[k], f"{prefix}/{k}" if prefix else str(k))
      if bad:
        return bad
    return None
  if np.shape(got) != np.shape(want):
    return f"{prefix}: shape {tuple(np.shape(got))}, the model's {tuple(np.shape(want))}"
  return None
