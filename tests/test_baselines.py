"""baselines.py against independent float64 numpy references.

The convex model throughout is multinomial logistic regression on a few
features, params {"b": [K], "w": [F, K]}: its per-example gradients, Fisher
and Hessian have closed forms, computed here in numpy with the parameter
order ravel_pytree uses (b, then w row-major).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ugradsl_jax import baselines as bl

F, K, M = 4, 3, 300
SCALES = np.array([0.5, 1.0, 1.5, 2.0])  # unequal, so a permuted Fisher is wrong


# ---------------------------------------------------------------- numpy model

def np_softmax(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def np_jac(x):
  """[N, K, D]: d logits / d theta, theta = (b, w row-major)."""
  n = x.shape[0]
  jac = np.zeros((n, K, K + F * K))
  jac[:, :, :K] = np.eye(K)
  for f in range(F):
    for k in range(K):
      jac[:, k, K + f * K + k] = x[:, f]
  return jac


def np_logits(theta, x):
  b, w = theta[:K], theta[K:].reshape(F, K)
  return x @ w + b


def np_example_grads(theta, x, y):
  """[N, D]: per-example gradients of CE, J^T (p - onehot)."""
  r = np_softmax(np_logits(theta, x)) - np.eye(K)[y]
  return np.einsum("nkd,nk->nd", np_jac(x), r)


def np_hessian(theta, x):
  """Exact Hessian of the mean CE: mean_n J^T (diag p - p p^T) J."""
  p = np_softmax(np_logits(theta, x))
  a = np.einsum("nk,kl->nkl", p, np.eye(K)) - np.einsum("nk,nl->nkl", p, p)
  jac = np_jac(x)
  return np.einsum("nkd,nkl,nle->de", jac, a, jac) / x.shape[0]


@pytest.fixture(scope="module")
def problem():
  """Data drawn from a multinomial logistic model, fitted to its (lightly
  ridged) maximum likelihood by Newton's method in float64."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(M, F)) * SCALES
  true = np.concatenate([rng.normal(size=K), rng.normal(size=F * K) * 0.7])
  p = np_softmax(np_logits(true, x))
  y = np.array([rng.choice(K, p=pi) for pi in p])
  theta = np.zeros(K + F * K)
  ridge = 1e-4
  for _ in range(30):
    g = np_example_grads(theta, x, y).mean(0) + ridge * theta
    h = np_hessian(theta, x) + ridge * np.eye(theta.size)
    theta = theta - np.linalg.solve(h, g)
  assert np.linalg.norm(np_example_grads(theta, x, y).mean(0) + ridge * theta) < 1e-10
  return x, y, theta


def jax_params(theta):
  return {"b": jnp.asarray(theta[:K], jnp.float32),
          "w": jnp.asarray(theta[K:].reshape(F, K), jnp.float32)}


def example_loss(params, example):
  x, y = example
  return -jax.nn.log_softmax(x @ params["w"] + params["b"])[y]


def mean_loss(params, batch):
  x, y = batch
  return jnp.mean(jax.vmap(lambda a, b: example_loss(params, (a, b)))(x, y))


def np_woodfisher_reference(grads, v, n):
  """Wfisher.woodfisher transliterated, step for step, in float64."""
  k_vec = v.copy()
  o_vec = None
  for g in grads:
    if o_vec is None:
      o_vec = g.copy()
    else:
      tmp = o_vec @ g
      k_vec -= (k_vec @ g / (n + tmp)) * o_vec
      o_vec -= (tmp / (n + tmp)) * o_vec
  return k_vec


def rel(a, b):
  return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


# ---------------------------------------------------------------- WoodFisher

