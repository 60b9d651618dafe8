"""The pure math of five unlearning baselines: IU (WoodFisher), SSD, SCRUB,
Boundary Shrink and Boundary Expanding.

No training loop, I/O or config here: small jittable functions over pytrees,
written to match these reference implementations (read, not copied):

  IU / WoodFisher     OPTML-Group/Unlearn-Saliency Classification/unlearn/Wfisher.py
  Boundary Shrink     ... Classification/unlearn/boundary_sh.py
  Boundary Expanding  ... Classification/unlearn/boundary_ex.py
  SSD                 if-loops/selective-synaptic-dampening src/ssd.py
                      (ParameterPerturber), src/forget_*_main.py for defaults
  SCRUB               meghdadk/SCRUB thirdparty/repdistiller/distiller_zoo/KD.py,
                      helper/loops.py (train_distill), the *_unlearning notebooks

Reference defaults (what a driver should use to reproduce them):

  IU      alpha 0.2 (arg_parser --alpha; the README tunes it per run);
          WoodFisher normaliser N = 1000 (ImageNet: 300000), over the first
          N + 2 retain examples in dataset order, one at a time, model in eval
          mode; the implicit initial inverse is the identity (damping 1).
  SSD     selection (alpha) 10, dampening (lambda) 1, exponent 1, lower bound
          1 (full-class ViT runs: selection 5); importances over the forget
          set and the FULL training set (retain + forget), batch 128, eval mode.
  SCRUB   small scale: adam, lr 5e-4, weight decay 0.1, 10 epochs, decay x0.1
          after epochs 5, 8, 9, gamma 1, alpha 0.5, T 2, msteps 3;
          large scale: sgd (momentum 0.9, wd 5e-4), lr 5e-4, 3 epochs, decay
          after 3, 5, 9, gamma 0.99, alpha 0.001, T 4, msteps 2, forget batch
          512, retain batch 256. beta (other KD terms) 0 in both.
  Boundary  bound 0.1 on [0, 1] images ("hard coding in the paper"); the
          optimizer, lr and epochs are SalUn's generic ones (SGD momentum 0.9,
          wd 5e-4, unlearn_lr 0.01, unlearn_epochs 10 as parser defaults).

Where the reference is silent or odd, and what this module chose:

 1. Wfisher.woodfisher is not the exact WoodFisher recursion. Its o_vec is
    only ever rescaled (o -= t / (N + t) * o), so it stays parallel to the
    first gradient g_0 and stands in for every F^-1 g_m; the first gradient
    never updates k_vec. The result is v minus a multiple of g_0. Both are
    here: `woodfisher_reference` reproduces that loop, `woodfisher_inverse_hvp`
    is the exact Sherman-Morrison recursion (= (lambda I + G^T G / N)^-1 v,
    see the tests). `iu_update` defaults to the reference's loop, since the
    baseline's published numbers come from it.
 2. The exact recursion must keep every F^-1 g_m: O(M D) memory (M rows of
    U) and O(M^2 D) time. The reference's loop is O(D).
 3. Damping: the reference has no parameter; k_vec = v means F_0^-1 = I,
    i.e. damping 1. `damping` generalises it (F_0^-1 = I / damping, applied to
    k and o alike), bit-identical to the reference at 1.
 4. N is the reference's constant normaliser, not the number of gradients
    given (1002 at the default); callers pass the gradients they want used.
 5. IU's gradients are taken as set means plus set sizes; the reference's
    sum-then-rescale gives v = n_f / (n_f + n_r) * (mean_f - mean_r), which
    is what `iu_direction` computes. The update is params + alpha * F^-1 v
    (a plus sign: ascent on the forget loss, descent on the retain loss),
    times SalUn's optional mask.
 6. SSD: `exponent == 1` skips the power, so that x ** 1 is exactly x (a
    float power may go through exp(log x)). The reference's "update[update >
    lower_bound] = lower_bound" is min(update, lower_bound).
 7. SSD: the reference averages over len(dataloader), a partial last batch
    counting as one batch; `ssd_importance` scans equal-size stacked batches
    and `importance_add` / `importance_mean` let a driver add a ragged tail.
 8. SCRUB: the reference's losses are batch means of T^2 * KL(teacher ||
    student) (kl_div summed, / batch size); `distill_kl_per_example` gives
    the per-example terms (their mean is `distill_kl`) for train.descent_step,
    which takes per-example losses. A teacher probability of exactly 0
    contributes 0 (kl_div's xlogy convention).
 9. SCRUB epochs are 1-based, as in the notebooks' `range(1, epochs + 1)`:
    epoch e runs a full max pass over the forget set if e <= msteps, then a
    full min pass over the retain set, sharing one optimizer.
10. Boundary Shrink: the reference attacks float [0, 1] images and
    discretises to 1/255. Here float inputs are taken as [0, 1]; integer
    (uint8) inputs as 0..255 levels and returned as levels: those of the
    reference's image, round(clip(l / 255 + s * bound, 0, 1) * 255) in float32
    for level l and gradient sign s. bound * 255 = 25.5, so every moved pixel
    sits on a .5 tie that float32 rounding of l / 255 + 0.1 decides; a table
    computed with numpy's correctly rounded float32 (as torch's) makes the
    levels independent of the backend (XLA:CPU's division by 255 is an ulp
    off half the time). The float path divides by 255 on the backend. The gradient is of the batch-mean CE (only its sign
    matters); an example whose attacked prediction is still its true class
    keeps its true label (the reference does nothing special). The attacked
    model is the frozen original (test_model), not the one being trained.
11. Boundary Expanding: the reference builds a new nn.Linear(D, K + 1) (torch
    default init: weight and bias ~ U(-1/sqrt(D), 1/sqrt(D))) and copies the
    K old units into it; `add_shadow_class` draws the new unit the same way
    from `key`. The reference never removes the shadow unit (it evaluates a
    K + 1-way head, a shadow prediction counting as wrong); the paper prunes
    it after training, which `prune_shadow_class` does.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import losses

WOODFISHER_N = 1000           # Wfisher.woodfisher's N (CIFAR / Tiny-ImageNet)
WOODFISHER_N_IMAGENET = 300000  # woodfisher_im's N
IU_ALPHA = 0.2                # arg_parser --alpha default
SSD_SELECTION = 10.0          # forget_*_main.py selection_weighting
SSD_DAMPENING = 1.0           # forget_*_main.py dampening_constant
BOUNDARY_BOUND = 0.1          # boundary_sh.py, on [0, 1] images


# --------------------------------------------------------------------------
# IU / WoodFisher

def woodfisher_num_examples(n: int = WOODFISHER_N) -> int:
  """How many retain examples the reference's loop consumes: it returns after
  processing index n + 1 ("if idx > N"), i.e. n + 2 of them (fewer if the
  retain set is smaller)."""
  return n + 2


def flat_per_example_grads(loss_fn: Callable, params, examples) -> jax.Array:
  """[M, D]: the raveled gradient of loss_fn(params, example) for each example
  (a pytree with a leading axis M), in ravel_pytree(params) order."""
  def one(example):
    return ravel_pytree(jax.grad(loss_fn)(params, example))[0]
  return jax.vmap(one)(examples)


def woodfisher_inverse_hvp(per_example_grads: jax.Array, v: jax.Array,
                           n: float = WOODFISHER_N, damping: float = 1.0) -> jax.Array:
  """Exact F^-1 v for F = damping * I + (1/n) sum_m g_m g_m^T, by the
  WoodFisher (Sherman-Morrison) recursion over the rows g_m of
  per_example_grads [M, D]:

    F_0^-1 = I / damping
    u_m = F_{m-1}^-1 g_m,  d_m = n + g_m . u_m
    F_m^-1 x = F_{m-1}^-1 x - u_m (u_m . x) / d_m

  carried as k = F_m^-1 v and the matrix U of the u's so far ([M, D]; rows
  not yet reached are zero and drop out). Never forms a D x D matrix:
  O(M D) memory, O(M^2 D) time. n and damping may be traced."""
  g_all = jnp.asarray(per_example_grads)
  v = jnp.asarray(v, g_all.dtype)
  m_total = g_all.shape[0]
  inv_damp = jnp.asarray(1.0 / damping, g_all.dtype)

  def step(carry, inputs):
    u_mat, d_vec, k = carry
    m, g = inputs
    # F_{m-1}^-1 g; d_vec is 1 on unreached rows, whose u rows are zero.
    u = inv_damp * g - u_mat.T @ ((u_mat @ g) / d_vec)
    d = n + g @ u
    k = k - (g @ k / d) * u
    return (u_mat.at[m].set(u), d_vec.at[m].set(d), k), None

  init = (jnp.zeros_like(g_all), jnp.ones((m_total,), g_all.dtype), inv_damp * v)
  (_, _, k), _ = jax.lax.scan(step, init, (jnp.arange(m_total), g_all))
  return k


def woodfisher_reference(per_example_grads: jax.Array, v: jax.Array,
                         n: float = WOODFISHER_N, damping: float = 1.0) -> jax.Array:
  """Wfisher.woodfisher's loop over the rows g_0, g_1, ... (O(D) memory):

    k = v / damping;  o = g_0 / damping
    for m >= 1:  t = o . g_m
                 k -= (k . g_m) / (n + t) * o
                 o -= t / (n + t) * o

  o stays parallel to g_0, so this is not F^-1 v (module docstring, item 1);
  at damping 1 it is the reference's arithmetic step for step. O(D) memory,
  O(M D) time; damping must be a Python float (n may be traced)."""
  g_all = jnp.asarray(per_example_grads)
  v = jnp.asarray(v, g_all.dtype)
  if damping != 1.0:  # at 1 skip the multiply: the reference's k and o as they are
    v, g0 = v / damping, g_all[0] / damping
  else:
    g0 = g_all[0]

  def step(carry, g):
    k, o = carry
    t = o @ g
    k = k - (k @ g / (n + t)) * o
    o = o - (t / (n + t)) * o
    return (k, o), None

  (k, _), _ = jax.lax.scan(step, (v, g0), g_all[1:])
  return k


def iu_direction(grad_forget, grad_retain, n_forget: int, n_retain: int) -> jax.Array:
  """The raveled v = n_f / (n_f + n_r) * (mean forget grad - mean retain grad).

  Wfisher.py sums per-example gradients, then scales the forget sum by
  1 / (n_f + n_r) and the retain sum by n_f / ((n_f + n_r) n_r); with means
  in place of sums that is this."""
  gf = ravel_pytree(grad_forget)[0]
  gr = ravel_pytree(grad_retain)[0]
  total = n_forget + n_retain
  return gf * (n_forget / total) - gr * (n_forget / total)


def iu_update(params, grad_forget, grad_retain, per_example_retain_grads,
              n_forget: int, n_retain: int, alpha: float = IU_ALPHA,
              n: float = WOODFISHER_N, damping: float = 1.0,
              recursion: str = "reference", mask=None):
  """IU's one-shot update: params + alpha * F^-1 v [* mask], as a pytree
  like params.

  grad_forget / grad_retain: pytrees like params, the gradients of the mean
  loss over the whole forget / retain set; per_example_retain_grads: [M, D]
  raveled per-example retain gradients (the reference: the first n + 2
  retain examples); recursion "reference" (Wfisher.py's loop) or "exact"
  (woodfisher_inverse_hvp); mask: SalUn's 0/1 pytree, multiplying the
  perturbation as apply_perturb does."""
  flat, unravel = ravel_pytree(params)
  v = iu_direction(grad_forget, grad_retain, n_forget, n_retain)
  solve = {"reference": woodfisher_reference, "exact": woodfisher_inverse_hvp}[recursion]
  perturb = unravel((alpha * solve(per_example_retain_grads, v, n, damping)).astype(flat.dtype))
  if mask is not None:
    perturb = jax.tree.map(lambda p, m: p * m, perturb, mask)
  return jax.tree.map(lambda p, d: p + d, params, perturb)


# --------------------------------------------------------------------------
# SSD

def importance_init(params):
  return jax.tree.map(jnp.zeros_like, params)


def importance_add(acc, grads):
  """acc + grads ** 2: one batch's term of ParameterPerturber.calc_importance."""
  return jax.tree.map(lambda a, g: a + jnp.square(g), acc, grads)


def importance_mean(acc, num_batches: int):
  return jax.tree.map(lambda a: a / num_batches, acc)


def ssd_importance(loss_fn: Callable, params, batches):
  """calc_importance: the mean over batches of the squared gradient of the
  batch-mean loss, loss_fn(params, batch) -> scalar (the reference: mean CE,
  model in eval mode). `batches`: a pytree with a leading axis of batches,
  all of one size (a ragged last batch: importance_add it separately, item 7).
  Note the squares are of batch gradients, not per-example ones."""
  def step(acc, batch):
    return importance_add(acc, jax.grad(loss_fn)(params, batch)), None
  acc, _ = jax.lax.scan(step, importance_init(params), batches)
  return importance_mean(acc, jax.tree.leaves(batches)[0].shape[0])


def ssd_dampen(params, imp_forget, imp_full, selection: float = SSD_SELECTION,
               dampening: float = SSD_DAMPENING, exponent: float = 1.0,
               lower_bound: float = 1.0):
  """ParameterPerturber.modify_weight: where imp_forget > selection *
  imp_full, p *= min((dampening * imp_full / imp_forget) ** exponent,
  lower_bound); every other entry is returned bit for bit. `exponent` must
  be a Python float (item 6); the others may be traced."""
  def one(p, f, o):
    selected = f > o * selection
    # Unselected entries may have f = 0; a safe denominator keeps NaNs out of
    # the discarded branch (and out of gradients, should anyone take them).
    weight = (o * dampening) / jnp.where(selected, f, 1)
    if exponent != 1.0:
      weight = weight ** exponent
    update = jnp.minimum(weight, lower_bound).astype(p.dtype)
    return jnp.where(selected, p * update, p)
  return jax.tree.map(one, params, imp_forget, imp_full)


# --------------------------------------------------------------------------
# SCRUB

def distill_kl_per_example(student_logits, teacher_logits, temperature: float):
  """[B]: T^2 * KL(softmax(teacher / T) || softmax(student / T)) per example."""
  log_ps = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, -1)
  log_pt = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature, -1)
  pt = jnp.exp(log_pt)
  terms = jnp.where(pt > 0, pt * (log_pt - log_ps), 0.0)  # kl_div's 0 log 0 = 0
  return jnp.sum(terms, -1) * temperature ** 2


