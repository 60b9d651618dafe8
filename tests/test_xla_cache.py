"""The entry points' persistent compilation cache: where it goes, the off
switch, and that a second process reads what the first one wrote."""

import os
import subprocess
import sys

from conftest import ROOT
from ugradsl_jax import xla_cache


def test_resolve_order_and_off_switch(monkeypatch, tmp_path):
  for var in (xla_cache.ENV, "JAX_COMPILATION_CACHE_DIR"):
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setenv("HOME", str(tmp_path))
  assert xla_cache.resolve() == str(tmp_path / ".cache" / "ugradsl_jax" / "xla")
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/a")
  assert xla_cache.resolve() == "/a"
  monkeypatch.setenv(xla_cache.ENV, "/b")
  assert xla_cache.resolve() == "/b"
  assert xla_cache.resolve("/c") == "/c"  # the flag wins
  assert xla_cache.resolve("off") is None and xla_cache.resolve("OFF") is None
  monkeypatch.setenv(xla_cache.ENV, "off")
  assert xla_cache.resolve() is None


_PROG = """
import sys, time
from ugradsl_jax import xla_cache
xla_cache.enable(sys.argv[1])
import jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())
t = time.perf_counter(); f.lower(jnp.ones((64, 64))).compile(); print(time.perf_counter() - t)
"""


def _compile_once(where, tmp_path):
  env = {k: v for k, v in os.environ.items()
         if k not in ("JAX_COMPILATION_CACHE_DIR", xla_cache.ENV)}
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  env["HOME"] = str(tmp_path / "home")
  subprocess.run([sys.executable, "-c", _PROG, where], cwd=ROOT, env=env, check=True,
                 capture_output=True, text=True)


def test_a_second_process_reads_the_first_ones_programs(tmp_path):
  cache = tmp_path / "xla"
  _compile_once(str(cache), tmp_path)
  files = sorted(p.name for p in cache.rglob("*") if p.is_file())
  assert files, "the first process wrote no cache entry"
  _compile_once(str(cache), tmp_path)  # the same program: read, not added
  assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == files
  # Off: nothing is written, not even to the default place.
  _compile_once("off", tmp_path)
  assert not (tmp_path / "home").exists()
  _compile_once("", tmp_path)  # control: no choice -> the default place
  assert list((tmp_path / "home" / ".cache" / "ugradsl_jax" / "xla").rglob("*"))
