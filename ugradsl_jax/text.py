"""20 Newsgroups as token arrays: posts -> BPE token ids [N, max_len] int32.

  load_20newsgroups(path, spec, text_cfg) -> dataset.Dataset

Sources: the "bydate" tree `train/<newsgroup>/<id>` and `test/<newsgroup>/<id>`
(a folder, or a .tar.gz / .tar of one, an optional top folder allowed), or,
with no path, scikit-learn's `fetch_20newsgroups` (downloads where there is
internet). Posts are raw bytes in no declared encoding; they are decoded as
latin-1, as scikit-learn does (every byte is a character, so decoding never
fails), and CRLF line ends become LF (scikit-learn's header stripping looks
for "\n\n" and, not finding it in a CRLF post, would drop the whole post).

`remove` strips parts of each post with scikit-learn's own functions, the
convention of its `fetch_20newsgroups(remove=...)`: "headers" (everything
before the first blank line), "footers" (a signature block after the last
blank or dashed line), "quotes" (quoted replies and "In article ... writes:"
lines).

The vocabulary is a BPE one (BERT's normaliser and pre-tokeniser), trained
with Hugging Face `tokenizers` on the training split's posts only. Its
training draws nothing at random, so the same posts and options give the same
vocabulary in any process (a test holds trainings in two processes equal);
there is no seed to set. Not WordPiece: tokenizers' WordPiece trainer numbers
its "##" continuation tokens in hash-map order, so the same posts give a
different vocabulary from run to run (huggingface/tokenizers#1794; measured
here too), while plain BPE numbers its alphabet sorted. It is shared, like the images' channel
statistics, by the original model, Retrain and every method: it is part of the
data, not of a model, and unlearning does not change it. Every post becomes
[CLS] + its first max_len - 1 tokens, padded with [PAD] (id 0) to max_len; the
model derives its attention mask from the padding. Arrays are cached by the
source's content and the options, like the decoded images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from .dataset import DataError, Dataset, cached, check_online, split_class_files

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP)
PAD_ID = 0  # SPECIAL_TOKENS' order fixes the ids; the model masks id 0
REMOVABLE = ("headers", "footers", "quotes")
_CACHE_VERSION = 2  # bump when what a cache file holds changes


# --------------------------------------------------------------------------
# Posts.

def decode(raw: bytes) -> str:
  return raw.decode("latin-1").replace("\r\n", "\n")


def strip(text: str, remove: tuple) -> str:
  """The post without the parts named in `remove` (scikit-learn's functions)."""
  from sklearn.datasets import _twenty_newsgroups as tn
  bad = sorted(set(remove) - set(REMOVABLE))
  if bad:
    raise DataError(f"text remove {', '.join(bad)}: unknown; known: {', '.join(REMOVABLE)}")
  if "headers" in remove:
    text = tn.strip_newsgroup_header(text)
  if "footers" in remove:
    text = tn.strip_newsgroup_footer(text)
  if "quotes" in remove:
    text = tn.strip_newsgroup_quoting(text)
  return text


def _posts_from_tar(path: Path) -> list[tuple[str, str, str, bytes]]:
  return split_class_files(path)


def _posts_from_folder(path: Path) -> list[tuple[str, str, str, bytes]]:
  return [(split, f.parent.name, f.name, f.read_bytes())
          for split in ("train", "test")
          for f in sorted((path / split).glob("*/*")) if f.is_file()]


def _posts_from_sklearn() -> list[tuple[str, str, str, bytes]]:
  from sklearn.datasets import fetch_20newsgroups
  items = []
  for split in ("train", "test"):
    b = fetch_20newsgroups(subset=split, shuffle=False, remove=())
    for text, target, fname in zip(b.data, b.target, b.filenames):
      # Back to bytes: its text was decoded as latin-1, which round-trips.
      items.append((split, b.target_names[target], Path(fname).name,
                    text.encode("latin-1", errors="replace")))
  return items


def _by_class(items, where: str, num_classes: int):
  """items -> {split: (class name list, texts, labels)}, sorted by (class, file)."""
  out, names = {}, None
  for split in ("train", "test"):
    rows = sorted((c, f, raw) for sp, c, f, raw in items if sp == split)
    classes = sorted({c for c, _, _ in rows})
    if len(classes) != num_classes:
      raise DataError(f"{where}: {split}/ has {len(classes)} newsgroup folders, "
                      f"expected {num_classes}")
    if names is not None and classes != names:
      raise DataError(f"{where}: train/ and test/ have different newsgroup folders")
    names = classes
    index = {c: i for i, c in enumerate(classes)}
    out[split] = ([decode(raw) for _, _, raw in rows],
                  np.array([index[c] for c, _, _ in rows], np.int32))
  return names, out


# --------------------------------------------------------------------------
# Tokenisation.

def train_tokenizer(texts: list[str], vocab_size: int, lowercase: bool = True):
  """A BPE tokenizer (BERT's normaliser and pre-tokeniser) trained on `texts`."""
  from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
  tok = Tokenizer(models.BPE(unk_token=UNK))
  tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                show_progress=False)
  tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
  tok.post_processor = processors.TemplateProcessing(
      single=f"{CLS} $A", special_tokens=[(CLS, tok.token_to_id(CLS))])
  return tok


