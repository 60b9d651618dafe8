"""Host-device request: set before JAX starts, never overriding the user."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT
from ugradsl_jax import host_devices as H


@pytest.mark.parametrize("cpus,n", [(1, 1), (2, 2), (3, 2), (6, 4), (8, 8), (64, 8), (0, 1)])
def test_default_count_is_a_power_of_two_within_the_cores(cpus, n):
  assert H.default_count(cpus) == n


def test_request_adds_the_flag_and_keeps_other_flags():
  env = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false", H.ENV: "2"}
  assert H.request(env) == 2
  assert env["XLA_FLAGS"] == f"--xla_cpu_enable_fast_math=false {H.FLAG}=2"


def test_request_never_overrides_a_count_the_user_set():
  env = {"XLA_FLAGS": f"{H.FLAG}=4", H.ENV: "2"}
  assert H.request(env) is None
  assert env["XLA_FLAGS"] == f"{H.FLAG}=4"


def test_one_device_leaves_xla_flags_alone():
  env = {H.ENV: "1"}
  assert H.request(env) is None and "XLA_FLAGS" not in env


@pytest.mark.parametrize("bad", ["x", "0", "-2"])
def test_bad_count_is_an_error(bad):
  with pytest.raises(ValueError, match=H.ENV):
    H.request({H.ENV: bad})


def _fresh_python(code, **env_extra):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", **env_extra)
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=120)


def test_the_experiment_module_splits_the_host_before_jax_starts():
  code = "import experiments.cifar_random_forget, jax; print(jax.device_count())"
  p = _fresh_python(code, **{H.ENV: "2"})
  assert p.returncode == 0, p.stderr[-2000:]
  assert p.stdout.split() == ["2"]
  # Negative control: without the request JAX sees one host device.
  p = _fresh_python("import jax; print(jax.device_count())", **{H.ENV: "2"})
  assert p.stdout.split() == ["1"]


def test_bad_count_gives_one_error_line(tmp_path):
  code = ("import sys; from experiments import cifar_random_forget as e; "
          f"sys.exit(e.main(['--preset', 'smoke', '--workdir', {str(tmp_path / 'w')!r}]))")
  p = _fresh_python(code, **{H.ENV: "many"})
  assert p.returncode == 2 and "Traceback" not in p.stderr
  assert [ln for ln in p.stderr.splitlines() if ln.strip()] == [
      f"error: ${H.ENV}='many': expected a positive integer"]
  assert not (tmp_path / "w").exists()
