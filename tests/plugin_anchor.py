"""A method from user code, as a researcher would add one: gradient ascent
on the forget set with an L2 anchor to the original weights, strength
`anchor` (its own hyper-parameter). Used by tests/test_api.py, in-process
and through the command line's --import."""

import jax
import jax.numpy as jnp

from ugradsl_jax import configs, methods

NAME = "ga_anchor"


@methods.register(NAME, reads=("epochs", "lr", "batch_size", "momentum", "weight_decay",
                               "alpha", "augment"),
                  hparams={"anchor": 0.0}, recipe={"lr": 0.01})
def ga_anchor(exp, orig, m):
  own = configs.method_hparams(NAME, m.method_hparams)
  start = orig.state.params

  def anchor(params, step, hp):
    dist = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(params),
                                                       jax.tree.leaves(start)))
    return hp["anchor"] * dist, {"anchor_dist": dist}
  return methods.descent(exp, NAME, m, orig, exp.split.forget, role="forget",
                         loss_fn=methods.smoothed_ce, sign=-1.0, reg_fn=anchor,
                         hp={"alpha": m.alpha, **own})