def distill_kl(student_logits, teacher_logits, temperature: float):
  """DistillKL(T)(y_s, y_t): kl_div(log_softmax(y_s/T), softmax(y_t/T),
  summed) * T^2 / batch size, a scalar."""
  return jnp.mean(distill_kl_per_example(student_logits, teacher_logits, temperature))


def scrub_max_loss(student_logits, teacher_logits, temperature: float):
  """train_distill's "maximize" split (forget set): -DistillKL."""
  return -distill_kl(student_logits, teacher_logits, temperature)


def scrub_min_loss(student_logits, teacher_logits, labels, temperature: float,
                   gamma: float, alpha: float):
  """train_distill's "minimize" split (retain set), distill "kd" (beta's term
  is 0): gamma * mean CE(student, labels) + alpha * DistillKL."""
  ce = jnp.mean(losses.cross_entropy(student_logits, labels))
  return gamma * ce + alpha * distill_kl(student_logits, teacher_logits, temperature)


def scrub_schedule(epoch: int, msteps: int) -> tuple[str, ...]:
  """The passes of SCRUB epoch `epoch` (1-based, as the notebooks count), in
  order: ("max", "min") while epoch <= msteps, then ("min",). Each is one
  full pass: max over the forget set, min over the retain set."""
  return ("max", "min") if epoch <= msteps else ("min",)


