"""Text: the 20 Newsgroups loader (real copy and a synthetic tree), stripping,
the BPE vocabulary and its cache, the encoder without batch statistics,
its data-parallel step, and every method through the protocol."""

import dataclasses
import functools
import subprocess
import sys
import tarfile

import jax
import numpy as np
import pytest

from conftest import ROOT
from ugradsl_jax import configs, datasets, mixing, models, parallel, protocol, text, train, ugradsl_step

NEWS_TAR = ROOT.parent / "shared" / "data" / "20news-bydate.tar.gz"
GROUPS = tuple(f"grp.{chr(97 + i)}" for i in range(20))


def _post(group: int, i: int, crlf: bool = False) -> bytes:
  """A post with a header, a quoted reply and a signature; its body names
  its group so a model can tell the groups apart."""
  word = f"topic{group}"
  s = (f"From: user{i}@site{group}.edu\nSubject: about {word}\nLines: 9\n\n"
       f"In article <{i}@x> someone writes:\n> quoted{group} text here\n"
       f"I think {word} is {word} and caf\xe9 {word} number {i}.\n\n--\nsig{group} Line\n")
  raw = s.encode("latin-1")
  return raw.replace(b"\n", b"\r\n") if crlf else raw


def _tree(root, n_train=6, n_test=2):
  for split, n in (("train", n_train), ("test", n_test)):
    for g, name in enumerate(GROUPS):
      d = root / split / name
      d.mkdir(parents=True)
      for i in range(n):
        (d / f"{1000 + i}").write_bytes(_post(g, i, crlf=(g == 0 and i == 0)))
  return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  mp = pytest.MonkeyPatch()
  mp.setenv(datasets.CACHE_ENV, str(tmp_path_factory.mktemp("textcache")))
  yield
  mp.undo()


@pytest.fixture(scope="module")
def news_tree(tmp_path_factory):
  return _tree(tmp_path_factory.mktemp("news"))


@pytest.fixture(scope="module")
def news(news_tree, cache):
  return datasets.load("20newsgroups", str(news_tree), text=configs.get(
      "smoke", "20newsgroups", model="transformer").text)


# ------------------------------------------------------------------ loading

def test_shared_copy_counts_and_classes():
  if not NEWS_TAR.exists():
    pytest.skip(f"{NEWS_TAR} is absent (the offline 20 Newsgroups copy lives in ../shared)")
  names, parts = text._by_class(text._posts_from_tar(NEWS_TAR), "shared", 20)
  assert len(names) == 20 and names[0] == "alt.atheism" and names[-1] == "talk.religion.misc"
  assert len(parts["train"][0]) == 11_314 and len(parts["test"][0]) == 7_532
  # Standard per-class counts (data README): alt.atheism 480 / 319.
  assert np.sum(parts["train"][1] == 0) == 480 and np.sum(parts["test"][1] == 0) == 319
  assert np.sum(parts["train"][1] == 19) == 377 and np.sum(parts["test"][1] == 19) == 251
  # Raw latin-1-style bytes all decode, and no post keeps a CR.
  assert not any("\r" in t for t in parts["train"][0][:2000])


def test_synthetic_tree_and_tar_give_the_same_tokens(news, news_tree, tmp_path, cache):
  assert news.modality == "text" and news.num_classes == 20
  assert news.class_names == GROUPS
  assert news.train_x.shape == (120, 32) and news.test_x.shape == (40, 32)
  assert news.train_x.dtype == np.int32 and news.vocab_size <= 300
  np.testing.assert_array_equal(news.train_y, np.repeat(np.arange(20), 6))
  # Every post starts with [CLS]; ids are in the vocabulary.
  tok = text.tokenizer_of(news)
  assert (news.train_x[:, 0] == tok.token_to_id(text.CLS)).all()
  assert news.train_x.max() < news.vocab_size and text.PAD_ID == models.PAD_ID == 0
  archive = tmp_path / "news.tar.gz"
  with tarfile.open(archive, "w:gz") as tf:
    tf.add(news_tree, arcname="20news-bydate")  # an optional top folder
  again = datasets.load("20newsgroups", str(archive), text=configs.get(
      "smoke", "20newsgroups", model="transformer").text)
  np.testing.assert_array_equal(again.train_x, news.train_x)
  np.testing.assert_array_equal(again.test_y, news.test_y)
  assert "news.tar.gz" in again.source and "removed nothing" in again.source


