"""What every phase of one seed shares, fixed once: the config, the data as
the model is trained on it, the split, the parallel mode, the model and the
device copy of the training data (`Experiment`).

An Experiment never changes after `make`; a variant (another seed for a
fleet member, another recipe for tuning) is `dataclasses.replace` of it,
which keeps the device data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib

import jax.numpy as jnp
import numpy as np

from . import models
from .configs import Config, recipe_meta
from .dataset import Dataset
from .parallel import Parallel
from .split import Split, fingerprint

# What a phase computes changed with this version (padded last batches, RL's
# loop, the l1 schedule): workdirs of an older one are refused, not reused.
PROTOCOL_VERSION = 2


@dataclasses.dataclass(frozen=True)
class Experiment:
  cfg: Config
  data: Dataset  # labelled as the model is trained (coarse in the sub-class scenario)
  split: Split
  par: Parallel
  device_data: dict  # {"x", "y"}: the training data on the device(s), put once
  data_id: str       # a content hash of the data, recorded with every phase
  # A user's model (contract.Model) in place of the registry's cfg.model.
  user_model: object | None = None

  def model(self, axis_name="unset"):
    """The model of this experiment; `axis_name` None for a step outside
    the parallel wrapper (evaluation, initialisation)."""
    if self.user_model is not None:
      return self.user_model
    axis = self.par.axis_name if axis_name == "unset" else axis_name
    c, d = self.cfg, self.data
    return models.build(c.model, num_classes=d.num_classes, mean=d.mean, std=d.std,
                        width=c.width, depth=c.depth, tiny=c.tiny, axis_name=axis,
                        vocab_size=d.vocab_size, dtype=jnp.dtype(c.dtype))

  def seed_for(self, name: str) -> int:
    """The seed of phase `name`'s own randomness (e.g. its initialisation)."""
    return zlib.crc32(f"{self.cfg.seed}/{name}".encode())

  def meta(self, name: str, recipe) -> dict:
    """What a saved phase depends on; a workdir whose phase was saved with
    other meta is refused (checkpoint.PhaseStore)."""
    if dataclasses.is_dataclass(recipe):
      recipe = dataclasses.asdict(recipe)
    if isinstance(recipe, dict):
      recipe = recipe_meta(recipe)
    c = self.cfg
    return {"phase": name, "recipe": recipe, "model": c.model,
            "tiny": c.tiny, "width": c.width, "depth": c.depth,
            "num_classes": self.data.num_classes, "seed": c.seed,
            "data": self.data_id, "split": fingerprint(self.split),
            # Only when not float32, so workdirs from before the flag stay valid.
            **({"dtype": c.dtype} if c.dtype != "float32" else {}),
            "protocol": PROTOCOL_VERSION,
            # Every phase starts from the original model: one read from a
            # checkpoint is part of what its results depend on.
            **({"init_checkpoint": c.init_checkpoint} if c.init_checkpoint else {})}

  def batch_for(self, size: int, indices) -> int:
    """`size`, or, when the set is smaller than one batch (the smoke preset's
    sub-class forget set holds 9 images against batch 16), the set's size
    rounded up to a multiple of the device count: one padded batch an epoch,
    as the reference's DataLoader gives one short batch."""
    if len(indices) >= size:
      return size
    return -(-len(indices) // self.par.n) * self.par.n


def data_hash(data: Dataset) -> str:
  h = hashlib.sha256()
  for a in (data.train_x, data.train_y, data.test_x, data.test_y):
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()[:16]


def make(cfg: Config, data: Dataset, split: Split, par: Parallel,
         user_model=None) -> Experiment:
  """The Experiment, with the training data put on the device(s)."""
  return Experiment(cfg=cfg, data=data, split=split, par=par,
                    device_data=par.replicate({"x": data.train_x, "y": data.train_y}),
                    data_id=data_hash(data), user_model=user_model)