def scrub_lr(epoch: int, base_lr: float, decay_epochs=(), decay_rate: float = 0.1) -> float:
  """repdistiller's adjust_learning_rate: base_lr * decay_rate ** (the number
  of decay epochs strictly below `epoch`, 1-based)."""
  return base_lr * decay_rate ** sum(epoch > e for e in decay_epochs)


# --------------------------------------------------------------------------
# Boundary Shrink

def _fgsm_level_table(bound: float) -> np.ndarray:
  """[3, 256] uint8: the level the reference's float32 arithmetic gives pixel
  level l moved by sign s (row s + 1): round(clip(l / 255 + s * bound, 0, 1)
  * 255). numpy's float32 division is correctly rounded, as torch's is; XLA:CPU
  divides by a constant with an error of an ulp, and at the .5 ties bound *
  255 = 25.5 creates (item 10), an ulp decides the level."""
  levels = np.arange(256, dtype=np.float32) / np.float32(255)
  signs = np.array([-1, 0, 1], np.float32)[:, None]
  moved = np.clip(levels[None] + signs * np.float32(bound), np.float32(0), np.float32(1))
  return np.round(moved * np.float32(255)).astype(np.uint8)


def fgsm_perturb(logits_fn: Callable, x, y, bound: float = BOUNDARY_BOUND):
  """boundary_sh.FGSM_perturb: one l-inf step up the batch-mean CE,
  clip(x + bound * sign(grad), 0, 1), discretised to 1/255.

  Float x is taken as [0, 1] images and comes back as round(x * 255) / 255;
  integer x (uint8) as 0..255 levels, and comes back as the levels of the
  reference's [0, 1] float32 image (item 10), in the input's dtype, looked
  up in a table so that they do not depend on the backend's division.
  logits_fn(x) must accept float images in the input's scale; `bound` must
  be a Python float."""
  integer = jnp.issubdtype(x.dtype, jnp.integer)
  xf = x.astype(jnp.float32)

  def mean_ce(z):
    return jnp.mean(losses.cross_entropy(logits_fn(z), y))

  sign = jnp.sign(jax.grad(mean_ce)(xf))
  if integer:
    table = jnp.asarray(_fgsm_level_table(bound))
    return table[sign.astype(jnp.int32) + 1, x.astype(jnp.int32)].astype(x.dtype)
  levels = jnp.round(jnp.clip(xf + sign * jnp.float32(bound), 0.0, 1.0) * 255.0)
  return levels / 255.0


