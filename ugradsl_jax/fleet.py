"""Fleets of models on one split: N Retrains and N runs of each method.

A per-example privacy audit (audit.py) compares, example by example, the
forget set's statistics under many unlearned models with those under many
retrained ones. Every member of a fleet shares the split and, for the
unlearning methods, the original model; what differs is the member's own
randomness: its seed drives the initialisation (Retrain), the data order,
the augmentation draws and RL's labels. Member i of every fleet has seed
`member_seed(split_seed, i)`; the Retrain-vs-Retrain control row uses a
second Retrain fleet with the seeds after those.

Each member is an ordinary phase, checkpointed in
`<workdir>/fleet/member_<i>/<method>/` and reused or resumed on rerun.
Members train one after another ("sequential"), or, where the device gains
from it (`mode` "auto" on a GPU or TPU, or "vmap"), as one program over the
members' stacked states, each with its own batches (`train_together`); that
path checkpoints the stack under `<workdir>/fleet/vmap/` while it trains and
then saves each member where the sequential path keeps it, so either path
reads the other's members back.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import time
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from . import distributed, methods, metrics, phases, sweep
from .configs import ConfigError
from .experiment import Experiment
from .phases import Phase, Runner

CONTROL = "retrain_control"
MODES = ("auto", "vmap", "sequential")


def vmaps(mode: str) -> bool:
  """Whether a fleet trains as one vmapped program: "auto" where the device
  gains from it (a GPU or TPU; on a CPU the stacked members only queue up)."""
  if mode not in MODES:
    raise ConfigError(f"--fleet {mode!r}: must be one of {', '.join(MODES)}")
  return mode == "vmap" or (mode == "auto" and jax.default_backend() != "cpu")


def member_seed(split_seed: int, i: int) -> int:
  """Member i's seed: distinct from the split's and from every other member's."""
  return zlib.crc32(f"fleet/{split_seed}/{i}".encode()) & 0x7FFFFFFF


def member(exp: Experiment, runner: Runner, i: int) -> tuple[Experiment, Runner]:
  """Member i's experiment (its seed; the same split and device data) and
  runner (its own folder under the workdir's fleet/)."""
  cfg = dataclasses.replace(exp.cfg, seed=member_seed(exp.cfg.seed, i))
  workdir = None if runner.workdir is None else \
      Path(runner.workdir) / "fleet" / f"member_{i}"
  return dataclasses.replace(exp, cfg=cfg), dataclasses.replace(runner, workdir=workdir)


@functools.partial(jax.jit, static_argnums=(0,))
def _logits(model, variables, x):
  return model.apply(variables, x, train=False).astype(jnp.float32)


def forget_logits(exp: Experiment, phase: Phase, batch: int = 1000) -> np.ndarray:
  """Eval-mode logits [n_forget, classes] of a phase's model on the forget set."""
  model = exp.model(None)
  v = {"params": phase.state.params, "batch_stats": phase.state.batch_stats}
  x = exp.data.train_x[exp.split.forget]
  out = []
  for s in range(0, len(x), batch):
    xb = x[s:s + batch]
    k = len(xb)
    if k < batch and len(x) > batch:  # one shape for every batch
      xb = np.concatenate([xb, np.zeros((batch - k, *xb.shape[1:]), xb.dtype)])
    out.append(np.asarray(_logits(model, v, xb))[:k])
  return np.concatenate(out)


@dataclasses.dataclass
class Fleet:
  name: str
  logits: np.ndarray        # [N, n_forget, classes]
  ra: np.ndarray            # [N] retain accuracy, %
  ta: np.ndarray            # [N] test accuracy, %
  ua: np.ndarray            # [N] 100 - forget accuracy, %
  mia: np.ndarray           # [N] MIA-Efficacy (the tables' population SVC), %
  wall_s: float             # training and scoring the fleet, as run now
  rte_s: float              # the members' RTE summed, as each phase recorded it


def _member_recipe(exp: Experiment, runner: Runner, orig: Phase, method: str, i: int):
  """(member i's experiment, runner, and recipe of `method`)."""
  mexp, mrunner = member(exp, runner, i)
  if method == "retrain":
    recipe = methods.train_from_scratch(mexp, "retrain", mexp.split.retain, mexp.cfg.pretrain)
  else:
    recipe = methods.REGISTRY[method](mexp, orig, mexp.cfg.methods[method])
  return mexp, mrunner, recipe


