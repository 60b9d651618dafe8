"""The other baselines as phases: SSD, IU (WoodFisher) and Boundary Shrink.

The math is baselines.py's; this module feeds it the split's data and
times it. Where the reference code leaves a choice open:

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

import functools
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from . import baselines, batching, losses
from . import methods as M
from .configs import ConfigError


def _eval_loss(model, batch_stats):
  """loss(params, (x, y, w)) -> the mean cross entropy over the real rows, eval mode."""
  def loss(params, batch):
    x, y, w = batch
    logits = model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)
    return jnp.sum(w * losses.cross_entropy(logits, y)) / jnp.maximum(jnp.sum(w), 1.0)
  return loss


def _batches(ctx, indices, batch: int, stream: str):
  """One seeded, shuffled pass over `indices`: (x, y, w) host batches."""
  b, steps = batching.epochs(indices, batch, ctx.cfg.seed, stream=zlib.crc32(stream.encode()))
  for s in range(steps):
    r = b(s)
    yield (ctx.data.train_x[r["idx"]], np.asarray(ctx.data.train_y[r["idx"]], np.int32),
           r["w"])


def _compiled(fn, *args):
  t0 = time.perf_counter()
  out = jax.jit(fn).lower(*args).compile()
  return out, time.perf_counter() - t0


def _batch_size(ctx, m, indices) -> int:
  del ctx
  return min(m.batch_size, len(indices))


# ---------------------------------------------------------------- SSD


def ssd(ctx, orig, m):
  """Selective synaptic dampening (Foster et al., AAAI 2024): training-free."""
  model, params = ctx.model(None), orig.state.params
  grad = jax.grad(_eval_loss(model, orig.state.batch_stats))

  def compute():
    s = ctx.split
    bs = _batch_size(ctx, m, s.forget)
    first = next(_batches(ctx, s.forget, bs, "ssd/forget"))
    g, compile_s = _compiled(grad, params, first)
    dampen, c2 = _compiled(functools.partial(baselines.ssd_dampen, selection=m.selection,
                                             dampening=m.dampening),
                           params, params, params)
    t0 = time.perf_counter()

    def importance(indices, stream):
      acc, n = baselines.importance_init(params), 0
      for batch in _batches(ctx, indices, bs, stream):
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
  return M.one_shot_phase(ctx, "ssd", m, orig, compute)


# ---------------------------------------------------------------- IU


def iu(ctx, orig, m):
  """Influence unlearning with the WoodFisher inverse-Hessian estimate."""
  model, params = ctx.model(None), orig.state.params
  loss = _eval_loss(model, orig.state.batch_stats)
  summed = jax.grad(lambda p, b: loss(p, b) * jnp.sum(b[2]))  # the batch's summed gradient

  def one(p, example):
    x, y = example
    return loss(p, (x[None], y[None], jnp.ones((1,), jnp.float32)))

  per_example = functools.partial(baselines.flat_per_example_grads, one)

  def compute():
    s = ctx.split
    bs = _batch_size(ctx, m, s.forget)
    first = next(_batches(ctx, s.forget, bs, "iu/forget"))
    g_sum, compile_s = _compiled(summed, params, first)
    t0 = time.perf_counter()

    def mean_grad(indices, stream):
      total = None
      for batch in _batches(ctx, indices, bs, stream):  # every batch bs rows, padded
        gb = g_sum(params, batch)
        total = gb if total is None else jax.tree.map(jnp.add, total, gb)
      return jax.tree.map(lambda t: t / len(indices), total)
    gf = mean_grad(s.forget, "iu/forget")
    gr = mean_grad(s.retain, "iu/retain")
    k = min(baselines.woodfisher_num_examples(m.num_samples), len(s.retain))
    sample = np.random.default_rng([ctx.cfg.seed, 0x1F]).permutation(s.retain)[:k]
    chunk = 64
    rows = []
    pe = jax.jit(per_example)
    for c in range(0, k, chunk):
      idx = sample[c:c + chunk]
      rows.append(pe(params, (ctx.data.train_x[idx],
                              np.asarray(ctx.data.train_y[idx], np.int32))))
    grads = jnp.concatenate(rows)
    update = jax.jit(functools.partial(
        baselines.iu_update, n_forget=len(s.forget), n_retain=len(s.retain), alpha=m.scale,
        n=float(m.num_samples), recursion=m.woodfisher))
    new = jax.block_until_ready(update(params, gf, gr, grads))
    return new, {"rte_s": time.perf_counter() - t0, "compile_s": compile_s,
                 "woodfisher_examples": int(k)}
  return M.one_shot_phase(ctx, "iu", m, orig, compute)


# ---------------------------------------------------------------- Boundary Shrink


def boundary_shrink(ctx, orig, m):
  """Boundary Shrink (Chen et al., CVPR 2023): each forget image's label
  becomes the class the original model gives its FGSM perturbation (the
  nearest wrong class), and the model is fine-tuned on D_f toward them."""
  if ctx.data.modality != "image" or not np.issubdtype(ctx.data.train_x.dtype, np.integer):
    raise ConfigError("boundary_shrink perturbs images (uint8 pixel levels); this data "
                      f"set's inputs are {ctx.data.train_x.dtype} "
                      f"{'token ids' if ctx.data.modality == 'text' else 'values'}")
  model = ctx.model(None)
  v = {"params": orig.state.params, "batch_stats": orig.state.batch_stats}
  logits_fn = lambda x: model.apply(v, x, train=False)  # noqa: E731
  s = ctx.split
  bs = min(m.batch_size, len(s.forget))
  label = jax.jit(functools.partial(baselines.fgsm_nearest_wrong_label, logits_fn,
                                    bound=m.bound))
  x0 = ctx.data.train_x[s.forget[:bs]]
  t0 = time.perf_counter()
  label = label.lower(np.zeros_like(x0), np.zeros(bs, np.int32)).compile()
  attack_compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  new = np.empty(len(s.forget), np.int32)
  for c in range(0, len(s.forget), bs):
    idx, w = batching.padded(s.forget[c:c + bs], bs)
    out = np.asarray(label(ctx.data.train_x[idx], np.asarray(ctx.data.train_y[idx], np.int32)))
    new[c:c + bs] = out[:int(w.sum())]
  attack_s = time.perf_counter() - t0
  lookup = dict(zip(s.forget.tolist(), new.tolist()))
  base, spe = batching.epochs(s.forget, bs, ctx.cfg.seed,
                              stream=zlib.crc32(b"boundary_shrink"), augment=m.augment)

  def batches(step):
    b = base(step)
    return {**b, "y": np.array([lookup[int(i)] for i in b["idx"]], np.int32)}
  return M._descent(ctx, "boundary_shrink", m, orig, None, role="forget",
                    batches=(batches, spe, bs),
                    extra={"setup_s": attack_s, "setup_compile_s": attack_compile_s,
                           "shrunk_to_other_class": float(np.mean(new != ctx.data.train_y[s.forget]))})


REGISTRY = {"ssd": ssd, "iu": iu, "boundary_shrink": boundary_shrink}