def test_per_example_grads_match_closed_form(problem):
  x, y, theta = problem
  got = bl.flat_per_example_grads(example_loss, jax_params(theta),
                                  (jnp.asarray(x, jnp.float32), jnp.asarray(y)))
  np.testing.assert_allclose(got, np_example_grads(theta, x, y), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n,damping", [(M, 1e-2), (bl.WOODFISHER_N, 1.0), (50.0, 0.3)])
def test_woodfisher_exact_is_sherman_morrison(problem, n, damping):
  """The recursion equals (damping I + G^T G / n)^-1 v, solved densely."""
  x, y, theta = problem
  g = np_example_grads(theta, x, y)
  v = g[:30].mean(0) - g[30:].mean(0)
  want = np.linalg.solve(damping * np.eye(g.shape[1]) + g.T @ g / n, v)
  fn = jax.jit(bl.woodfisher_inverse_hvp, static_argnames=("n", "damping"))
  got = fn(jnp.asarray(g, jnp.float32), jnp.asarray(v, jnp.float32), n=n, damping=damping)
  assert rel(got, want) < 2e-5


def test_woodfisher_vs_hessian_and_negative_controls(problem):
  """At the MLE of a well-specified model the empirical Fisher estimates the
  Hessian: F^-1 v lands near (H + lambda I)^-1 v, and much nearer than the
  answers of wrong matrices (identity alone; a feature-permuted Fisher)."""
  x, y, theta = problem
  lam = 1e-2
  g = np_example_grads(theta, x, y)
  v = g[:30].mean(0) - g[30:].mean(0)
  d = g.shape[1]
  want = np.linalg.solve(np_hessian(theta, x) + lam * np.eye(d), v)
  wf = bl.woodfisher_inverse_hvp(jnp.asarray(g, jnp.float32),
                                 jnp.asarray(v, jnp.float32), n=M, damping=lam)
  err_wf = rel(wf, want)
  fisher = g.T @ g / M
  perm = np.concatenate([np.arange(K), K + np.roll(np.arange(F * K), K)])  # features 0->1->..
  wrong = {"identity": v / lam,
           "permuted": np.linalg.solve(fisher[np.ix_(perm, perm)] + lam * np.eye(d), v)}
  errs = {name: rel(w, want) for name, w in wrong.items()}
  print(f"WoodFisher vs exact Hessian: rel err {err_wf:.3f}; controls {errs}")
  assert err_wf < 0.25
  for name, e in errs.items():
    assert e > 3 * err_wf, name


def test_woodfisher_reference_loop(problem):
  """woodfisher_reference reproduces Wfisher.py's loop, which only moves v
  along the first gradient and so is far from F^-1 v."""
  x, y, theta = problem
  g = np_example_grads(theta, x, y)
  v = g[:30].mean(0) - g[30:].mean(0)
  n = bl.WOODFISHER_N
  want = np_woodfisher_reference(g, v, n)
  got = jax.jit(bl.woodfisher_reference)(jnp.asarray(g, jnp.float32), jnp.asarray(v, jnp.float32))
  assert rel(got, want) < 1e-5
  delta = want - v
  cos = abs(delta @ g[0]) / (np.linalg.norm(delta) * np.linalg.norm(g[0]))
  assert cos > 1 - 1e-9
  exact = np.linalg.solve(np.eye(g.shape[1]) + g.T @ g / n, v)
  print(f"reference loop vs exact F^-1 v (n={n}, damping 1): rel err {rel(want, exact):.3f}")
  assert rel(want, exact) > 10 * rel(
      bl.woodfisher_inverse_hvp(jnp.asarray(g, jnp.float32), jnp.asarray(v, jnp.float32)), exact)
  # damping 1 adds no arithmetic: bit for bit the same as the default call
  again = bl.woodfisher_reference(jnp.asarray(g, jnp.float32), jnp.asarray(v, jnp.float32),
                                  n=n, damping=1.0)
  assert np.array_equal(np.asarray(again), np.asarray(got))
  assert bl.woodfisher_num_examples() == 1002


@pytest.mark.parametrize("recursion", ["reference", "exact"])
def test_iu_update(problem, recursion):
  x, y, theta = problem
  nf = 30
  params = jax_params(theta)
  xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y)
  gf = jax.grad(mean_loss)(params, (xj[:nf], yj[:nf]))
  gr = jax.grad(mean_loss)(params, (xj[nf:], yj[nf:]))
  pex = bl.flat_per_example_grads(example_loss, params, (xj[nf:], yj[nf:]))
  alpha, n = 0.2, 1000.0
  new = jax.jit(bl.iu_update, static_argnames=("n_forget", "n_retain", "alpha", "n",
                                               "damping", "recursion"))(
      params, gf, gr, pex, n_forget=nf, n_retain=M - nf, alpha=alpha, n=n,
      recursion=recursion)
  # numpy: Wfisher.py's sums and scalings, then its update
  g = np_example_grads(theta, x, y)
  total = M
  forget_sum, retain_sum = g[:nf].sum(0), g[nf:].sum(0)
  v = forget_sum / total - retain_sum * (nf / (total * (M - nf)))
  if recursion == "reference":
    k = np_woodfisher_reference(g[nf:], v, n)
  else:
    k = np.linalg.solve(np.eye(v.size) + g[nf:].T @ g[nf:] / n, v)
  want = theta + alpha * k
  assert jax.tree.structure(new) == jax.tree.structure(params)
  np.testing.assert_allclose(ravel_pytree(new)[0], want, rtol=1e-5, atol=1e-6)
  assert not np.allclose(ravel_pytree(new)[0], theta, atol=1e-4)
  # a 0 mask keeps the bias bit for bit
  mask = {"b": jnp.zeros(K), "w": jnp.ones((F, K))}
  masked = bl.iu_update(params, gf, gr, pex, nf, M - nf, alpha, n, recursion=recursion,
                        mask=mask)
  assert np.array_equal(np.asarray(masked["b"]), np.asarray(params["b"]))
  np.testing.assert_array_equal(masked["w"], new["w"])


