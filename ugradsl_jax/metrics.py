"""UA, RA, TA, MIA-Efficacy (sklearn SVC on true-label confidence), Avg. Gap."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.svm import SVC

GAP_KEYS = ("UA", "MIA", "RA", "TA")


@functools.partial(jax.jit, static_argnums=(0,))
def _predict(model, variables, x):
  logits = model.apply(variables, x, train=False)
  return jnp.argmax(logits, -1), jax.nn.softmax(logits)


def predict(model, variables, images: np.ndarray, labels: np.ndarray,
            batch: int = 1000):
  """Eval-mode (correct [N] bool, true-label confidence [N] float64).

  Batches are padded to one shape so there is a single compilation.
  """
  n = len(images)
  correct = np.zeros(n, bool)
  conf = np.zeros(n, np.float64)
  for s in range(0, n, batch):
    x = images[s:s + batch]
    k = len(x)
    if k < batch:
      x = np.concatenate([x, np.zeros((batch - k, *x.shape[1:]), x.dtype)])
    pred, prob = jax.device_get(_predict(model, variables, x))
    y = labels[s:s + k]
    correct[s:s + k] = pred[:k] == y
    conf[s:s + k] = prob[np.arange(k), y]
  return correct, conf


def mia_efficacy(conf_retain, conf_test, conf_forget) -> float:
  """Share of the forget set an SVC on p_y(x) calls non-member (METHOD.md s.4).

  Members: the first N_test retain samples; non-members: the test set.
  """
  n = min(len(conf_test), len(conf_retain))
  x = np.concatenate([conf_retain[:n], conf_test[:n]])[:, None]
  y = np.concatenate([np.ones(n), np.zeros(n)])
  clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
  return 100.0 * float(np.mean(clf.predict(np.asarray(conf_forget)[:, None]) == 0))


def outputs(model, variables, data, split, batch: int = 1000) -> dict:
  """(correct, confidence) on forget, retain, val and test, one pass each."""
  def run(x, y, idx):
    return predict(model, variables, x[idx], y[idx], batch)
  return {"forget": run(data.train_x, data.train_y, split.forget),
          "retain": run(data.train_x, data.train_y, split.retain),
          "val": run(data.train_x, data.train_y, split.val),
          "test": run(data.test_x, data.test_y, split.test)}


def scores(out: dict, holdout: str = "test") -> dict:
  """UA/RA/TA/MIA in percent. holdout="val" puts the validation split where
  the test set stands (TA -> val accuracy, MIA's non-members): what
  hyper-parameter selection must use, so the test set is never looked at.
  """
  (c_f, p_f), (c_r, p_r), (c_t, p_t) = out["forget"], out["retain"], out[holdout]
  return {"UA": 100.0 - 100.0 * float(c_f.mean()), "RA": 100.0 * float(c_r.mean()),
          "TA": 100.0 * float(c_t.mean()), "MIA": mia_efficacy(p_r, p_t, p_f)}


def avg_gap(m: dict, ref: dict) -> float:
  return float(np.mean([abs(m[k] - ref[k]) for k in GAP_KEYS]))
