"""UA, RA, TA, MIA-Efficacy (sklearn SVC on true-label confidence), Avg. Gap."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import parallel

GAP_KEYS = ("UA", "MIA", "RA", "TA")


@functools.partial(jax.jit, static_argnums=(0,))
def _predict(model, variables, x):
  logits = model.apply(variables, x, train=False)
  return jnp.argmax(logits, -1), jax.nn.softmax(logits)


def predict(model, variables, images: np.ndarray, labels: np.ndarray,
            batch: int = 1000, par=None):
  """Eval-mode (correct [N] bool, true-label confidence [N] float64).

  Batches are padded to one shape so there is a single compilation. With a
  multi-device `par` (parallel.Parallel) each batch is split across its
  devices and XLA partitions the forward pass (the batch is rounded up to a
  multiple of the device count).
  """
  layout = parallel.eval_layout(par, variables, batch)
  batch = layout.batch
  n = len(images)
  correct = np.zeros(n, bool)
  conf = np.zeros(n, np.float64)
  for s in range(0, n, batch):
    x = images[s:s + batch]
    k = len(x)
    if k < batch:
      x = np.concatenate([x, np.zeros((batch - k, *x.shape[1:]), x.dtype)])
    pred, prob = layout.fetch(_predict(model, layout.variables, layout.put(x)))
    y = labels[s:s + k]
    correct[s:s + k] = pred[:k] == y
    conf[s:s + k] = prob[np.arange(k), y]
  # A diverged model's last finite weights can still overflow its outputs:
  # such an example gets no confidence, rather than a NaN the SVC cannot take.
  conf[~np.isfinite(conf)] = 0.0
  return correct, conf


def mia_efficacy(conf_retain, conf_test, conf_forget) -> float:
  """Share of the forget set an SVC on p_y(x) calls non-member (METHOD.md s.4).

  Members: the first N_holdout of `conf_retain`, which must come in a
  random order (Split.mia_members); non-members: the holdout set.
  """
  n = min(len(conf_test), len(conf_retain))
  x = np.concatenate([conf_retain[:n], conf_test[:n]])[:, None]
  y = np.concatenate([np.ones(n), np.zeros(n)])
  # Imported here, not at the top: scikit-learn (scipy with it) takes ~1.5 s
  # to import, which a command that stops before scoring (a bad flag, --help,
  # a process killed mid-training) need not pay.
  from sklearn.svm import SVC
  clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
  return 100.0 * float(np.mean(clf.predict(np.asarray(conf_forget)[:, None]) == 0))


def outputs(model, variables, data, split, batch: int = 1000, par=None) -> dict:
  """(correct, confidence) on forget, retain, val and test, and on the held-out
  images of what was forgotten (class / sub-class scenarios) when there are any.

  The sets go through as one stream, so only the last batch is padded
  (set by set, the quick preset's forget and retain sets padded 2,000 extra
  images onto its 22,000, 9% more work).
  """
  parts = {"forget": (data.train_x, data.train_y, split.forget),
           "retain": (data.train_x, data.train_y, split.retain),
           "val": (data.train_x, data.train_y, split.val),
           "test": (data.test_x, data.test_y, split.test)}
  if len(split.forgotten_test):
    parts["forgotten_test"] = (data.test_x, data.test_y, split.forgotten_test)
  if len(split.forgotten_val):
    parts["forgotten_val"] = (data.train_x, data.train_y, split.forgotten_val)
  if len(split.mia_members) != len(split.retain):
    raise ValueError("split.mia_members must order the whole retain set "
                     "(split.make_split draws it)")
  x = np.concatenate([xs[idx] for xs, _, idx in parts.values()])
  y = np.concatenate([ys[idx] for _, ys, idx in parts.values()])
  correct, conf = predict(model, variables, x, y, batch, par)
  bounds = np.cumsum([0] + [len(idx) for _, _, idx in parts.values()])
  out = {name: (correct[a:b], conf[a:b])
         for name, a, b in zip(parts, bounds[:-1], bounds[1:])}
  # The members are retain images: their outputs are the retain set's, in
  # the members' random order.
  order = np.argsort(split.retain)
  at = order[np.searchsorted(split.retain[order], split.mia_members)]
  out["members"] = (out["retain"][0][at], out["retain"][1][at])
  return out


def scores(out: dict, holdout: str = "test") -> dict:
  """UA/RA/TA/MIA in percent. holdout="val" puts the validation split where
  the test set stands (TA -> val accuracy, MIA's non-members): what
  hyper-parameter selection must use, so the test set is never looked at.

  With forgotten held-out images (class / sub-class scenarios) the dict also
  has "forgotten_test_acc": accuracy on the test images of the forgotten
  classes (holdout="val": on their validation images).
  """
  (c_f, p_f), (c_r, _), (c_t, p_t) = out["forget"], out["retain"], out[holdout]
  res = {"UA": 100.0 - 100.0 * float(c_f.mean()), "RA": 100.0 * float(c_r.mean()),
         "TA": 100.0 * float(c_t.mean()),
         "MIA": mia_efficacy(out["members"][1], p_t, p_f)}
  held = out.get(f"forgotten_{holdout}")
  if held is not None and len(held[0]):
    res["forgotten_test_acc"] = 100.0 * float(held[0].mean())
  return res


def avg_gap(m: dict, ref: dict) -> float | None:
  """The mean absolute difference over UA, MIA, RA and TA; None when either
  side has no score (a method that diverged on its first step)."""
  if any(m.get(k) is None or ref.get(k) is None for k in GAP_KEYS):
    return None
  return float(np.mean([abs(m[k] - ref[k]) for k in GAP_KEYS]))
