"""ResNet-18 CIFAR variant: shapes and parameter count."""

import jax
import jax.numpy as jnp
import numpy as np

from ugradsl_jax import models, train


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_resnet18_width64_parameter_count():
  model = models.build("resnet18", 64)
  v = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3), jnp.uint8), train=False))
  # torchvision-style CIFAR ResNet-18: 11,173,962 trainable parameters.
  assert _count(v["params"]) == 11_173_962
  stem = v["params"]["Conv_0"]["kernel"]
  assert stem.shape == (3, 3, 3, 64)  # 3x3 stride-1 stem


def test_output_shape_and_eval_is_deterministic():
  model = models.build("resnet18", 8)
  v = train.init_variables(model, 0)
  x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8))
  apply = jax.jit(model.apply, static_argnames=("train", "mutable"))
  y = apply(v, x, train=False)
  assert y.shape == (5, 10) and y.dtype == jnp.float32
  np.testing.assert_array_equal(y, apply(v, x, train=False))
  # Train mode uses batch statistics: a different function of the batch.
  y_train, _ = apply(v, x, train=True, mutable=("batch_stats",))
  assert np.abs(np.asarray(y_train) - np.asarray(y)).max() > 1e-4


def test_normalisation_inside_the_model():
  """The stem convolution sees (x/255 - mean) / std, computed here by hand."""
  model = models.build("tiny", 4)
  v = train.init_variables(model, 0)
  x = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  _, inter = jax.jit(lambda v, x: model.apply(v, x, train=False,
                                              capture_intermediates=True))(v, x)
  stem_out = inter["intermediates"]["Conv_0"]["__call__"][0]
  xn = (x / 255.0 - np.array(models.CIFAR_MEAN)) / np.array(models.CIFAR_STD)
  want = jax.lax.conv_general_dilated(
      jnp.asarray(xn, jnp.float32), v["params"]["Conv_0"]["kernel"], (1, 1), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(stem_out, want, rtol=1e-4, atol=1e-4)