# ---------------------------------------------------------------- SSD

def test_ssd_importance_is_mean_of_squared_batch_grads(problem):
  x, y, theta = problem
  nb, bs = 5, 16
  xb = x[:nb * bs].reshape(nb, bs, F)
  yb = y[:nb * bs].reshape(nb, bs)
  got = jax.jit(bl.ssd_importance, static_argnums=0)(
      mean_loss, jax_params(theta), (jnp.asarray(xb, jnp.float32), jnp.asarray(yb)))
  batch_grads = np.stack([np_example_grads(theta, xb[i], yb[i]).mean(0) for i in range(nb)])
  want = (batch_grads ** 2).mean(0)
  np.testing.assert_allclose(ravel_pytree(got)[0], want, rtol=1e-4, atol=1e-8)
  per_example = (np_example_grads(theta, x[:nb * bs], y[:nb * bs]) ** 2).mean(0)
  assert not np.allclose(want, per_example, rtol=0.1)  # the two readings differ
  # a ragged tail added by hand, averaged over batches as len(dataloader) does
  tail = jax.grad(mean_loss)(jax_params(theta), (jnp.asarray(x[80:87], jnp.float32),
                                                  jnp.asarray(y[80:87])))
  acc = bl.importance_add(jax.tree.map(lambda a: a * nb, got), tail)
  want6 = (want * nb + np_example_grads(theta, x[80:87], y[80:87]).mean(0) ** 2) / (nb + 1)
  np.testing.assert_allclose(ravel_pytree(bl.importance_mean(acc, nb + 1))[0], want6,
                             rtol=1e-4, atol=1e-8)


def random_tree(rng, scale=1.0):
  return {"a": jnp.asarray(rng.normal(size=(6, 5)) * scale, jnp.float32),
          "b": {"c": jnp.asarray(rng.normal(size=(7,)) * scale, jnp.float32)}}


