"""What a table costs before it runs: an image count and, for the paper
preset on a CPU, a one-line warning with the estimated run time."""

from __future__ import annotations

import sys

import jax
from tqdm.auto import tqdm

from . import configs, split as split_lib
from . import methods as M


# Which set each method's epochs run over, and whether a batch of the other
# set rides along (paired steps); retrain and the original are from scratch.
_EPOCH_SET = {"ft": "retain", "l1_sparse": "retain", "ga": "forget", "rl": "train",
              "salun": "train", "boundary_shrink": "forget", "iu": "train", "ssd": "train",
              "scrub": "train", "boundary_expanding": "forget"}


def table_images(cfg: configs.Config, split: split_lib.Split, names: list[str]) -> int:
  """About how many images one seed's table pushes through the network:
  training steps (forward + backward) plus a third for each evaluation
  (forward only). An estimate for warnings, not a measurement."""
  n = {"train": len(split.train), "retain": len(split.retain), "forget": len(split.forget)}
  total = cfg.pretrain.epochs * (n["train"] + n["retain"])  # original, Retrain
  for name in names:
    m = cfg.methods.get(name)
    if m is None:
      continue
    if name in M.PRIMARY:  # paired: the other set's batch rides along
      prim = M.PRIMARY[name]
      bp, bs = (m.forget_batch_size or m.batch_size, m.batch_size) if prim == "forget" \
          else (m.batch_size, m.forget_batch_size or m.batch_size)
      total += int(m.epochs * n[prim] * (1 + bs / bp))
    else:
      total += m.epochs * n[_EPOCH_SET[name]]
  evals = 1 + len(names)
  total += evals * (n["train"] + len(split.val) + len(split.test)) // 3
  return int(total)


def cpu_probe(cfg: configs.Config, split: split_lib.Split, names: list[str],
              backend: str | None = None, out=None):
  """The paper preset on a CPU: a speed probe for loop.fit that prints one
  warning line with the table's estimated run time, once (None elsewhere).
  It warns; it does not refuse."""
  if cfg.preset != "paper" or (backend or jax.default_backend()) != "cpu":
    return None
  images = table_images(cfg, split, names)
  fired = []

  def probe(images_per_s: float) -> None:
    if fired:
      return
    fired.append(images_per_s)
    hours = images / max(images_per_s, 1e-9) / 3600
    msg = (f"warning: --preset paper is meant for a GPU or TPU accelerator; on this "
           f"CPU the first steps ran at {images_per_s:.0f} images/s, an estimated "
           f"{hours:.1f} h for this seed's table ({images:,} images); --preset quick "
           "is sized for a CPU")
    # tqdm.write clears a progress bar first, so the warning is a line of its own.
    tqdm.write(msg, file=out or sys.stderr)
  return probe