def fgsm_nearest_wrong_label(logits_fn: Callable, x, y, bound: float = BOUNDARY_BOUND):
  """Boundary Shrink's labels: the class logits_fn predicts for the FGSM
  image (the attacked model is the frozen original). If the attack fails
  that is the true class, and the example is trained on its own label."""
  x_adv = fgsm_perturb(logits_fn, x, y, bound)
  x_adv = x_adv.astype(jnp.float32) if jnp.issubdtype(x_adv.dtype, jnp.integer) else x_adv
  return jnp.argmax(logits_fn(x_adv), -1).astype(y.dtype)


# --------------------------------------------------------------------------
# Boundary Expanding

def add_shadow_class(head_params: dict[str, Any], key: jax.Array) -> dict[str, Any]:
  """A Dense head {"kernel": [D, K], "bias": [K]} (bias optional) with one
  more output unit, [D, K + 1] / [K + 1]; the K old units are kept bit for
  bit and the new one is drawn like torch's nn.Linear default: kernel and
  bias ~ U(-1/sqrt(D), 1/sqrt(D)). The shadow class's label is K."""
  kernel = head_params["kernel"]
  fan_in = kernel.shape[0]
  limit = 1.0 / jnp.sqrt(jnp.float32(fan_in))
  k_key, b_key = jax.random.split(key)
  new_col = jax.random.uniform(k_key, (fan_in, 1), jnp.float32, -limit, limit)
  out = dict(head_params)
  out["kernel"] = jnp.concatenate([kernel, new_col.astype(kernel.dtype)], 1)
  if "bias" in head_params:
    bias = head_params["bias"]
    new_b = jax.random.uniform(b_key, (1,), jnp.float32, -limit, limit)
    out["bias"] = jnp.concatenate([bias, new_b.astype(bias.dtype)])
  return out


def prune_shadow_class(head_params: dict[str, Any]) -> dict[str, Any]:
  """The head without its last output unit (the paper's pruning step)."""
  out = dict(head_params)
  out["kernel"] = head_params["kernel"][:, :-1]
  if "bias" in head_params:
    out["bias"] = head_params["bias"][:-1]
  return out


def shadow_labels(y: jax.Array, num_classes: int) -> jax.Array:
  """boundary_ex's targets: every forget example labelled K (num_classes)."""
  return jnp.full_like(y, num_classes)