def test_ssd_dampen_huge_selection_is_identity():
  rng = np.random.default_rng(1)
  params = random_tree(rng)
  imp_f = jax.tree.map(jnp.square, random_tree(rng, 3.0))
  imp_o = jax.tree.map(jnp.square, random_tree(rng))
  same = jax.jit(bl.ssd_dampen, static_argnames=("selection",))(
      params, imp_f, imp_o, selection=1e30)
  for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(params)):
    assert np.array_equal(np.asarray(a), np.asarray(b))
  changed = jax.jit(bl.ssd_dampen)(params, imp_f, imp_o)
  diff = [np.asarray(a) != np.asarray(b)
          for a, b in zip(jax.tree.leaves(changed), jax.tree.leaves(params))]
  assert sum(d.sum() for d in diff) > 0
  # unselected entries are the inputs bit for bit, selected ones only shrink
  for a, b, f, o in zip(jax.tree.leaves(changed), jax.tree.leaves(params),
                        jax.tree.leaves(imp_f), jax.tree.leaves(imp_o)):
    sel = np.asarray(f) > np.asarray(o) * 10
    assert np.array_equal(np.asarray(a)[~sel], np.asarray(b)[~sel])
    assert np.all(np.abs(np.asarray(a)[sel]) <= np.abs(np.asarray(b)[sel]))


def np_dampen(p, f, o, selection, dampening, exponent=1.0, lower=1.0):
  """modify_weight in numpy: select, weight, bound by `lower`, multiply."""
  p = p.copy()
  loc = f > o * selection
  weight = ((o[loc] * dampening) / f[loc]) ** exponent
  weight[weight > lower] = lower
  p[loc] = p[loc] * weight
  return p


def test_ssd_dampen_hand_case():
  p = np.array([1.0, 2.0, 3.0, 4.0, -5.0], np.float32)
  f = np.array([0.0, 5.0, 100.0, 20.0, 40.0], np.float32)
  o = np.array([0.0, 1.0, 1.0, 1.0, 2.0], np.float32)
  # selection 10: entries 2 (100 > 10), 3 (20 > 10), 4 (40 > 20); 0 has 0 > 0 false
  got = bl.ssd_dampen({"p": jnp.asarray(p)}, {"p": jnp.asarray(f)}, {"p": jnp.asarray(o)})
  np.testing.assert_array_equal(got["p"], np.float32([1, 2, 3 / 100, 4 / 20, -5 * 2 / 40]))
  # dampening 50: weights 0.5, 2.5 -> bounded to 1, 2.5 -> 1
  got = bl.ssd_dampen({"p": jnp.asarray(p)}, {"p": jnp.asarray(f)}, {"p": jnp.asarray(o)},
                      dampening=50.0)
  np.testing.assert_array_equal(got["p"], np.float32([1, 2, 1.5, 4, -5]))
  rng = np.random.default_rng(2)
  p2, f2, o2 = (rng.normal(size=200), rng.exponential(size=200) * 4,
                rng.exponential(size=200) * 0.2)
  for kw in [dict(selection=10.0, dampening=1.0), dict(selection=5.0, dampening=3.0,
                                                       exponent=2.0, lower_bound=0.9)]:
    got = bl.ssd_dampen(jnp.asarray(p2), jnp.asarray(f2), jnp.asarray(o2), **kw)
    want = np_dampen(p2, f2, o2, kw["selection"], kw["dampening"], kw.get("exponent", 1.0),
                     kw.get("lower_bound", 1.0))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert not np.allclose(want, p2)


# ---------------------------------------------------------------- SCRUB

def np_kl(student, teacher, t):
  """DistillKL in float64: sum over batch and classes of p_t (log p_t - log
  p_s) at temperature t, times t^2, over the batch size."""
  ls = np.log(np_softmax(student / t))
  pt = np_softmax(teacher / t)
  return (pt * (np.log(pt) - ls)).sum() * t ** 2 / student.shape[0]


def np_ce(logits, y):
  return -np.log(np_softmax(logits)[np.arange(len(y)), y]).mean()


@pytest.fixture(scope="module")
def logits_pair():
  rng = np.random.default_rng(3)
  return (rng.normal(0, 3, (16, 10)), rng.normal(0, 3, (16, 10)), rng.integers(0, 10, 16))


