"""Model registry: ResNet-18 (CIFAR variant), VGG-16-BN and a small ViT for
images; a BERT-style encoder (`transformer`) for token ids.

Every model takes uint8 NHWC images of any spatial size (32x32 CIFAR, 64x64
Tiny-ImageNet), normalises them inside with per-channel `mean`/`std` given in
[0, 1] units, and returns float32 logits [B, num_classes]. Parameters are
float32; `dtype` is the compute dtype. Build one with `build(name, ...)`.
Each sows its penultimate features (the head's input) as
("intermediates", "features"), which costs nothing unless a caller makes
that collection mutable (the adaptive smoothing rate reads them).
The text model takes int token ids [B, L] instead (0 = padding).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

IMAGE_NAMES = ("resnet18", "vgg16", "vit")
TEXT_NAMES = ("transformer",)
NAMES = IMAGE_NAMES + TEXT_NAMES

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
# He init (fan-out), as torchvision's ResNets use for their convolutions.
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class ModelError(ValueError):
  """A bad model choice on the command line (unknown --model, bad size)."""


def _normalise(x, mean, std, dtype):
  """(x - mean*255) / (std*255) in float32, then cast to the compute dtype."""
  mean = jnp.asarray(mean, jnp.float32) * 255.0
  std = jnp.asarray(std, jnp.float32) * 255.0
  return ((x.astype(jnp.float32) - mean) / std).astype(dtype)


# Running statistics: new = BN_MOMENTUM * old + (1 - BN_MOMENTUM) * batch
# (PyTorch's momentum 0.1); ugradsl_step.py's one-pass step composes two updates.
BN_MOMENTUM = 0.9


def _batch_norm(train: bool, axis_name: str | None, dtype):
  """The BatchNorm every convolutional family uses."""
  return functools.partial(nn.BatchNorm, use_running_average=not train,
                           momentum=BN_MOMENTUM, epsilon=1e-5, dtype=dtype,
                           axis_name=axis_name if train else None)


# --------------------------------------------------------------------- ResNet

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
  """CIFAR ResNet: 3x3 stride-1 stem, no max-pool, global average pool."""
  stage_sizes: Sequence[int]
  width: int = 64
  num_classes: int = 10
  axis_name: str | None = None  # BatchNorm statistics are pmean-ed over it
  dtype: Any = jnp.float32      # compute dtype; params stay float32
  mean: Sequence[float] = CIFAR_MEAN
  std: Sequence[float] = CIFAR_STD

  @nn.compact
  def __call__(self, x, train: bool):
    x = _normalise(x, self.mean, self.std, self.dtype)
    norm = _batch_norm(train, self.axis_name, self.dtype)
    x = nn.Conv(self.width, (3, 3), 1, padding=1, use_bias=False,
                dtype=self.dtype, kernel_init=_CONV_INIT)(x)
    x = nn.relu(norm()(x))
    for i, n_blocks in enumerate(self.stage_sizes):
      for j in range(n_blocks):
        strides = 2 if i > 0 and j == 0 else 1
        x = BasicBlock(self.width * 2**i, strides, norm, self.dtype)(x)
    x = jnp.mean(x, axis=(1, 2))
    self.sow("intermediates", "features", x)
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


# Tiny test-only model: one block per stage, runs in well under a second.
ResNetTiny = functools.partial(ResNet, stage_sizes=(1, 1), width=4)


# ------------------------------------------------------------------------ VGG

# VGG configuration "D" (13 convs) in units of width/64, "M" = 2x2 max-pool.
# As in OPTML-Group's VGG (Unlearn-Sparse / Unlearn-Saliency, vgg16_bn) there
# is no max-pool after the last three convs: at 32x32 the features end 2x2.
VGG16_CFG = (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8)
# Test-only "vgg16" family member: two conv stages (width 4: 4, M, 8).
VGG_TINY_CFG = (1, "M", 2)


class VGG(nn.Module):
  """VGG with BatchNorm: each conv 3x3 pad 1 (no bias) + BatchNorm + ReLU.

  Head as OPTML's: Dense(4*width) ReLU Dense(4*width) ReLU Dense(classes)
  (256 hidden units at width 64), Dense init N(0, 0.01), zero biases; convs
  He fan-out. Difference from OPTML, which assumes 32x32 inputs: the features
  end with a global average pool (512 inputs to the head at width 64) instead
  of AdaptiveAvgPool2d((2, 2)) + flatten (2048 inputs), so any input size
  works. `depth` is not a parameter; `cfg` fixes the layers.
  """
  cfg: Sequence[Any] = VGG16_CFG
  width: int = 64
  num_classes: int = 10
  axis_name: str | None = None
  dtype: Any = jnp.float32
  mean: Sequence[float] = CIFAR_MEAN
  std: Sequence[float] = CIFAR_STD

  @nn.compact
  def __call__(self, x, train: bool):
    x = _normalise(x, self.mean, self.std, self.dtype)
    norm = _batch_norm(train, self.axis_name, self.dtype)
    for v in self.cfg:
      if v == "M":
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      else:
        x = nn.Conv(self.width * v, (3, 3), 1, padding=1, use_bias=False,
                    dtype=self.dtype, kernel_init=_CONV_INIT)(x)
        x = nn.relu(norm()(x))
    x = jnp.mean(x, axis=(1, 2))
    dense = functools.partial(nn.Dense, dtype=self.dtype,
                              kernel_init=nn.initializers.normal(0.01))
    x = nn.relu(dense(4 * self.width)(x))
    x = nn.relu(dense(4 * self.width)(x))
    self.sow("intermediates", "features", x)
    return dense(self.num_classes)(x).astype(jnp.float32)


# ------------------------------------------------------------------------ ViT

_DENSE_INIT = nn.initializers.xavier_uniform()


class EncoderBlock(nn.Module):
  """Pre-LayerNorm transformer block: x + MHSA(LN(x)); x + MLP(LN(x))."""
  heads: int
  mlp_ratio: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask=None):
    """mask: None, or [B, 1, L, L] bool, True where a query may attend a key."""
    width = x.shape[-1]
    y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.heads, qkv_features=width, dtype=self.dtype,
        kernel_init=_DENSE_INIT, deterministic=True)(y, y, mask=mask)
    x = x + y
    y = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype)(x)
    y = nn.Dense(self.mlp_ratio * width, dtype=self.dtype, kernel_init=_DENSE_INIT)(y)
    y = nn.gelu(y)
    y = nn.Dense(width, dtype=self.dtype, kernel_init=_DENSE_INIT)(y)
    return x + y


class ViT(nn.Module):
  """Small Vision Transformer for 32x32 / 64x64 inputs.

  Patch embedding (patch x patch conv, stride patch), a learned [CLS] token,
  learned position embeddings sized at init from the input,
  (H/patch)*(W/patch) + 1 (so a model initialised at 32x32 cannot be applied
  to 64x64), `depth` pre-LN blocks (MHSA + GELU MLP, mlp ratio 4), final
  LayerNorm, Dense head on the [CLS] token. `heads` None = max(1, width // 64).

  No BatchNorm and no dropout: only a "params" collection exists, and the
  model is deterministic, so `train` is accepted and ignored. The training
  step's call `apply({"params": p, "batch_stats": {}}, x, train=True,
  mutable=["batch_stats"])` works and returns (logits, {"batch_stats": {}});
  without "batch_stats" in the variables it returns (logits, {}). Callers
  should take `variables.get("batch_stats", {})` from init, which has no
  such key. `axis_name` is accepted and unused.
  """
  width: int = 192
  depth: int = 6
  heads: int | None = None
  patch: int = 4
  mlp_ratio: int = 4
  num_classes: int = 10
  axis_name: str | None = None
  dtype: Any = jnp.float32
  mean: Sequence[float] = CIFAR_MEAN
  std: Sequence[float] = CIFAR_STD

  @nn.compact
  def __call__(self, x, train: bool):
    del train  # deterministic: no dropout, no batch statistics
    heads = self.heads if self.heads is not None else max(1, self.width // 64)
    if self.width % heads:
      raise ModelError(f"--model vit: width {self.width} is not divisible by "
                       f"{heads} heads")
    x = _normalise(x, self.mean, self.std, self.dtype)
    x = nn.Conv(self.width, (self.patch, self.patch), self.patch, padding="VALID",
                dtype=self.dtype, name="patch_embed")(x)
    b, h, w, c = x.shape
    x = x.reshape(b, h * w, c)
    cls = self.param("cls", nn.initializers.zeros, (1, 1, c), jnp.float32)
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (b, 1, c)), x], axis=1)
    pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, h * w + 1, c),
                     jnp.float32)
    x = x + pos.astype(self.dtype)
    for _ in range(self.depth):
      x = EncoderBlock(heads, self.mlp_ratio, self.dtype)(x)
    x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="final_norm")(x)
    self.sow("intermediates", "features", x[:, 0])
    return nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=_DENSE_INIT,
                    name="head")(x[:, 0]).astype(jnp.float32)


# ---------------------------------------------------------------- text model

PAD_ID = 0  # as text.PAD_ID (a test holds them equal); no tokenizers import here


class TextTransformer(nn.Module):
  """BERT-style encoder classifier over token ids, trained from scratch.

  Token embeddings + learned position embeddings (sized at init from the
  input length), `depth` pre-LN blocks (the ViT's EncoderBlock: MHSA + GELU
  MLP) whose attention skips padding (id 0), final LayerNorm, and a Dense
  head on a pooled vector: "mean" over the non-padding tokens (default:
  trains faster from scratch) or "cls", the first token (text.py puts
  [CLS] there). LayerNorm, no BatchNorm: only "params" exists, and, as for
  the ViT, `train` and `axis_name` are accepted and unused (no dropout).
  """
  vocab_size: int
  width: int = 128
  depth: int = 2
  heads: int | None = None
  mlp_ratio: int = 4
  pool: str = "mean"
  num_classes: int = 20
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tokens, train: bool):
    del train
    heads = self.heads if self.heads is not None else max(1, self.width // 64)
    if self.width % heads:
      raise ModelError(f"--model transformer: width {self.width} is not divisible "
                       f"by {heads} heads")
    if self.pool not in ("mean", "cls"):
      raise ModelError(f"--model transformer: pool {self.pool!r}: mean or cls")
    keep = tokens != PAD_ID                                   # [B, L]
    x = nn.Embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(0.02),
                 name="token_embed")(tokens.astype(jnp.int32)).astype(self.dtype)
    pos = self.param("pos_embed", nn.initializers.normal(0.02),
                     (1, tokens.shape[1], self.width), jnp.float32)
    x = x + pos.astype(self.dtype)
    mask = nn.make_attention_mask(keep, keep)                 # [B, 1, L, L]
    for _ in range(self.depth):
      x = EncoderBlock(heads, self.mlp_ratio, self.dtype)(x, mask)
    x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, name="final_norm")(x)
    if self.pool == "cls":
      feats = x[:, 0]
    else:  # an all-padding row (eval padding) pools to 0, not NaN
      w = keep.astype(x.dtype)[..., None]
      feats = jnp.sum(x * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1)
    self.sow("intermediates", "features", feats)
    return nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=_DENSE_INIT,
                    name="head")(feats).astype(jnp.float32)


# ------------------------------------------------------------------- registry

def build(name: str, *, num_classes: int, mean: tuple, std: tuple,
          width: int | None = None, depth: int | None = None, tiny: bool = False,
          axis_name: str | None = None, dtype=jnp.float32,
          vocab_size: int | None = None) -> nn.Module:
  """The model `name` (one of NAMES). width/depth None = the family default.

  resnet18: width 64 (tiny: the two-stage ResNetTiny, width 4); depth ignored.
  vgg16:    width 64 = standard channels (tiny: two conv stages, width 4);
            depth ignored.
  vit:      width (embedding dim) 192, depth 6, heads width // 64, patch 4
            (tiny: width 16, depth 1, heads 2).
  transformer: needs `vocab_size`; width 128, depth 2, heads width // 64,
            mean pooling (tiny: width 16, depth 1, heads 2); mean/std unused.
  """
  if name == "transformer":
    if not vocab_size:
      raise ModelError("--model transformer reads token ids: it needs the data "
                       "set's vocabulary size (a text data set)")
    kw = dict(num_classes=num_classes, axis_name=axis_name, dtype=dtype,
              vocab_size=int(vocab_size))
    if tiny:
      return TextTransformer(width=16 if width is None else width,
                             depth=1 if depth is None else depth, heads=2, **kw)
    return TextTransformer(width=128 if width is None else width,
                           depth=2 if depth is None else depth, **kw)
  mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
  common = dict(num_classes=num_classes, mean=mean, std=std, axis_name=axis_name,
                dtype=dtype)
  if name == "resnet18":
    if tiny:
      return ResNet(stage_sizes=(1, 1), width=4 if width is None else width, **common)
    return ResNet(stage_sizes=(2, 2, 2, 2), width=64 if width is None else width,
                  **common)
  if name == "vgg16":
    return VGG(cfg=VGG_TINY_CFG if tiny else VGG16_CFG,
               width=(4 if tiny else 64) if width is None else width, **common)
  if name == "vit":
    if tiny:
      return ViT(width=16 if width is None else width,
                 depth=1 if depth is None else depth, heads=2, **common)
    return ViT(width=192 if width is None else width,
               depth=6 if depth is None else depth, **common)
  raise ModelError(f"--model {name!r}: unknown; known: {', '.join(NAMES)}")


def param_count(params) -> int:
  """Number of scalars in a parameter tree (arrays or jax.ShapeDtypeStructs)."""
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))
