"""Model registry: ResNet-18 (CIFAR variant), VGG-16-BN and ViT."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ugradsl_jax import models, train

CIFAR = dict(mean=models.CIFAR_MEAN, std=models.CIFAR_STD)


def _images(n, size, seed=0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def _key(seed=0):
  # rbg keys: XLA:CPU compiles threefry-based init several times slower.
  return jax.random.key(seed, impl="rbg")


def _shapes(model, size=32):
  return jax.eval_shape(lambda: model.init(
      _key(), jnp.zeros((1, size, size, 3), jnp.uint8), train=False))


def _init_apply(model, key, x):
  """Eager (op-by-op) init + eval forward: one jit compile per distinct
  model would cost more than the tiny computations themselves."""
  v = model.init(key, x, train=False)
  return v, model.apply(v, x, train=False)


def test_resnet18_width64_parameter_count():
  model = models.build("resnet18", num_classes=10, **CIFAR)
  v = _shapes(model)
  # torchvision-style CIFAR ResNet-18: 11,173,962 trainable parameters.
  assert models.param_count(v["params"]) == 11_173_962
  stem = v["params"]["Conv_0"]["kernel"]
  assert stem.shape == (3, 3, 3, 64)  # 3x3 stride-1 stem


def test_vgg16_width64_parameter_count():
  """Config "D", 13 convs 3x3 without bias, each followed by BatchNorm:
  convs  9 * (3*64 + 64*64 + 64*128 + 128*128 + 128*256 + 2*256*256
              + 256*512 + 5*512*512)                       = 14,710,464
  BN     2 * (2*64 + 2*128 + 3*256 + 6*512)                =      8,448
  head   Dense 512->256 (131,328) + 256->256 (65,792) + 256->10 (2,570)
                                                           =    199,690
  total                                                    = 14,918,602
  """
  model = models.build("vgg16", num_classes=10, **CIFAR)
  v = _shapes(model)
  assert models.param_count(v["params"]) == 14_918_602
  convs = [k for k in v["params"] if k.startswith("Conv_")]
  assert len(convs) == 13 and "bias" not in v["params"]["Conv_0"]
  assert v["params"]["Conv_12"]["kernel"].shape == (3, 3, 512, 512)
  assert v["params"]["Dense_0"]["kernel"].shape == (512, 256)
  # width scales every channel count: width 8 = one eighth.
  v8 = _shapes(models.build("vgg16", num_classes=10, width=8, **CIFAR))
  assert v8["params"]["Conv_12"]["kernel"].shape == (3, 3, 64, 64)


def test_vit_default_shapes():
  model = models.build("vit", num_classes=10, **CIFAR)
  for size, tokens in ((32, 8 * 8 + 1), (64, 16 * 16 + 1)):
    p = _shapes(model, size)["params"]
    assert p["pos_embed"].shape == (1, tokens, 192)
  assert p["patch_embed"]["kernel"].shape == (4, 4, 3, 192)
  assert len([k for k in p if k.startswith("EncoderBlock_")]) == 6
  # 3 heads of 64 dims; MLP ratio 4.
  block = p["EncoderBlock_0"]
  assert block["MultiHeadDotProductAttention_0"]["query"]["kernel"].shape == (192, 3, 64)
  assert block["Dense_0"]["kernel"].shape == (192, 768)
  tiny = _shapes(models.build("vit", num_classes=10, tiny=True, **CIFAR))["params"]
  assert tiny["EncoderBlock_0"]["MultiHeadDotProductAttention_0"]["query"]["kernel"].shape \
      == (16, 2, 8)
  assert "EncoderBlock_1" not in tiny


# The non-tiny sizes run the full architecture at reduced width to stay fast.
SIZES = [("resnet18", dict(tiny=True)), ("resnet18", dict(width=8)),
         ("vgg16", dict(tiny=True)), ("vgg16", dict(width=8)),
         ("vit", dict(tiny=True)), ("vit", dict(width=32, depth=2))]


@pytest.mark.parametrize("name,size", SIZES, ids=lambda s: str(s))
@pytest.mark.parametrize("image", [32, 64])
def test_forward_shape_dtype_finite(name, size, image):
  # CIFAR-10's and CIFAR-100's superclasses' heads at 32x32, Tiny-ImageNet's at 64.
  for num_classes in ((10, 20) if image == 32 else (200,)):
    model = models.build(name, num_classes=num_classes, **CIFAR, **size)
    v, y = _init_apply(model, _key(), _images(2, image))
    assert y.shape == (2, num_classes) and y.dtype == jnp.float32
    assert np.isfinite(np.asarray(y)).all()
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v["params"]))


@pytest.mark.parametrize("name", models.IMAGE_NAMES)
def test_bfloat16_compute_keeps_float32_params_and_logits(name):
  model = models.build(name, num_classes=10, tiny=True, dtype=jnp.bfloat16, **CIFAR)
  v, y = _init_apply(model, _key(), _images(2, 32))
  assert y.dtype == jnp.float32 and np.isfinite(np.asarray(y)).all()
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v["params"]))


@pytest.mark.parametrize("name", models.IMAGE_NAMES)
def test_batch_stats_collection_and_training_call(name):
  """The training step's call pattern works for every family; for the ViT
  (no BatchNorm) it returns {"batch_stats": {}} when given an empty one."""
  model = models.build(name, num_classes=10, tiny=True, **CIFAR)
  v = _shapes(model)
  if name == "vit":
    assert "batch_stats" not in v and set(v) == {"params"}
  else:
    assert set(v) == {"params", "batch_stats"}
  x = _images(4, 32)

  v = model.init(_key(), x, train=False)
  bs = v.get("batch_stats", {})
  logits, new = model.apply({"params": v["params"], "batch_stats": bs}, x,
                            train=True, mutable=["batch_stats"])
  assert logits.shape == (4, 10) and logits.dtype == jnp.float32
  assert set(new) == {"batch_stats"}
  assert jax.tree.structure(new["batch_stats"]) == jax.tree.structure(bs)
  if name == "vit":
    assert new["batch_stats"] == {}
    # Without batch_stats in the variables the mutable collection is absent.
    _, new = model.apply(v, x, train=True, mutable=["batch_stats"])
    assert new == {}


def test_resnet18_tiny_is_resnet_tiny():
  key, x = _key(3), _images(3, 32, seed=2)
  built = models.build("resnet18", num_classes=10, tiny=True, **CIFAR)
  direct = models.ResNet(stage_sizes=(1, 1), width=4, num_classes=10)
  partial = models.ResNetTiny(num_classes=10)
  outs = [_init_apply(m, key, x) for m in (built, direct, partial)]
  for v, y in outs[1:]:
    assert jax.tree.structure(v) == jax.tree.structure(outs[0][0])
    jax.tree.map(np.testing.assert_array_equal, v, outs[0][0])
    np.testing.assert_array_equal(y, outs[0][1])
  assert outs[0][0]["params"]["Conv_0"]["kernel"].shape == (3, 3, 3, 4)
  # An explicit width overrides the tiny default.
  wide = _shapes(models.build("resnet18", num_classes=10, tiny=True, width=6, **CIFAR))
  assert wide["params"]["Conv_0"]["kernel"].shape == (3, 3, 3, 6)


def test_unknown_name_raises_model_error():
  with pytest.raises(models.ModelError, match="--model") as e:
    models.build("foo", num_classes=10, **CIFAR)
  assert isinstance(e.value, ValueError)
  assert "foo" in str(e.value) and "resnet18, vgg16, vit" in str(e.value)
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", models.IMAGE_NAMES)
def test_mean_std_are_used(name):
  key, x = _key(), _images(2, 32, seed=5)
  _, y = _init_apply(models.build(name, num_classes=10, tiny=True, **CIFAR), key, x)
  _, y_same = _init_apply(
      models.build(name, num_classes=10, tiny=True, mean=list(models.CIFAR_MEAN),
                   std=np.array(models.CIFAR_STD)), key, x)
  np.testing.assert_array_equal(y, y_same)
  # Negative control: other statistics change the logits (relative to their
  # size: VGG's N(0, 0.01) head gives logits ~1e-5 at init).
  _, y_other = _init_apply(
      models.build(name, num_classes=10, tiny=True, mean=(0.5, 0.5, 0.5),
                   std=(0.25, 0.25, 0.25)), key, x)
  assert np.abs(np.asarray(y_other) - np.asarray(y)).max() > 1e-2 * np.abs(np.asarray(y)).max()


def test_output_shape_and_eval_is_deterministic():
  model = models.build("resnet18", num_classes=10, width=8, **CIFAR)
  v = train.init_variables(model, 0)
  x = _images(5, 32)
  apply = jax.jit(model.apply, static_argnames=("train", "mutable"))
  y = apply(v, x, train=False)
  assert y.shape == (5, 10) and y.dtype == jnp.float32
  np.testing.assert_array_equal(y, apply(v, x, train=False))
  # Train mode uses batch statistics: a different function of the batch.
  y_train, _ = apply(v, x, train=True, mutable=("batch_stats",))
  assert np.abs(np.asarray(y_train) - np.asarray(y)).max() > 1e-4


@pytest.mark.parametrize("name", ["resnet18", "vgg16", "vit"])
def test_normalisation_inside_the_model(name):
  """The first convolution sees (x/255 - mean) / std, computed here by hand."""
  mean, std = (0.3, 0.5, 0.6), (0.2, 0.3, 0.25)
  model = models.build(name, num_classes=10, tiny=True, mean=mean, std=std)
  x = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  v = model.init(_key(), x, train=False)
  _, inter = model.apply(v, x, train=False, capture_intermediates=True)
  first = "patch_embed" if name == "vit" else "Conv_0"
  out = inter["intermediates"][first]["__call__"][0]
  xn = (x / 255.0 - np.array(mean)) / np.array(std)
  kernel = v["params"][first]["kernel"]
  stride = kernel.shape[:2] if name == "vit" else (1, 1)
  want = jax.lax.conv_general_dilated(
      jnp.asarray(xn, jnp.float32), kernel, stride,
      "VALID" if name == "vit" else "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  if name == "vit":
    want = want + v["params"][first]["bias"]
  np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
