"""ResNet-18, CIFAR variant (3x3 stride-1 stem, no max-pool), Flax Linen."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
# He init (fan-out), as torchvision's ResNets use for their convolutions.
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class BasicBlock(nn.Module):
  features: int
  strides: int
  norm: Any
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             kernel_init=_CONV_INIT)
    y = conv(self.features, (3, 3), self.strides, padding=1)(x)
    y = nn.relu(self.norm()(y))
    y = conv(self.features, (3, 3), 1, padding=1)(y)
    y = self.norm()(y)
    if x.shape[-1] != self.features or self.strides != 1:
      x = conv(self.features, (1, 1), self.strides, padding=0)(x)
      x = self.norm()(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """Takes uint8 NHWC images; normalisation lives inside the model."""
  stage_sizes: Sequence[int]
  width: int = 64
  num_classes: int = 10
  axis_name: str | None = None  # BatchNorm statistics are pmean-ed over it
  dtype: Any = jnp.float32      # compute dtype; params stay float32

  @nn.compact
  def __call__(self, x, train: bool):
    mean = jnp.asarray(CIFAR_MEAN, jnp.float32) * 255.0
    std = jnp.asarray(CIFAR_STD, jnp.float32) * 255.0
    x = ((x.astype(jnp.float32) - mean) / std).astype(self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                             axis_name=self.axis_name if train else None)
    x = nn.Conv(self.width, (3, 3), 1, padding=1, use_bias=False,
                dtype=self.dtype, kernel_init=_CONV_INIT)(x)
    x = nn.relu(norm()(x))
    for i, n_blocks in enumerate(self.stage_sizes):
      for j in range(n_blocks):
        strides = 2 if i > 0 and j == 0 else 1
        x = BasicBlock(self.width * 2**i, strides, norm, self.dtype)(x)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2))
# Tiny test-only model: one block per stage, runs in well under a second.
ResNetTiny = functools.partial(ResNet, stage_sizes=(1, 1), width=4)


def build(arch: str, width: int, axis_name: str | None = None,
          dtype: Any = jnp.float32) -> ResNet:
  archs = {"resnet18": ResNet18, "tiny": ResNetTiny}
  if arch not in archs:
    raise ValueError(f"unknown arch {arch!r}; known: {sorted(archs)}")
  return archs[arch](width=width, axis_name=axis_name, dtype=dtype)
