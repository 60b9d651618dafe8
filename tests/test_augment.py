import numpy as np

from ugradsl_jax import augment, batching, configs
import pytest


def _reference(images, off, flip, pad=4):
  """Crop then flip, one image at a time, in plain numpy."""
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  out = []
  for img, (i, j), f in zip(padded, off, flip):
    c = img[i:i + 32, j:j + 32]
    out.append(c[:, ::-1] if f else c)
  return np.stack(out)


def test_crop_flip_matches_numpy_and_flip_only_keeps_the_frame():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
  both = augment.crop_flip_params(np.random.default_rng(1), 16)
  np.testing.assert_array_equal(augment.crop_flip(x, both["off"], both["flip"]),
                                _reference(x, both["off"], both["flip"]))
  only = augment.crop_flip_params(np.random.default_rng(1), 16, crop=False)
  got = np.asarray(augment.crop_flip(x, only["off"], only["flip"]))
  want = np.where(only["flip"][:, None, None, None], x[:, :, ::-1], x)
  np.testing.assert_array_equal(got, want)
  assert 0 < only["flip"].sum() < 16  # both branches exercised
  # Negative control: real crops move pixels, so they differ from flip-only.
  assert not np.array_equal(_reference(x, both["off"], only["flip"]), want)


def test_batches_carry_centre_offsets_for_flip_only():
  b, _ = batching.epochs(np.arange(64), 16, seed=3, augment="flip")
  assert np.all(b(0)["off"] == 4)
  c, _ = batching.epochs(np.arange(64), 16, seed=3, augment=True)
  assert not np.all(c(0)["off"] == 4)
  n, _ = batching.epochs(np.arange(64), 16, seed=3, augment=False)
  assert set(n(0)) == {"idx", "w"}  # no augmentation draws, only the row weights


def test_config_rejects_an_unknown_augmentation():
  cfg = configs.get("smoke")
  configs.validate(configs.with_method(cfg, "ft", augment="flip"))
  with pytest.raises(configs.ConfigError, match="ft augment 'crops'"):
    configs.validate(configs.with_method(cfg, "ft", augment="crops"))