@pytest.mark.parametrize("t", [1.0, 2.0, 4.0])
def test_distill_kl(logits_pair, t):
  s, te, _ = logits_pair
  sj, tj = jnp.asarray(s, jnp.float32), jnp.asarray(te, jnp.float32)
  got = jax.jit(bl.distill_kl, static_argnums=2)(sj, tj, t)
  np.testing.assert_allclose(got, np_kl(s, te, t), rtol=1e-5)
  np.testing.assert_allclose(jnp.mean(bl.distill_kl_per_example(sj, tj, t)), got, rtol=1e-6)
  assert abs(float(bl.distill_kl(tj, tj, t))) < 1e-6
  np.testing.assert_allclose(bl.scrub_max_loss(sj, tj, t), -np_kl(s, te, t), rtol=1e-5)


@pytest.mark.parametrize("gamma,alpha,t", [(1.0, 0.5, 2.0), (0.99, 0.001, 4.0)])
def test_scrub_min_loss(logits_pair, gamma, alpha, t):
  s, te, y = logits_pair
  got = jax.jit(bl.scrub_min_loss, static_argnums=(3, 4, 5))(
      jnp.asarray(s, jnp.float32), jnp.asarray(te, jnp.float32), jnp.asarray(y), t, gamma, alpha)
  np.testing.assert_allclose(got, gamma * np_ce(s, y) + alpha * np_kl(s, te, t), rtol=1e-5)


def notebook_passes(epochs, msteps):
  """The notebooks' SCRUB loop, recording the passes instead of running them."""
  passes = []
  for epoch in range(1, epochs + 1):
    if epoch <= msteps:
      passes.append((epoch, "max"))
    passes.append((epoch, "min"))
  return passes


@pytest.mark.parametrize("epochs,msteps", [(10, 3), (3, 2), (5, 0), (2, 5)])
def test_scrub_schedule(epochs, msteps):
  got = [(e, p) for e in range(1, epochs + 1) for p in bl.scrub_schedule(e, msteps)]
  assert got == notebook_passes(epochs, msteps)


def test_scrub_lr():
  for decay in ([5, 8, 9], [3, 5, 9]):
    for epoch in range(1, 12):
      want = 5e-4 * 0.1 ** np.sum(epoch > np.asarray(decay))
      assert bl.scrub_lr(epoch, 5e-4, decay, 0.1) == pytest.approx(want, rel=1e-12)


# ---------------------------------------------------------------- Boundary Shrink

# logits = x @ W + b with w_0 = 0 and w_1, w_2 >= 0: for true class 0 the CE
# gradient W (p - e_0) = p_1 w_1 + p_2 w_2 is positive in both coordinates,
# so FGSM adds +0.1 to each pixel and class k gains 0.1 * sum(w_k):
# 0.8 for class 1, 0.3 for class 2.
W = np.array([[0.0, 8.0, 0.0], [0.0, 0.0, 3.0]], np.float32)


def linear(b):
  return lambda x: x @ jnp.asarray(W) + jnp.asarray(b, jnp.float32)


def test_fgsm_nearest_wrong_label_by_hand():
  x = jnp.full((1, 2), 0.5, jnp.float32)
  y = jnp.zeros((1,), jnp.int32)
  # b = (5, 0.5, 3): clean logits (5, 4.5, 4.5), class 0; attacked (0.6, 0.6):
  # (5, 5.3, 4.8) -> class 1, the nearest wrong class (class 2 stays below 5)
  fn = linear([5.0, 0.5, 3.0])
  assert int(jnp.argmax(fn(x))) == 0
  x_adv = bl.fgsm_perturb(fn, x, y)
  np.testing.assert_array_equal(x_adv, np.full((1, 2), 153 / 255, np.float32))
  assert int(jax.jit(bl.fgsm_nearest_wrong_label, static_argnums=0)(fn, x, y)[0]) == 1
  # b = (6, ...): attacked (6, 5.3, 4.8): the attack fails, the label stays 0
  assert int(bl.fgsm_nearest_wrong_label(linear([6.0, 0.5, 3.0]), x, y)[0]) == 0
  # b = (5, 0, 3.4): clean (5, 4, 4.9); attacked (5, 4.8, 5.2) -> class 2
  assert int(bl.fgsm_nearest_wrong_label(linear([5.0, 0.0, 3.4]), x, y)[0]) == 2
  # near the edge the step is clipped to 1 and discretised to 1/255
  x_edge = jnp.asarray([[0.95, 0.2]], jnp.float32)
  np.testing.assert_array_equal(bl.fgsm_perturb(fn, x_edge, y),
                                np.float32([[1.0, np.round(np.float32(0.3) * 255) / 255]]))