def train_together(exp: Experiment, runner: Runner, built: list, ids: list[int]) -> dict:
  """{member id: Phase} of members `ids` (their `built` (exp, runner,
  Trained) triples) trained as one program: the step vmapped over their
  stacked states and hp, each member with its own batches (its data order,
  augmentation and labels), the data shared. Each member is then saved as
  the finished phase the sequential path would have made (its RTE the
  stack's divided by the members)."""
  rs = [r for _, _, r in built]
  r0, n = rs[0], len(rs)
  name = f"{r0.name}_{zlib.crc32(','.join(map(str, ids)).encode()):08x}"
  stacked = phases.Trained(
      name=name, state0=sweep.stack([jax.device_get(r.state0) for r in rs]),
      step=sweep.vmapped(r0.step, batch_axis=1),
      batches=lambda step: sweep.stack_batches([r.batches(step) for r in rs]),
      num_steps=r0.num_steps, images_per_step=r0.images_per_step * n,
      recipe={"members": list(ids), "recipe": dataclasses.asdict(r0.recipe)},
      data=r0.data, lr_fn=r0.lr_fn, meta=r0.meta,
      hp={k: np.stack([np.asarray(r.hp[k], np.float32) for r in rs]) for k in r0.hp})
  where = dataclasses.replace(runner, workdir=None if runner.workdir is None else
                              Path(runner.workdir) / "fleet" / "vmap")
  phase = phases.run(exp, where, stacked)
  o = phase.outcome
  out = {}
  for k, (state, (mexp, mrunner, r)) in enumerate(zip(sweep.unstack(phase.state, n), built)):
    bad = bool(np.asarray(o["nonfinite"])[k])
    outcome = {**{key: v for key, v in o.items() if key != "history"},
               "rte_s": o["rte_s"] / n, "compile_s": o["compile_s"] / n,
               "io_s": o["io_s"] / n, "diverged": bad, "diverged_step": None,
               "no_finite_step": False, "nonfinite": bad, "last_metrics": None,
               **r.extra, "trained_with": n}
    phases.save_finished(mexp, mrunner, r, state, outcome)
    member_phase = Phase(state, outcome)
    out[ids[k]] = member_phase if r.finish is None else r.finish(member_phase)
  if where.workdir is not None and distributed.is_primary():
    shutil.rmtree(where.workdir / name, ignore_errors=True)  # every member is saved
  return out


def train_fleet(exp: Experiment, runner: Runner, orig: Phase, method: str, n: int, *,
                offset: int = 0, log=print, mode: str = "auto") -> Fleet:
  """`n` members of `method` (retrain: trained from scratch) with member
  seeds offset .. offset + n - 1, one after another or (`mode`, vmaps) the
  unfinished ones as one program."""
  t0 = time.perf_counter()
  ids = list(range(offset, offset + n))
  built = [_member_recipe(exp, runner, orig, method, i) for i in ids]
  together = {}
  if vmaps(mode) and all(isinstance(r, phases.Trained) for _, _, r in built):
    todo = [k for k, (_, mrunner, r) in enumerate(built) if not phases.finished(mrunner, r)]
    if todo:
      together = train_together(exp, runner, [built[k] for k in todo], [ids[k] for k in todo])
  logits, ra, ta, ua, mia, rte = [], [], [], [], [], 0.0
  for i, (mexp, mrunner, recipe) in zip(ids, built):
    phase = together.get(i) or phases.run(mexp, mrunner, recipe)
    if phase.outcome.get("diverged"):
      log(f"warning: {method} member {i} diverged at step {phase.outcome['diverged_step']}")
    rte += float(phases.cost(phase.outcome)["rte_s"] or 0.0)  # as a table row counts it
    out = metrics.outputs(mexp.model(None), {"params": phase.state.params,
                                             "batch_stats": phase.state.batch_stats},
                          mexp.data, mexp.split, mexp.cfg.eval_batch, mexp.par)
    sc = metrics.scores(out)
    ra.append(sc["RA"])
    ta.append(sc["TA"])
    ua.append(sc["UA"])
    mia.append(sc["MIA"])
    logits.append(forget_logits(mexp, phase, exp.cfg.eval_batch))
  return Fleet(method, np.stack(logits), np.array(ra), np.array(ta), np.array(ua),
               np.array(mia), time.perf_counter() - t0, rte)


def audit_rows(fleets: dict[str, Fleet], retrained: Fleet, labels: np.ndarray,
               seed: int = 0) -> dict:
  """Per fleet (a method's, or the Retrain control): the competition's forget
  score and final score, and the per-example likelihood-ratio test, each
  against the `retrained` fleet."""
  from . import audit
  r = audit.logit_scaled_confidence(retrained.logits, labels)
  rows = {}
  for name, fl in fleets.items():
    u = audit.logit_scaled_confidence(fl.logits, labels)
    eps = audit.example_epsilons(u, r)
    f = audit.forget_score(u, r)
    lira = audit.lira(u, r, seed=seed)
    util = {"RA_u": float(fl.ra.mean()), "RA_r": float(retrained.ra.mean()),
            "TA_u": float(fl.ta.mean()), "TA_r": float(retrained.ta.mean())}
    rows[name] = {
        "forget_score": float(f),
        "final_score": float(audit.final_score(f, util["RA_u"], util["RA_r"],
                                               util["TA_u"], util["TA_r"])),
        "lira_auc": float(lira["auc"]), "lira_tpr_at_1fpr": float(lira["tpr_at_1fpr"]),
        "lira_tpr_at_5fpr": float(lira["tpr_at_5fpr"]),
        "roc": {"fpr": np.asarray(lira["fpr"]).tolist(), "tpr": np.asarray(lira["tpr"]).tolist()},
        "epsilons": np.asarray(eps).tolist(),
        "UA": float(fl.ua.mean()), **util,
        # The population SVC's verdict, as the tables score it: the fleet's
        # mean MIA-Efficacy and its distance to the Retrain fleet's.
        "MIA_u": float(fl.mia.mean()), "MIA_r": float(retrained.mia.mean()),
        "mia_gap": float(abs(fl.mia.mean() - retrained.mia.mean())),
        "num_models": int(len(fl.logits)), "fleet_wall_s": fl.wall_s, "fleet_rte_s": fl.rte_s}
  return rows
