"""The other baselines as recipes: SSD, IU (WoodFisher), Boundary Shrink and
Expanding, SCRUB.

The math is baselines.py's; this module feeds it the split's data, times
it, and returns each method's recipe (phases.Trained or phases.Computed).
Where the reference code leaves a choice open:

- SSD and IU compute their gradients in eval mode (BatchNorm's running
  statistics), as the references put the model in eval mode, on one device
  with plain jit whatever the parallel mode (the result is the same on
  every process of a job). Their batches come in a seeded shuffled order,
  the last one padded with weight-0 rows, so a short last batch is one
  batch of the mean, as a DataLoader gives it.
- IU's per-example retain gradients are of a seeded random sample of the
  retain set (num_samples + 2 examples, as the reference's loop consumes):
  the reference takes the first ones in the data set's stored order, which
  for CIFAR is shuffled; here images are sorted by class.
- Boundary Shrink attacks the frozen original model in eval mode, once,
  before fine-tuning (the reference attacks each batch as it comes, with
  the same frozen model, on the batch's augmented images); the labels then
  ride with their images through the fine-tuning epochs. It perturbs
  images: a text model's token ids are refused.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import baselines, batching, losses, train
from . import recipes as M
from .phases import Phase, Trained
from .configs import ConfigError
from .parallel import pmean


def _eval_loss(model, batch_stats):
  """loss(params, (x, y, w)) -> the mean cross entropy over the real rows, eval mode."""
  def loss(params, batch):
    x, y, w = batch
    logits = model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
    return jnp.sum(w * losses.cross_entropy(logits, y)) / jnp.maximum(jnp.sum(w), 1.0)
  return loss


def _batches(exp, indices, batch: int, stream: str):
  """One seeded, shuffled pass over `indices`: (x, y, w) host batches."""
  b, steps = batching.epochs(indices, batch, exp.cfg.seed, stream=zlib.crc32(stream.encode()))
  for s in range(steps):
    r = b(s)
    yield (exp.data.train_x[r["idx"]], np.asarray(exp.data.train_y[r["idx"]], np.int32),
           r["w"])


def _compiled(fn, *args):
  t0 = time.perf_counter()
  out = jax.jit(fn).lower(*args).compile()
  return out, time.perf_counter() - t0


def _batch_size(m, indices) -> int:
  return min(m.batch_size, len(indices))


# ---------------------------------------------------------------- SSD


def ssd(exp, orig, m):
  """Selective synaptic dampening (Foster et al., AAAI 2024): training-free."""
  model, params = exp.model(None), orig.state.params
  grad = jax.grad(_eval_loss(model, orig.state.batch_stats))

  def compute():
    s = exp.split
    bs = _batch_size(m, s.forget)
    first = next(_batches(exp, s.forget, bs, "ssd/forget"))
    g, compile_s = _compiled(grad, params, first)
    dampen, c2 = _compiled(functools.partial(baselines.ssd_dampen, selection=m.selection,
                                             dampening=m.dampening),
                           params, params, params)
    t0 = time.perf_counter()

    def importance(indices, stream):
      acc, n = baselines.importance_init(params), 0
      for batch in _batches(exp, indices, bs, stream):
        acc, n = baselines.importance_add(acc, g(params, batch)), n + 1
      return baselines.importance_mean(acc, n)
    # The forget set's importances and the whole training set's (D_f + D_r).
    imp_f = importance(s.forget, "ssd/forget")
    imp_d = importance(s.train, "ssd/train")
    new = jax.block_until_ready(dampen(params, imp_f, imp_d))
    changed = sum(int(np.sum(np.asarray(a) != np.asarray(b)))
                  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params)))
    return new, {"rte_s": time.perf_counter() - t0, "compile_s": compile_s + c2,
                 "dampened_weights": changed}
  return M.computed(orig, "ssd", m, compute)


# ---------------------------------------------------------------- IU

# Retain examples whose per-example gradients are computed at once.
IU_CHUNK = 64


def iu(exp, orig, m):
  """Influence unlearning with the WoodFisher inverse-Hessian estimate."""
  model, params = exp.model(None), orig.state.params
  loss = _eval_loss(model, orig.state.batch_stats)
  summed = jax.grad(lambda p, b: loss(p, b) * jnp.sum(b[2]))  # the batch's summed gradient

  def one(p, example):
    x, y = example
    return loss(p, (x[None], y[None], jnp.ones((1,), jnp.float32)))

  per_example = functools.partial(baselines.flat_per_example_grads, one)

  def compute():
    s = exp.split
    bs = _batch_size(m, s.forget)
    first = next(_batches(exp, s.forget, bs, "iu/forget"))
    g_sum, compile_s = _compiled(summed, params, first)
    t0 = time.perf_counter()

    def mean_grad(indices, stream):
      total = None
      for batch in _batches(exp, indices, bs, stream):  # every batch bs rows, padded
        gb = g_sum(params, batch)
        total = gb if total is None else jax.tree.map(jnp.add, total, gb)
      return jax.tree.map(lambda t: t / len(indices), total)
    gf = mean_grad(s.forget, "iu/forget")
    gr = mean_grad(s.retain, "iu/retain")
    k = min(baselines.woodfisher_num_examples(m.num_samples), len(s.retain))
    sample = np.random.default_rng([exp.cfg.seed, 0x1F]).permutation(s.retain)[:k]
    chunk = min(IU_CHUNK, k)

    def rows_of(idx):  # one shape for every chunk: the last is padded, then cut
      pad = np.concatenate([idx, np.repeat(idx[:1], chunk - len(idx))])
      return (exp.data.train_x[pad], np.asarray(exp.data.train_y[pad], np.int32))
    # Compiled before the clock starts, as every other method's steps are.
    rte_s = time.perf_counter() - t0
    first_rows = rows_of(sample[:chunk])
    pe, c1 = _compiled(per_example, params, first_rows)
    row = jax.eval_shape(per_example, params, first_rows)
    grads_shape = jax.ShapeDtypeStruct((k, *row.shape[1:]), row.dtype)
    update, c2 = _compiled(functools.partial(
        baselines.iu_update, n_forget=len(s.forget), n_retain=len(s.retain), alpha=m.scale,
        n=float(m.num_samples), recursion=m.woodfisher), params, gf, gr, grads_shape)
    t1 = time.perf_counter()
    rows = [pe(params, rows_of(idx))[:len(idx)]
            for idx in (sample[c:c + chunk] for c in range(0, k, chunk))]
    new = jax.block_until_ready(update(params, gf, gr, jnp.concatenate(rows)))
    return new, {"rte_s": rte_s + time.perf_counter() - t1,
                 "compile_s": compile_s + c1 + c2, "woodfisher_examples": int(k)}
  return M.computed(orig, "iu", m, compute)


# ---------------------------------------------------------------- Boundary Shrink


def boundary_shrink(exp, orig, m):
  """Boundary Shrink (Chen et al., CVPR 2023): each forget image's label
  becomes the class the original model gives its FGSM perturbation (the
  nearest wrong class), and the model is fine-tuned on D_f toward them."""
  if exp.data.modality != "image" or not np.issubdtype(exp.data.train_x.dtype, np.integer):
    raise ConfigError("boundary_shrink perturbs images (uint8 pixel levels); this data "
                      f"set's inputs are {exp.data.train_x.dtype} "
                      f"{'token ids' if exp.data.modality == 'text' else 'values'}")
  model = exp.model(None)
  v = {"params": orig.state.params, "batch_stats": orig.state.batch_stats}
  logits_fn = lambda x: model.apply(v, x, train=False)  # noqa: E731
  s = exp.split
  bs = min(m.batch_size, len(s.forget))
  label = jax.jit(functools.partial(baselines.fgsm_nearest_wrong_label, logits_fn,
                                    bound=m.bound))
  x0 = exp.data.train_x[s.forget[:bs]]
  t0 = time.perf_counter()
  label = label.lower(np.zeros_like(x0), np.zeros(bs, np.int32)).compile()
  attack_compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  new = np.empty(len(s.forget), np.int32)
  for c in range(0, len(s.forget), bs):
    idx, w = batching.padded(s.forget[c:c + bs], bs)
    out = np.asarray(label(exp.data.train_x[idx], np.asarray(exp.data.train_y[idx], np.int32)))
    new[c:c + bs] = out[:int(w.sum())]
  attack_s = time.perf_counter() - t0
  lookup = dict(zip(s.forget.tolist(), new.tolist()))
  base, spe = batching.epochs(s.forget, bs, exp.cfg.seed,
                              stream=zlib.crc32(b"boundary_shrink"), augment=m.augment)

  def batches(step):
    b = base(step)
    return {**b, "y": np.array([lookup[int(i)] for i in b["idx"]], np.int32)}
  return M.descent(exp, "boundary_shrink", m, orig, None, role="forget",
                   batches=(batches, spe, bs),
                   extra={"setup_s": attack_s, "setup_compile_s": attack_compile_s,
                          "shrunk_to_other_class":
                              float(np.mean(new != exp.data.train_y[s.forget]))})


# ---------------------------------------------------------------- SCRUB


def scrub_step(state, data, batch, hp, *, axis_name, model, tx, temperature: float,
               kd_weight: float, ce_weight: float):
  """One SCRUB step on a batch of one kind (batch["m"]: 1 on every row of a
  max batch from D_f, 0 of a min batch from D_r): max descends on -KL(teacher
  || student), min on ce_weight * CE + kd_weight * KL. The teacher is the
  original model, frozen in data["teacher"], in eval mode; the student is
  in train mode."""
  x, y = train.gather_augment(data, batch)
  w, is_max = batch["w"], batch["m"]
  t = data["teacher"]
  teacher = jax.lax.stop_gradient(
      model.apply({"params": t["params"], "batch_stats": t["batch_stats"]}, x, train=False))

  def objective(params):
    logits, bstats, _ = train.forward(model, params, state.batch_stats, x)
    kl = baselines.distill_kl_per_example(logits, teacher, temperature)
    ce = losses.cross_entropy(logits, y)
    per_row = jnp.where(is_max > 0, -kl, ce_weight * ce + kd_weight * kl)
    return train.weighted_mean(per_row, w, axis_name), (
        bstats, train.weighted_mean(kl, w, axis_name), train.weighted_mean(ce, w, axis_name))

  (loss, (bstats, kl, ce)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  grads, bstats = pmean((grads, bstats), axis_name)
  loss, kl, ce = pmean((loss, kl, ce), axis_name)
  norm = optax.tree.norm(grads)
  state = train.apply_update(state, grads, tx, hp, bstats, (loss, norm))
  return state, {"scrub_loss": loss, "kl": kl, "ce": ce, "grad_norm": norm,
                 "max_step": jnp.mean(is_max)}


def scrub_batches(forget, retain, batch: int, seed: int, epochs: int, msteps: int,
                  augment=False):
  """SCRUB's passes (baselines.scrub_schedule): in each of the first
  `msteps` epochs a max pass over D_f and then a min pass over D_r, after
  that min passes only. Every batch has `batch` rows (padded), "m" its kind."""
  f, f_steps = batching.epochs(forget, batch, seed, zlib.crc32(b"scrub/forget"), augment)
  r, r_steps = batching.epochs(retain, batch, seed, zlib.crc32(b"scrub/retain"), augment)
  plan = []  # (kind, batches function, index into it)
  for e in range(epochs):
    if "max" in baselines.scrub_schedule(e + 1, msteps):
      plan += [(1.0, f, e * f_steps + i) for i in range(f_steps)]
    plan += [(0.0, r, e * r_steps + i) for i in range(r_steps)]

  def batches(step: int) -> dict:
    kind, fn, i = plan[step]
    b = fn(i)
    return {**b, "m": np.full(batch, kind, np.float32)}
  return batches, len(plan)


def scrub(exp, orig, m):
  """SCRUB (Kurmanji et al., NeurIPS 2023): a student from the original
  model, pushed away from the frozen original (the teacher) on D_f and kept
  close to it, and to the labels, on D_r. One batch size for both passes
  (one compiled step), the preset's SGD in place of the reference's choice
  of Adam or SGD, and no learning-rate decay (the reference's first decay
  comes after the epochs it runs at this scale)."""
  s = exp.split
  bs = exp.batch_for(m.batch_size, s.forget)
  exp.par.check_batch(bs, "--scrub batch size")
  batches, total = scrub_batches(s.forget, s.retain, bs, exp.cfg.seed, m.epochs, m.msteps,
                                 m.augment)
  tx, schedule, opt_hp = M.optimizer(m, total, max(total // max(m.epochs, 1), 1))
  step = functools.partial(scrub_step, model=exp.model(), tx=tx, temperature=m.temperature,
                           kd_weight=m.kd_weight, ce_weight=m.ce_weight)
  state0 = train.create_state(orig.state.params, orig.state.batch_stats, tx)
  teacher = exp.par.replicate({"params": orig.state.params,
                               "batch_stats": orig.state.batch_stats})
  data = {**exp.device_data, "teacher": teacher}
  return Trained("scrub", state0, step, batches, total, bs, m, data=data,
                 hp={"total_steps": float(total), **opt_hp}, lr_fn=schedule)


# ---------------------------------------------------------------- Boundary Expanding


def _head_path(small, big) -> tuple:
  """The path of the one dict whose leaves change shape when the model gets
  one more class: the classification head."""
  paths = [p for (p, a), (_, b) in zip(jax.tree_util.tree_flatten_with_path(small)[0],
                                        jax.tree_util.tree_flatten_with_path(big)[0])
           if np.shape(a) != np.shape(b)]
  parents = {tuple(k.key for k in p[:-1]) for p in paths}
  if len(parents) != 1:
    raise ConfigError("boundary_expanding: could not find one classification head whose "
                      "output units are the classes")
  return parents.pop()


def _at(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def _with(tree, path, value):
  if not path:
    return value
  return {**tree, path[0]: _with(tree[path[0]], path[1:], value)}


def boundary_expanding(exp, orig, m):
  """Boundary Expanding (Chen et al., CVPR 2023): the head gets a shadow
  class K, the forget examples are trained toward it (D_f only), and the
  shadow unit is pruned, giving back a K-class model. It rebuilds the model
  with K + 1 outputs, so it needs a registry model; a user's model (the
  API) is refused."""
  if exp.user_model is not None:
    raise ConfigError("boundary_expanding rebuilds the model's head with one more class, "
                      "which only the library's own models (ugradsl_jax.models) can do")
  k = exp.data.num_classes
  big_exp = dataclasses.replace(
      exp, data=dataclasses.replace(exp.data, class_names=(*exp.data.class_names, "shadow")))
  big_vars = jax.eval_shape(lambda: train.init_variables(
      big_exp.model(None), 0, exp.data.input_shape, exp.data.train_x.dtype))
  path = _head_path(orig.state.params, big_vars["params"])
  key = jax.random.key(zlib.crc32(f"{exp.cfg.seed}/boundary_expanding".encode()))
  head = baselines.add_shadow_class(_at(orig.state.params, path), key)
  big = Phase(orig.state.replace(params=jax.device_get(
      _with(orig.state.params, path, head))), orig.outcome)
  s = exp.split
  bs = exp.batch_for(m.batch_size, s.forget)
  base, spe = batching.epochs(s.forget, bs, exp.cfg.seed,
                              stream=zlib.crc32(b"boundary_expanding"), augment=m.augment)
  shadow = np.full(bs, k, np.int32)

  def batches(step):
    return {**base(step), "y": shadow}

  def prune(phase: Phase) -> Phase:
    pruned = baselines.prune_shadow_class(_at(phase.state.params, path))
    return Phase(phase.state.replace(params=jax.device_get(
        _with(phase.state.params, path, pruned))), phase.outcome)
  # Saved with K + 1 classes: the phase's checkpoints hold the shadow head.
  return M.descent(big_exp, "boundary_expanding", m, big, None, role="forget",
                   batches=(batches, spe, bs), meta={"num_classes": k + 1}, finish=prune)


REGISTRY = {"ssd": ssd, "iu": iu, "boundary_shrink": boundary_shrink, "scrub": scrub,
            "boundary_expanding": boundary_expanding}