def test_remove_strips_what_scikit_learn_strips():
  post = text.decode(_post(3, 1, crlf=True))
  assert "\r" not in post
  body = text.strip(post, ("headers",))
  assert "From:" not in body and "Subject" not in body and "topic3 is" in body
  # A CRLF post loses only its header (decode makes CRLF LF). Undecoded,
  # scikit-learn's header stripping finds no blank line and drops it all.
  assert text.strip(_post(3, 1, crlf=True).decode("latin-1"), ("headers",)) == ""
  no_quotes = text.strip(post, ("quotes",))
  assert "quoted3" not in no_quotes and "writes:" not in no_quotes and "From:" in no_quotes
  no_footer = text.strip(post, ("footers",))
  assert "sig3" not in no_footer and "topic3 is" in no_footer
  assert text.strip(post, ()) == post
  assert "caf\xe9" in post  # a latin-1 byte decoded, not replaced
  with pytest.raises(datasets.DataError, match="signatures: unknown"):
    text.strip(post, ("signatures",))


def test_remove_changes_the_tokens(news_tree, cache):
  base = configs.get("smoke", "20newsgroups", model="transformer").text
  kept = datasets.load("20newsgroups", str(news_tree), text=base)
  cut = datasets.load("20newsgroups", str(news_tree),
                      text=dataclasses.replace(base, remove=("headers", "quotes")))
  tok_kept, tok_cut = text.tokenizer_of(kept), text.tokenizer_of(cut)
  assert "from" in tok_kept.decode(kept.train_x[7].tolist())
  assert "from" not in tok_cut.decode(cut.train_x[7].tolist())
  assert "quoted" not in tok_cut.decode(cut.train_x[7].tolist())


def test_tokenizer_is_deterministic_and_trained_on_train_only(news_tree):
  names, parts = text._by_class(text._posts_from_folder(news_tree), "tree", 20)
  train_texts = parts["train"][0]
  a = text.train_tokenizer(train_texts, 300)
  b = text.train_tokenizer(list(train_texts), 300)
  assert a.to_str() == b.to_str()
  # In another process too (WordPiece's trainer fails this: its ids follow
  # a hash map's per-process order).
  code = ("import sys; from ugradsl_jax import text; "
          "_, p = text._by_class(text._posts_from_folder(__import__('pathlib').Path(sys.argv[1])), 't', 20); "
          "print(text.train_tokenizer(p['train'][0], 300).to_str())")
  other = subprocess.run([sys.executable, "-c", code, str(news_tree)], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.strip()
  assert other == a.to_str()
  np.testing.assert_array_equal(text.encode(a, train_texts, 32), text.encode(b, train_texts, 32))
  # Negative control: other texts give another vocabulary.
  assert text.train_tokenizer(train_texts[:20], 300).to_str() != a.to_str()
  # A word seen only in the test split is not a whole token of the vocabulary.
  unseen = "zyxwvut"
  ids = text.encode(a, [f"{unseen} topic3"], 8)[0]
  assert a.token_to_id(unseen) is None and ids[0] == a.token_to_id(text.CLS)


def test_cache_is_keyed_by_content_and_options(news_tree, tmp_path, monkeypatch):
  monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "c"))
  cfg = configs.get("smoke", "20newsgroups", model="transformer").text
  first = datasets.load("20newsgroups", str(news_tree), text=cfg)
  assert len(list((tmp_path / "c").glob("20newsgroups-*.npz"))) == 1
  calls = []
  real = text.train_tokenizer
  monkeypatch.setattr(text, "train_tokenizer", lambda *a, **k: calls.append(1) or real(*a, **k))
  hit = datasets.load("20newsgroups", str(news_tree), text=cfg)
  assert calls == []  # served from the cache
  np.testing.assert_array_equal(hit.train_x, first.train_x)
  assert hit.tokenizer_json == first.tokenizer_json and hit.vocab_size == first.vocab_size
  datasets.load("20newsgroups", str(news_tree), text=dataclasses.replace(cfg, max_len=16))
  assert calls == [1]  # other options: tokenised again, cached apart
  assert len(list((tmp_path / "c").glob("20newsgroups-*.npz"))) == 2


