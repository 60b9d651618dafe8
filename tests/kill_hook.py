"""A plugin for the experiment commands (`--import kill_hook`, with tests/
on PYTHONPATH) that SIGKILLs the process at one point, so that tests can
check what a crash there leaves behind and how a rerun resumes.

$UGRADSL_KILL_AT names the point:
  "<phase>:<step>"   after that step of that phase (its checkpoint included)
  "eval:<phase>"     after scoring that phase, before its scores are saved
"""

import os
import signal

from ugradsl_jax import loop

ENV = "UGRADSL_KILL_AT"
ARGS = ["--import", "kill_hook"]


def env(at: str) -> dict:
  """The environment entries that arm the switch at `at` in a subprocess."""
  here = os.path.dirname(os.path.abspath(__file__))
  path = os.environ.get("PYTHONPATH")
  return {ENV: at, "PYTHONPATH": here if not path else f"{here}{os.pathsep}{path}"}


class KillAt:
  def __init__(self, spec: str):
    self.spec = spec

  def _kill(self, where: str) -> None:
    if where == self.spec:
      os.kill(os.getpid(), signal.SIGKILL)

  def stepped(self, phase, done):
    self._kill(f"{phase}:{done}")

  def scored(self, phase):
    self._kill(f"eval:{phase}")


if os.environ.get(ENV):
  loop.add_global_hook(KillAt(os.environ[ENV]))