def test_fgsm_uint8_levels_match_float_reference():
  rng = np.random.default_rng(4)
  x = rng.integers(0, 256, (32, 2)).astype(np.uint8)
  y = rng.integers(0, 3, 32).astype(np.int32)
  bias = np.float32([0.0, -1000.0, 0.0])
  fn255 = lambda z: (z / 255.0) @ jnp.asarray(W) + bias  # model on 0..255 inputs
  got = bl.fgsm_perturb(fn255, jnp.asarray(x), jnp.asarray(y))
  assert got.dtype == jnp.uint8
  # the reference on [0, 1] float32 images: the same levels
  fn01 = lambda z: z @ jnp.asarray(W) + bias
  x01 = x.astype(np.float32) / np.float32(255)  # ToTensor's division, correctly rounded
  ref = bl.fgsm_perturb(fn01, jnp.asarray(x01), jnp.asarray(y))
  np.testing.assert_array_equal(np.asarray(got), np.round(np.asarray(ref) * 255))
  # independently: sign of W (p - e_y) in numpy, then the reference's arithmetic
  p = np_softmax(x.astype(np.float64) / 255 @ W + bias)
  sign = np.sign((p - np.eye(3)[y]) @ W.T).astype(np.float32)
  want = np.round(np.clip(x.astype(np.float32) / np.float32(255) + sign * np.float32(0.1),
                          0, 1) * np.float32(255))
  np.testing.assert_array_equal(np.asarray(got), want.astype(np.uint8))
  assert np.all(np.abs(np.asarray(got, np.int32) - x.astype(np.int32)) <= 26)
  # the ties are real: some pixels moved by 25, others by 26
  moved = np.abs(np.asarray(got, np.int32) - x.astype(np.int32))[(want > 0) & (want < 255)]
  assert {25, 26} <= set(moved.tolist())
  jitted = jax.jit(bl.fgsm_nearest_wrong_label, static_argnums=0)(fn255, jnp.asarray(x),
                                                                  jnp.asarray(y))
  assert jitted.shape == (32,) and jitted.dtype == jnp.int32


# ---------------------------------------------------------------- Boundary Expanding

def test_shadow_class_roundtrip():
  rng = np.random.default_rng(5)
  d, k = 12, 10
  head = {"kernel": jnp.asarray(rng.normal(size=(d, k)), jnp.float32),
          "bias": jnp.asarray(rng.normal(size=(k,)), jnp.float32)}
  big = jax.jit(bl.add_shadow_class)(head, jax.random.key(0))
  assert big["kernel"].shape == (d, k + 1) and big["bias"].shape == (k + 1,)
  assert big["kernel"].dtype == head["kernel"].dtype
  limit = 1 / np.sqrt(d)
  assert np.all(np.abs(np.asarray(big["kernel"][:, -1])) <= limit)
  assert abs(float(big["bias"][-1])) <= limit
  assert np.any(np.asarray(big["kernel"][:, -1]) != 0)
  back = bl.prune_shadow_class(big)
  for name in head:
    assert np.array_equal(np.asarray(back[name]), np.asarray(head[name]))
  x = jnp.asarray(rng.normal(size=(5, d)), jnp.float32)
  small_logits = x @ head["kernel"] + head["bias"]
  big_logits = x @ big["kernel"] + big["bias"]
  np.testing.assert_allclose(big_logits[:, :k], small_logits, rtol=1e-6, atol=1e-6)
  assert np.array_equal(np.asarray(bl.shadow_labels(jnp.arange(4), k)), np.full(4, k))
  # a head without a bias
  nob = bl.prune_shadow_class(bl.add_shadow_class({"kernel": head["kernel"]},
                                                  jax.random.key(1)))
  assert set(nob) == {"kernel"} and np.array_equal(np.asarray(nob["kernel"]),
                                                   np.asarray(head["kernel"]))