def test_bad_input_is_one_clear_error(tmp_path, cache):
  cfg = configs.get("smoke", "20newsgroups", model="transformer").text
  with pytest.raises(datasets.DataError, match="no such file"):
    datasets.load("20newsgroups", str(tmp_path / "absent"), text=cfg)
  (tmp_path / "empty").mkdir()
  with pytest.raises(datasets.DataError, match="expected train/ and test/"):
    datasets.load("20newsgroups", str(tmp_path / "empty"), text=cfg)
  bad = tmp_path / "bad.tar.gz"
  bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
  with pytest.raises(datasets.DataError, match="corrupted or truncated"):
    datasets.load("20newsgroups", str(bad), text=cfg)
  few = _tree(tmp_path / "few")
  import shutil
  shutil.rmtree(few / "train" / GROUPS[0])
  with pytest.raises(datasets.DataError, match="19 newsgroup folders, expected 20"):
    datasets.load("20newsgroups", str(few), text=cfg)


def test_models_and_data_must_match():
  with pytest.raises(configs.ConfigError, match="--model transformer reads text but "
                     "--dataset cifar10 holds images"):
    configs.get("quick", "cifar10", model="transformer")
  with pytest.raises(configs.ConfigError, match="models for it: transformer"):
    configs.get("quick", "20newsgroups", model="resnet18")
  with pytest.raises(models.ModelError, match="vocabulary size"):
    models.build("transformer", num_classes=20, mean=(), std=())
  cfg = configs.get("quick", "20newsgroups", model="transformer")
  assert cfg.text is not None and cfg.pretrain.augment is False
  assert all(m is None or m.augment is False for m in cfg.methods.values())


# -------------------------------------------------------------------- model

def _tokens(rng, n, length=16, vocab=50):
  x = rng.integers(4, vocab, (n, length)).astype(np.int32)
  lengths = rng.integers(2, length + 1, n)
  x[np.arange(length)[None, :] >= lengths[:, None]] = text.PAD_ID
  return x


def _tiny(axis_name=None, **kw):
  return models.build("transformer", num_classes=20, mean=(), std=(), tiny=True,
                      vocab_size=50, axis_name=axis_name, **kw)


def test_encoder_shape_no_batch_statistics_and_padding():
  model = _tiny()
  x = _tokens(np.random.default_rng(0), 6)
  v = train.init_variables(model, 0, x.shape[1:], x.dtype)
  assert v["batch_stats"] == {} and set(jax.eval_shape(
      lambda: model.init(jax.random.key(0), x, train=False))) == {"params"}
  logits = jax.jit(lambda p, t: model.apply({"params": p}, t, train=False))(v["params"], x)
  assert logits.shape == (6, 20) and logits.dtype == np.float32
  # No batch statistics: a row's logits do not depend on the rest of the
  # batch, in train mode either.
  other = x.copy()
  other[1:] = _tokens(np.random.default_rng(1), 5)
  # Jitted: one compile per batch shape costs less than op-by-op dispatch.
  fwd = jax.jit(lambda inp: train.forward(model, v["params"], {}, inp)[0])
  np.testing.assert_allclose(fwd(x)[0], fwd(other)[0], rtol=1e-6, atol=1e-6)
  assert np.abs(np.asarray(fwd(x)[1] - fwd(other)[1])).max() > 1e-4  # control
  # A post's length is read from its padding: replacing the padding by real
  # tokens changes the logits. An all-padding row (evaluation's padding) is
  # finite. (That padding is pooled out exactly: the numpy reference below.)
  short = x[:1].copy()
  short[0, 3:] = text.PAD_ID
  longer = short.copy()
  longer[0, 3:] = 7
  assert np.abs(np.asarray(fwd(short) - fwd(longer))).max() > 1e-4  # control
  padded = np.concatenate([short, np.zeros_like(short)])
  out = np.asarray(fwd(padded))
  assert np.isfinite(out).all()


