"""A per-example privacy audit from fleets of models, any cell of the grid.

  python -m experiments.audit --preset smoke --num_models 4 --methods ga,ugradsl \\
      --data_dir ../shared/data/cifar10-jpeg.tar.gz --workdir runs/audit_smoke

One split and one original model; N Retrains, N more Retrains (the control
row: a perfect unlearner against the first N), and N runs of each method
(ugradsl_jax/fleet.py). For each method: the NeurIPS 2023 competition's
forget score F and final score, and a U-LiRA-style per-example
likelihood-ratio test (AUC, TPR at 1% and 5% FPR), all against the Retrain
fleet (ugradsl_jax/audit.py). Writes audit.json, audit.md and audit.png;
every model is a resumable phase under <workdir>/fleet/.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

from . import unlearn as cli  # requests the host devices before JAX starts

from ugradsl_jax import audit, checkpoint, configs, datasets, distributed, fleet, plots  # noqa: E402,I001
from ugradsl_jax import protocol  # noqa: E402
from ugradsl_jax import methods, phases  # noqa: E402
from ugradsl_jax import report, workdir as workdir_lock  # noqa: E402


def main(argv=None) -> int:
  try:
    if cli.HOST_DEVICES_ERROR:
      raise cli.UsageError(cli.HOST_DEVICES_ERROR)
    argv = sys.argv[1:] if argv is None else list(argv)
    cli.import_plugins(cli.plugins_of(argv))
    p = cli.parser(prog="python -m experiments.audit", doc=__doc__)
    p.add_argument("--num_models", type=int, default=8,
                   help="models a fleet (default 8; >= 4: the likelihood-ratio test "
                        "fits on half of each fleet and scores the other half)")
    p.add_argument("--fleet", default="auto", choices=fleet.MODES,
                   help="vmap: each fleet as one program over the members' stacked "
                        "states; sequential: one member after another; auto (default): "
                        "vmap on a GPU or TPU, sequential on a CPU (same models)")
    a = p.parse_args(cli.join_negative_values(argv))
    # Flags of the shared parser that an audit cannot honour: it trains its own
    # Retrain fleets on one split, and a fleet member is one setting.
    for flag, given in (("--seeds", a.seeds), ("--retrain_from", a.retrain_from),
                        ("--no_retrain", a.no_retrain), ("--sweep_alpha", a.sweep_alpha),
                        ("--sweep_p", a.sweep_p), ("--sweep_beta", a.sweep_beta),
                        ("--sweep_mix", a.sweep_mix)):
      if given:
        raise cli.UsageError(f"{flag}: not for an audit, which trains its own Retrain "
                             "fleets on one split (--seed) and one setting a method")
    cli.import_plugins(a.imports)
    cfg = cli.config_from_args(a)
    if a.num_models < 4:
      raise cli.UsageError(f"--num_models {a.num_models}: at least 4")
    names = [n for n in cli.parse_methods(a.methods) if n != "retrain"]
    if not names:
      raise cli.UsageError("--methods: name at least one method besides retrain")
    cli.xla_cache.enable(a.compile_cache)
    workdir = Path(a.workdir or f"runs/audit_{cfg.preset}")
    data = datasets.load(cfg.dataset, a.data_dir, text=cfg.text)
    res = run(cfg, data, workdir, names, a.num_models, progress=not a.no_progress,
              fleet_mode=a.fleet)
    print("\n" + table(res["methods"]))
    print(f"\nwrote {workdir}/audit.json, audit.md, audit.png")
    return 0
  except (cli.UsageError, *cli.USER_ERRORS) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


def run(cfg: configs.Config, data, workdir: Path, names: list[str], n: int,
        progress: bool = False, fleet_mode: str = "auto") -> dict:
  t0 = time.perf_counter()
  exp = protocol.setup(cfg, data)
  protocol.preflight(exp, workdir, ["retrain", *names])
  workdir_lock.lock(workdir)
  runner = phases.Runner(workdir, progress)
  orig = phases.run(exp, runner, methods.original(exp))
  log = lambda s: print(s, flush=True)  # noqa: E731
  log(f"Retrain fleet ({n} models) ...")
  train = functools.partial(fleet.train_fleet, exp, runner, orig, log=log, mode=fleet_mode)
  retrained = train("retrain", n)
  log(f"control fleet ({n} more Retrains) ...")
  fleets = {fleet.CONTROL: train("retrain", n, offset=n)}
  for name in names:
    log(f"{name} fleet ({n} models) ...")
    fleets[name] = train(name, n)
  labels = exp.data.train_y[exp.split.forget]
  rows = fleet.audit_rows(fleets, retrained, labels, seed=cfg.seed)
  named = {k: r for k, r in rows.items() if k != fleet.CONTROL}
  agreement = audit.rank_agreement({k: r["forget_score"] for k, r in named.items()},
                                   {k: r["mia_gap"] for k, r in named.items()})
  res = {"dataset": cfg.dataset, "scenario": cfg.scenario, "model": cfg.model,
         "preset": cfg.preset, "seed": cfg.seed, "num_models": n,
         "forget_size": int(len(exp.split.forget)), "methods": rows,
         "retrain": {"RA": float(retrained.ra.mean()), "TA": float(retrained.ta.mean()),
                     "UA": float(retrained.ua.mean()), "MIA": float(retrained.mia.mean()),
                     "fleet_wall_s": retrained.wall_s},
         "svc_vs_audit": agreement,
         "fleet_mode": "vmap" if fleet.vmaps(fleet_mode) else "sequential",
         "config": cfg.to_dict(), "machine": report.machine(),
         "provenance": report.environment(),
         "wall_s": time.perf_counter() - t0}
  if distributed.is_primary():
    checkpoint.write_json(workdir / "audit.json", res)
    (workdir / "audit.md").write_text(markdown(res))
    plots.audit_figure(res, workdir / "audit.png")
  return res


def table(rows: dict) -> str:
  head = ("| Fleet | forget score F | final score | LiRA AUC | TPR@1%FPR | TPR@5%FPR "
          "| UA | RA | TA | MIA-Eff. (gap) |")
  lines = [head, "|" + "---|" * 10]
  for name, r in rows.items():
    label = "Retrain (control)" if name == fleet.CONTROL else report.PRETTY.get(name, name)
    lines.append(f"| {label} | {r['forget_score']:.3f} | {r['final_score']:.3f} | "
                 f"{r['lira_auc']:.3f} | {r['lira_tpr_at_1fpr']:.3f} | "
                 f"{r['lira_tpr_at_5fpr']:.3f} | {r['UA']:.2f} | {r['RA_u']:.2f} | "
                 f"{r['TA_u']:.2f} | {r['MIA_u']:.1f} ({r['mia_gap']:.1f}) |")
  return "\n".join(lines)


def markdown(res: dict) -> str:
  return "\n".join([
      f"# Per-example audit: {report.title(res)}", "",
      f"{res['num_models']} models a fleet; forget set of {res['forget_size']} examples; "
      f"split seed {res['seed']}. Machine: {res['machine']}. Wall time {res['wall_s']:.0f} s.",
      "", table(res["methods"]), "",
      "F: the NeurIPS 2023 unlearning competition's forget score against the Retrain "
      "fleet (larger: closer to Retrain; compare with the control row, which is what "
      f"perfect unlearning scores with {res['num_models']} models a fleet, not with "
      "1); final = F x (RA_u / RA_r) x "
      "(TA_u / TA_r). LiRA: a per-example Gaussian likelihood-ratio test, fitted on "
      "half of each fleet and scored on the other half (AUC 0.5 = perfect "
      "unlearning). The control row is a second Retrain fleet. MIA-Eff.: the tables' "
      "population SVC, the fleet's mean, with its distance to the Retrain fleet's "
      f"({res['retrain']['MIA']:.1f}).", "", _agreement(res["svc_vs_audit"]), ""])


def _agreement(a: dict) -> str:
  rho = "undefined" if a["spearman"] is None else f"{a['spearman']:.2f}"
  return (f"The SVC against the audit, over {a['num_methods']} methods: Spearman "
          f"correlation {rho} between F and the MIA-Efficacy gap's order. By F: "
          f"{', '.join(a['audit_order'])}. By the MIA gap: {', '.join(a['svc_order'])}.")


if __name__ == "__main__":
  sys.exit(main())
