"""The workdir lock: a second run is refused in one line while the first
lives, and a killed holder leaves nothing that blocks a rerun."""

import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from ugradsl_jax import workdir

HOLD = ("import sys, time; from ugradsl_jax import workdir; workdir.lock(sys.argv[1]); "
        "print('held', flush=True); time.sleep(60)")
TRY = ("import sys; from ugradsl_jax import workdir\n"
       "try:\n  workdir.lock(sys.argv[1]); print('locked')\n"
       "except workdir.WorkdirBusy as e:\n  print('busy:', e)")


def _try(path) -> str:
  return subprocess.run([sys.executable, "-c", TRY, str(path)], cwd=ROOT, text=True,
                        capture_output=True, timeout=60).stdout.strip()


def test_second_process_is_refused_until_the_holder_dies(tmp_path):
  holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    out = _try(tmp_path)
    assert out.startswith("busy:") and "in use by another run" in out and "--workdir" in out
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  # The kernel released the flock with the process; the stale file is harmless.
  assert (tmp_path / workdir.LOCK_FILE).exists()
  assert _try(tmp_path) == "locked"


def test_reentrant_in_one_process_and_released_by_unlock(tmp_path):
  workdir.lock(tmp_path)
  workdir.lock(tmp_path)  # the same process: no self-deadlock
  assert _try(tmp_path).startswith("busy:")
  workdir.unlock(tmp_path)
  deadline = time.time() + 5
  while _try(tmp_path) != "locked":
    if time.time() > deadline:
      pytest.fail("the lock was not released by unlock()")


def test_the_command_line_refuses_a_busy_workdir_in_one_line(shared_tar, tmp_path, capsys):
  from conftest import smoke_args
  from experiments import cifar_random_forget
  wd = tmp_path / "wd"
  holder = subprocess.Popen([sys.executable, "-c", HOLD, str(wd)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    rc = cifar_random_forget.main(smoke_args(shared_tar, wd, "ga"))
    err = capsys.readouterr().err.strip().splitlines()
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert rc == 2 and len(err) == 1 and "in use by another run" in err[0], err
  assert sorted(p.name for p in wd.iterdir()) == [workdir.LOCK_FILE]  # nothing written


def test_a_workdir_of_another_protocol_version_is_refused(few_run, cifar, tmp_path, monkeypatch):
  """Phases computed under another protocol version (how batches, RL's loop
  and the l1 schedule work) are refused with the difference named, and the
  workdir is left as it was; the same version reuses them."""
  import shutil
  from ugradsl_jax import checkpoint, configs, experiment, methods, phases, protocol
  wd = tmp_path / "wd"
  shutil.copytree(few_run / "original", wd / "original")
  before = sorted(p.relative_to(wd) for p in wd.rglob("*"))
  exp = protocol.setup(configs.get("smoke"), cifar)
  runner = phases.Runner(wd, progress=False)
  v = experiment.PROTOCOL_VERSION
  monkeypatch.setattr(experiment, "PROTOCOL_VERSION", v - 1)
  with pytest.raises(checkpoint.CheckpointError, match=f"protocol: saved {v}, now {v - 1}"):
    phases.run(exp, runner, methods.original(exp))
  assert sorted(p.relative_to(wd) for p in wd.rglob("*")) == before
  monkeypatch.undo()
  # Negative control: under the version it was saved with, it is reused as is.
  assert phases.run(exp, runner, methods.original(exp)).outcome
  assert sorted(p.relative_to(wd) for p in wd.rglob("*") if "scores" not in p.name) == \
      [p for p in before if "scores" not in p.name]