def test_mean_pool_matches_a_numpy_reference():
  model = _tiny()
  x = _tokens(np.random.default_rng(2), 3)
  v = model.init(jax.random.key(1), x, train=False)
  _, inter = model.apply(v, x, train=False, capture_intermediates=True,
                         mutable=["intermediates"])
  normed = np.asarray(inter["intermediates"]["final_norm"]["__call__"][0], np.float64)
  keep = (x != text.PAD_ID)[..., None]
  want = (normed * keep).sum(1) / keep.sum(1)
  feats = np.asarray(inter["intermediates"]["features"][0], np.float64)
  np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------- parallel

def _parallel_run(mode, kind):
  tx = train.sgd(train.lr_schedule("constant", 0.05, 10, 10), 0.9, 5e-4)
  rng = np.random.default_rng(0)
  data = {"x": _tokens(rng, 64), "y": rng.integers(0, 20, 64).astype(np.int32)}
  v = train.init_variables(_tiny(), 0, (16,), np.int32)
  state = jax.device_get(train.create_state(v["params"], v["batch_stats"], tx))
  par = parallel.make(mode, num_devices=4)
  model = _tiny(par.axis_name)
  if kind == "descent":
    step = functools.partial(train.descent_step, model=model, tx=tx)
    batch, hp = {"idx": np.arange(16)}, {}
  else:
    step = functools.partial(ugradsl_step.unlearn_step, model=model, tx=tx, mix=mixing.RULES["weighted"])
    batch = {"retain": {"idx": np.arange(16)}, "forget": {"idx": np.arange(40, 56)}}
    hp = {"alpha": -0.5, "p": 0.7}
  f = par.wrap(step)
  out, metrics = f(par.replicate(state), par.replicate(data), par.shard(batch), hp)
  return state, jax.device_get(par.unreplicate(out)), jax.device_get(par.unreplicate(metrics))


@pytest.mark.parametrize("kind", ["descent", "unlearn"])
def test_text_step_equal_under_pmap_shard_map_and_one_device(kind):
  init, ref, ref_m = _parallel_run("none", kind)
  moved = max(float(np.abs(a - b).max()) for a, b in
              zip(jax.tree.leaves(init.params), jax.tree.leaves(ref.params)))
  assert moved > 1e-4  # the step did something, so equality is not vacuous
  for mode in ("pmap", "shard_map"):
    _, got, m = _parallel_run(mode, kind)
    for a, b in zip(jax.tree.leaves((got.params, got.opt_state, m)),
                    jax.tree.leaves((ref.params, ref.opt_state, ref_m))):
      np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                 rtol=2e-5, atol=2e-6, err_msg=mode)


# ------------------------------------------------------------------ protocol

# Every method: the descent loop, ascent, random labels, the l1 term,
# SalUn's gradient mask, the paired step at both rates.
# Boundary Shrink perturbs images and is refused on token ids (below).
TEXT_METHODS = [m for m in configs.METHODS if m != "boundary_shrink"]


def test_methods_on_text(news, tmp_path):
  cfg = configs.get("smoke", "20newsgroups", model="transformer")
  with pytest.raises(configs.ConfigError, match="boundary_shrink perturbs images"):
    protocol.run_seed(cfg, news, tmp_path / "bs", ["boundary_shrink"], progress=False)
  res = protocol.run_seed(cfg, news, tmp_path, TEXT_METHODS, progress=False)
  assert list(res["methods"]) == TEXT_METHODS
  assert res["dataset"] == "20newsgroups" and res["model"] == "transformer"
  assert "20 Newsgroups" in res["source"]
  for name, r in res["methods"].items():
    for k in ("UA", "RA", "TA", "MIA"):
      assert 0.0 <= r[k] <= 100.0, (name, k)
    assert np.isfinite(r["avg_gap"])
  assert res["methods"]["retrain"]["avg_gap"] == 0.0
  # The pipeline learns from tokens (the synthetic groups name themselves),
  # even in the smoke preset's six steps.
  assert res["original"]["TA"] > 15.0  # chance: 5


def test_class_wise_on_text(news, tmp_path):
  cfg = dataclasses.replace(configs.get("smoke", "20newsgroups", "class", "transformer"),
                            forget_classes=(4,))
  res = protocol.run_seed(cfg, news, tmp_path, ["retrain", "ugradsl"], progress=False)
  assert res["forgotten"] == "class 4 (grp.e)"
  assert set(res["methods"]) == {"retrain", "ugradsl"}
  assert "forgotten_test_acc" in res["methods"]["ugradsl"]
