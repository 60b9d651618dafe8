"""One job over several processes (TPU pod hosts, GPU nodes), on JAX's own
multi-controller runtime.

Every process runs the same program on its own devices; `join()` (before
anything else touches JAX) connects them with `jax.distributed.initialize`,
after which `jax.devices()` lists every process's devices and parallel.py
builds one mesh over them. This module knows nothing of meshes: it owns
joining and the one question the writers ask, `is_primary()` (files,
tables and figures come from process 0 only; checkpoints are orbax's,
which every process calls). No JAX import at module level: report.py and
plots.py ask `is_primary()` and import no JAX.

A process that dies (kill -9, OOM, preemption) never hangs the job: a peer
in a collective with it sees gloo's closed connection at once (`lost_peer`;
the entry point prints one line and exits), and failing that the dead
process's heartbeats stop and the coordination service terminates every
other process (SIGABRT, JAX's "Terminating process because the JAX
distributed service detected fatal errors") within `heartbeat_timeout`
seconds. Rerunning every process with the same command resumes from the
last checkpoint.
"""

from __future__ import annotations

import dataclasses

_STATE = {"process_index": 0, "process_count": 1}

AUTO = "auto"
HEARTBEAT_TIMEOUT_S = 60  # JAX's default is 100


class DistributedError(ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class Join:
  """How this process joins a job; None fields: a single process."""
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  auto: bool = False  # jax.distributed.initialize() detects TPU VM / SLURM itself
  heartbeat_timeout: int = HEARTBEAT_TIMEOUT_S

  @property
  def explicit(self) -> bool:
    return any(v is not None for v in (self.coordinator_address, self.num_processes,
                                       self.process_id))

  def check(self) -> None:
    if self.heartbeat_timeout < 1:
      raise DistributedError(f"--heartbeat_timeout {self.heartbeat_timeout}: need >= 1 s")
    if self.auto and self.explicit:
      raise DistributedError("--distributed auto detects the job itself; drop "
                             "--coordinator_address / --num_processes / --process_id")
    if not self.explicit:
      return
    missing = [f"--{k}" for k in ("coordinator_address", "num_processes", "process_id")
               if getattr(self, k) is None]
    if missing:
      raise DistributedError(f"a multi-process job needs {', '.join(missing)} as well")
    host, _, port = self.coordinator_address.rpartition(":")
    if not host or not port.isdigit():
      raise DistributedError(f"--coordinator_address {self.coordinator_address!r}: "
                             "expected HOST:PORT")
    if self.num_processes < 1 or not 0 <= self.process_id < self.num_processes:
      raise DistributedError(f"--process_id {self.process_id} with --num_processes "
                             f"{self.num_processes}: need 0 <= id < num_processes")

  @property
  def wanted(self) -> bool:
    return self.auto or (self.explicit and self.num_processes > 1)


def join(j: Join) -> None:
  """Connect to the job's other processes (a no-op for a single process).
  Must run before the first JAX computation; the CPU backend then talks to
  the other processes through gloo."""
  j.check()
  if not j.wanted:
    return
  import jax
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kw = dict(heartbeat_timeout_seconds=j.heartbeat_timeout)
  try:
    if j.auto:
      jax.distributed.initialize(**kw)
    else:
      jax.distributed.initialize(j.coordinator_address, j.num_processes, j.process_id, **kw)
  except (RuntimeError, ValueError) as e:  # e.g. no coordinator within the timeout
    first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    raise DistributedError(f"could not join the job: {first}") from None
  _STATE.update(process_index=jax.process_index(), process_count=jax.process_count())


def check_job(workdir, command: dict) -> None:
  """Refuse a job whose processes would not run one program: another
  command on some process (other config, methods, seeds), or a workdir they
  do not share (each would find other checkpoints, run other phases and
  meet the others in other collectives). Process 0 leaves a token in the
  workdir; every process must read it back. `command`: what must agree."""
  if process_count() == 1:
    return
  import hashlib
  import json
  import secrets
  from pathlib import Path

  import numpy as np
  from jax.experimental import multihost_utils as mh
  digest = hashlib.sha256(json.dumps(command, sort_keys=True, default=str).encode())
  digests = np.asarray(mh.process_allgather(np.frombuffer(digest.digest()[:8], np.uint8)))
  other = [i for i in range(process_count()) if not np.array_equal(digests[i], digests[0])]
  if other:
    raise DistributedError(
        f"process(es) {', '.join(map(str, other))} run another command than process 0 "
        "(config, methods, seeds, workdir or data dir differ); every process of a "
        "job runs the same command but for --process_id")
  workdir = Path(workdir)
  token = mh.broadcast_one_to_all(np.frombuffer(secrets.token_bytes(8), np.uint8))
  mark = workdir / f".job_{bytes(np.asarray(token)).hex()}"
  created = is_primary() and not workdir.exists()
  if is_primary():
    workdir.mkdir(parents=True, exist_ok=True)
    mark.touch()
  mh.sync_global_devices("ugradsl_workdir_marked")
  seen = np.ravel(mh.process_allgather(np.array([mark.exists()])))
  mh.sync_global_devices("ugradsl_workdir_checked")
  if is_primary():
    mark.unlink()
  if not np.all(seen):
    if created:
      workdir.rmdir()  # leave nothing behind a refused job
    lost = [i for i, ok in enumerate(seen) if not ok]
    raise DistributedError(
        f"--workdir {workdir}: process(es) {', '.join(map(str, lost))} do not see "
        "what process 0 writes there; a multi-process job needs one shared "
        "directory (a network file system) for every process")


def lost_peer(e: BaseException) -> bool:
  """Whether `e` is a collective that failed because a peer went away (gloo
  notices a closed connection before the heartbeat timeout does)."""
  import jax
  msg = str(e)
  return isinstance(e, jax.errors.JaxRuntimeError) and any(
      s in msg for s in ("Connection closed by peer", "Connection reset by peer",
                         "Gloo", "heartbeat", "coordination service"))


def exit_now(code: int) -> None:
  """Leave without JAX's shutdown barrier, which would hold an erring process
  until every other one arrived (they are waiting for it in a collective):
  its heartbeats stop and the coordination service stops the others."""
  import os
  import sys
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


def process_index() -> int:
  return _STATE["process_index"]


def process_count() -> int:
  return _STATE["process_count"]


def is_primary() -> bool:
  """Whether this process writes results, tables, figures, histories."""
  return _STATE["process_index"] == 0