def tokenizer_of(data):
  """The tokenizer that made a text Dataset's ids (for decoding them back)."""
  from tokenizers import Tokenizer
  return Tokenizer.from_str(data.tokenizer_json)


def encode(tok, texts: list[str], max_len: int) -> np.ndarray:
  """int32 [N, max_len]: [CLS] + the first tokens, [PAD]-padded."""
  tok.enable_truncation(max_len)
  tok.enable_padding(length=max_len, pad_id=PAD_ID, pad_token=PAD)
  ids = np.array([e.ids for e in tok.encode_batch(texts)], np.int32)
  tok.no_truncation()
  tok.no_padding()
  return ids.reshape(len(texts), max_len)


def _describe(text_cfg) -> str:
  removed = ",".join(text_cfg.remove) if text_cfg.remove else "nothing"
  return (f"removed {removed}; BPE {text_cfg.vocab_size}, "
          f"length {text_cfg.max_len}")


def build(items, spec, text_cfg, source: str, where: str, name: str):
  if text_cfg.vocab_size < len(SPECIAL_TOKENS) + 1 or text_cfg.max_len < 2:
    raise DataError(f"text vocab_size {text_cfg.vocab_size} / max_len "
                    f"{text_cfg.max_len}: too small (need >= 5 and >= 2)")
  names, parts = _by_class(items, where, spec.num_classes)
  remove = tuple(text_cfg.remove)
  train = [strip(t, remove) for t in parts["train"][0]]
  test = [strip(t, remove) for t in parts["test"][0]]
  tok = train_tokenizer(train, text_cfg.vocab_size, text_cfg.lowercase)
  return Dataset(name, encode(tok, train, text_cfg.max_len), parts["train"][1],
                 encode(tok, test, text_cfg.max_len), parts["test"][1],
                 class_names=tuple(names), mean=(), std=(),
                 source=f"{source}; {_describe(text_cfg)}",
                 vocab_size=tok.get_vocab_size(), tokenizer_json=tok.to_str())


# --------------------------------------------------------------------------
# Entry point and cache.

def load_20newsgroups(path: Path | None, spec, text_cfg, name: str = "20newsgroups"):
  """The Dataset of token ids (see the module docstring)."""
  if text_cfg is None:
    raise DataError(f"--dataset {name} needs the config's text options "
                    "(configs.get sets them)")
  if path is None:
    check_online(spec.download_host, f"{spec.title} (with scikit-learn)")
    try:
      items = _posts_from_sklearn()
    except Exception as e:
      raise DataError(f"could not fetch 20 Newsgroups with scikit-learn "
                      f"({type(e).__name__}: {e}); offline, pass --data_dir "
                      "../shared/data/20news-bydate.tar.gz") from None
    digest = hashlib.sha256(b"".join(raw for *_, raw in sorted(items))).hexdigest()[:16]
    return _cached(name, digest, text_cfg,
                   lambda: build(items, spec, text_cfg, "20 Newsgroups (scikit-learn, bydate)",
                                 "fetch_20newsgroups", name))
  where = f"--data_dir {path}"
  if path.is_file():
    if not path.name.endswith((".tar.gz", ".tgz", ".tar")):
      raise DataError(f"{where}: a file must be a .tar.gz of train/<newsgroup>/<id> "
                      "and test/<newsgroup>/<id>")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    load = lambda: _posts_from_tar(path)  # noqa: E731
  elif (path / "train").is_dir() and (path / "test").is_dir():
    items = _posts_from_folder(path)
    h = hashlib.sha256()
    for split, c, f, raw in items:
      h.update(f"{split}/{c}/{f}\0".encode())
      h.update(hashlib.sha256(raw).digest())
    digest = h.hexdigest()[:16]
    load = lambda: items  # noqa: E731
  else:
    raise DataError(f"{where}: expected train/ and test/ newsgroup folders or a "
                    ".tar.gz of them")

  def fresh():
    items = load()
    if not items:
      raise DataError(f"{where}: holds no train/<newsgroup>/<id> posts")
    return build(items, spec, text_cfg, f"20 Newsgroups (bydate: {path.name})", where, name)
  return _cached(name, digest, text_cfg, fresh)


def cache_key(name: str, digest: str, text_cfg) -> str:
  opts = json.dumps(dataclasses.asdict(text_cfg), sort_keys=True, default=list)
  return f"{name}-{digest}-{hashlib.sha256(opts.encode()).hexdigest()[:12]}-t{_CACHE_VERSION}"


def _cached(name: str, digest: str, text_cfg, make):
  return cached(cache_key(name, digest, text_cfg), make)
