"""One run at a time in a workdir: an advisory lock that dies with its process.

Two runs started on one workdir would save the same checkpoint steps and
collide inside Orbax's rename. The lock is an flock on the empty file
`.lock`, which the kernel releases when the process ends, however it ends
(a kill included), so a stale file never blocks a rerun; the file itself is
never rewritten, so a refused run leaves the workdir as it was. In a multi-process job only process 0 takes it: the job's
processes share the workdir by design.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from . import distributed

LOCK_FILE = ".lock"
_held: dict[Path, int] = {}  # this process's locks: path -> open descriptor


class WorkdirBusy(RuntimeError):
  """Another live process holds the workdir."""


def lock(workdir) -> None:
  """Take `workdir`'s lock for the rest of this process (a no-op when this
  process holds it already), or raise WorkdirBusy naming the holder."""
  if not distributed.is_primary():
    return
  d = Path(workdir).absolute()
  path = d / LOCK_FILE
  if path in _held:
    return
  d.mkdir(parents=True, exist_ok=True)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    os.close(fd)
    if e.errno in (errno.EAGAIN, errno.EACCES):
      raise WorkdirBusy(f"{d} is in use by another run; wait for it to finish or use "
                        "another --workdir") from None
    raise
  _held[path] = fd


def unlock(workdir) -> None:
  path = Path(workdir).absolute() / LOCK_FILE
  fd = _held.pop(path, None)
  if fd is not None:
    os.close(fd)  # closing the descriptor releases the flock
