"""Figures beside the tables: training curves, the UGradSL sweep's validation
heatmaps, and each method's signed gap to Retrain.

numpy and matplotlib only (matplotlib imported inside the functions):
drawing a figure must not start JAX or switch a global backend. This
module imports report (and audit's bucket constants), never the other way round.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

# As a module: curves' own `title` argument would shadow report.title.
from . import report
from .audit import BUCKET, num_buckets

METRICS = ("UA", "MIA", "RA", "TA")
# One colour per role, the same in every panel, so retain/forget/train read
# alike across methods that log different sets.
ROLES = (("retain", "tab:blue"), ("forget", "tab:red"), ("train", "tab:green"))
DPI = 110


def _pretty(name: str) -> str:
  return report.PRETTY.get(name, name)


def _num(v) -> float:
  """A float, NaN for None, non-numbers and +-inf (a diverged step): matplotlib
  breaks a line at NaN, while inf would wreck the autoscaled limits."""
  try:
    f = float(v)
  except (TypeError, ValueError):
    return math.nan
  return f if math.isfinite(f) else math.nan


def _finite(v) -> bool:
  return not math.isnan(_num(v))


# ---------------------------------------------------------------- curves


def series(rows: list[dict], key: str) -> np.ndarray:
  """One metric over a history, NaN where a row lacks it or holds None/NaN."""
  return np.array([_num(r.get(key)) for r in rows], float)


def roles(rows: list[dict]) -> list[str]:
  """The roles (retain / forget / train) a history logs accuracy or loss for."""
  keys = set().union(*(r.keys() for r in rows)) if rows else set()
  return [r for r, _ in ROLES if f"{r}_acc" in keys or f"{r}_loss" in keys]


def _grid_shape(n: int, max_cols: int = 4) -> tuple[int, int]:
  cols = max(1, min(max_cols, n))
  return math.ceil(max(n, 1) / cols), cols


def loss_limits(histories: dict[str, list[dict]]) -> tuple[float, float] | None:
  """One loss range for every panel, so that panels compare at a glance: the
  2nd to 98th percentile of every finite loss logged, so that one method's
  runaway forget loss (GA's grows without bound) does not flatten the rest."""
  vals = [series(rows, f"{role}_loss") for rows in histories.values() if rows
          for role in roles(rows)]
  vals = np.concatenate(vals) if vals else np.array([])
  vals = vals[np.isfinite(vals)]
  if not len(vals):
    return None
  lo, hi = np.percentile(vals, [2, 98])
  pad = 0.05 * (hi - lo) if hi > lo else 0.5
  return float(lo - pad), float(hi + pad)


def _curve_panel(ax, name: str, rows: list[dict], loss_lim=None) -> None:
  ax.set_title(_pretty(name), fontsize=10)
  if not rows:
    ax.text(0.5, 0.5, "no history", ha="center", va="center",
            transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    return
  steps = series(rows, "step")
  # Histories without a step column still plot, against the row index.
  x = steps if np.isfinite(steps).any() else np.arange(len(rows), dtype=float)
  color = dict(ROLES)
  loss_ax = ax.twinx()
  for role in roles(rows):
    acc, loss = series(rows, f"{role}_acc") * 100, series(rows, f"{role}_loss")
    if np.isfinite(acc).any():
      ax.plot(x, acc, color=color[role], ls="-", lw=1.4)
    if np.isfinite(loss).any():
      loss_ax.plot(x, loss, color=color[role], ls="--", lw=1.2)
  # Fixed 0-100 so accuracies compare across panels at a glance.
  ax.set_ylim(-2, 102)
  if loss_lim is not None:
    loss_ax.set_ylim(*loss_lim)
  ax.set_xlabel("step", fontsize=8)
  ax.set_ylabel("accuracy (%)", fontsize=8)
  loss_ax.set_ylabel("loss", fontsize=8)
  ax.tick_params(labelsize=7)
  loss_ax.tick_params(labelsize=7)
  ax.grid(alpha=0.3)


def curves(histories: dict[str, list[dict]], path, title: str = "") -> None:
  """One panel per method: accuracy (solid, left axis, %) and loss (dashed,
  right axis, one range shared by every panel: `loss_limits`) of each role
  its history logs, against the step."""
  from matplotlib.figure import Figure
  from matplotlib.lines import Line2D

  names = list(histories)
  nrows, ncols = _grid_shape(len(names))
  fig = Figure(figsize=(4.3 * ncols, 3.0 * nrows + 0.9))
  axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
  lim = loss_limits(histories)
  for ax, name in zip(axes, names):
    _curve_panel(ax, name, histories[name] or [], lim)
  for ax in axes[len(names):]:
    ax.set_visible(False)
  if not names:
    axes[0].set_visible(True)
    axes[0].text(0.5, 0.5, "no history", ha="center", va="center")
    axes[0].set_axis_off()
  seen = {r for rows in histories.values() for r in roles(rows or [])}
  color = dict(ROLES)
  handles = [Line2D([], [], color=color[r], lw=2, label=r) for r, _ in ROLES if r in seen]
  handles += [Line2D([], [], color="k", ls="-", label="accuracy (%)"),
              Line2D([], [], color="k", ls="--", label="loss (right axis, shared range)")]
  fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8,
             frameon=False)
  fig.suptitle(title, fontsize=10)
  # Room at the bottom for the shared legend, at the top for the suptitle.
  fig.tight_layout(rect=(0, 0.6 / (3.0 * nrows + 0.9), 1, 0.97))
  fig.savefig(Path(path), dpi=DPI)


# ---------------------------------------------------------------- sweep


def _index(values, v) -> int | None:
  """Where v sits on an axis; a float tolerance because JSON round-trips and
  float32 grids need not give back the exact axis value."""
  for i, a in enumerate(values):
    if _finite(v) and math.isclose(float(a), float(v), rel_tol=1e-6, abs_tol=1e-9):
      return i
  return None


def _betas(sweep: dict) -> list:
  """The beta values to draw a row for; [None] when beta is absent or single
  (then a trial's beta, if any, is not looked at)."""
  betas = list(sweep["axes"].get("beta") or [])
  return betas if len(betas) > 1 else [None]


def _cells(sweep: dict, beta=None):
  """(p index, alpha index, trial) of each trial on the grid, for one beta."""
  if beta is None and len(_betas(sweep)) > 1:
    raise ValueError("the sweep has several beta values; pass beta=")
  alphas, ps = sweep["axes"]["alpha"], sweep["axes"]["p"]
  for t in sweep["trials"]:
    if beta is not None and _index([beta], t.get("beta")) is None:
      continue
    i, j = _index(ps, t.get("p")), _index(alphas, t.get("alpha"))
    if i is not None and j is not None:
      yield i, j, t


def _value(trial: dict, key: str) -> float:
  return _num(trial.get(key) if key == "val_avg_gap" else (trial.get("val") or {}).get(key))


def sweep_grid(sweep: dict, key: str, beta=None) -> np.ndarray:
  """The (p x alpha) matrix of one quantity: "val_avg_gap" or a validation
  metric ("UA", "RA", ...); NaN where no trial (or no value) is. Diverged
  trials keep whatever value they stored; sweep_diverged says which they are."""
  out = np.full((len(sweep["axes"]["p"]), len(sweep["axes"]["alpha"])), np.nan)
  for i, j, t in _cells(sweep, beta):
    out[i, j] = _value(t, key)
  return out


def sweep_diverged(sweep: dict, beta=None) -> np.ndarray:
  """The (p x alpha) boolean mask of diverged trials."""
  out = np.zeros((len(sweep["axes"]["p"]), len(sweep["axes"]["alpha"])), bool)
  for i, j, t in _cells(sweep, beta):
    out[i, j] = bool(t.get("diverged"))
  return out


def chosen_cell(sweep: dict) -> tuple[int, int, int] | None:
  """(beta row, p index, alpha index) of the chosen setting, or None."""
  c = sweep.get("chosen")
  if not c:
    return None
  betas = _betas(sweep)
  row = 0 if betas == [None] else _index(betas, c.get("beta"))
  i, j = _index(sweep["axes"]["p"], c.get("p")), _index(sweep["axes"]["alpha"], c.get("alpha"))
  return None if None in (row, i, j) else (row, i, j)


SWEEP_PANELS = (("val_avg_gap", "Avg. Gap (smaller is better)", "viridis_r"),
                ("UA", "UA", "viridis"), ("RA", "RA", "viridis"))


def _limits(m: np.ndarray) -> tuple[float, float]:
  """Colour limits from the finite cells; a constant or empty panel gets a
  non-empty range so the colorbar can still be drawn."""
  fin = m[np.isfinite(m)]
  if not len(fin):
    return 0.0, 1.0
  lo, hi = float(fin.min()), float(fin.max())
  return (lo - 0.5, hi + 0.5) if hi - lo < 1e-9 else (lo, hi)


def _heat_panel(fig, ax, sweep, m, div, chosen, label, cmap_name) -> None:
  import matplotlib
  from matplotlib.patches import Rectangle

  # Diverged cells are painted apart; their numbers would stretch the scale.
  shown = np.where(div, np.nan, m)
  cmap = matplotlib.colormaps[cmap_name].with_extremes(bad="white")
  lo, hi = _limits(shown)
  im = ax.imshow(shown, cmap=cmap, vmin=lo, vmax=hi, origin="lower", aspect="auto")
  fig.colorbar(im, ax=ax, fraction=0.08, pad=0.03).ax.tick_params(labelsize=8)
  for i, j in zip(*np.nonzero(div)):
    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.8", edgecolor="0.5",
                           hatch="//", lw=0))
    ax.text(j, i, "div", ha="center", va="center", fontsize=8)
  for i, j in zip(*np.nonzero(np.isfinite(shown))):
    # Dark text on light cells and the other way round.
    r, g, b, _ = cmap(im.norm(shown[i, j]))
    ink = "k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w"
    ax.text(j, i, f"{shown[i, j]:.2f}", ha="center", va="center", fontsize=8, color=ink)
  if chosen is not None:
    i, j = chosen
    # Black outside, white inside: visible on dark and light cells alike.
    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="k", lw=4))
    ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="w", lw=1.2))
  alphas, ps = sweep["axes"]["alpha"], sweep["axes"]["p"]
  ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas], fontsize=8)
  ax.set_yticks(range(len(ps)), [f"{p:g}" for p in ps], fontsize=8)
  ax.set_xlabel("alpha", fontsize=9)
  ax.set_title(label, fontsize=10)


def oriented(sweep: dict) -> tuple[dict, tuple[str, str, str]]:
  """The sweep with its grid axes in the "alpha" (x) and "p" (y) slots and
  the rows in "beta", and the names of the fields now in those slots. A beta
  grid over one alpha or one p takes that axis' slot, so that it is drawn
  as one heatmap rather than a 1 x 1 panel per beta."""
  ax = sweep["axes"]
  n = {k: len(ax.get(k) or []) for k in ("alpha", "p", "beta")}
  if n["beta"] <= 1 or (n["alpha"] > 1 and n["p"] > 1):
    return sweep, ("alpha", "p", "beta")
  names = ("beta", "p", "alpha") if n["alpha"] <= 1 else ("alpha", "beta", "p")
  slots = ("alpha", "p", "beta")
  move = lambda d: {**d, **{slot: d.get(name) for slot, name in zip(slots, names)}}  # noqa: E731
  out = {**sweep, "axes": {slot: list(ax.get(name) or []) for slot, name in zip(slots, names)},
         "trials": [move(t) for t in sweep["trials"]]}
  out["axes"]["beta"] = out["axes"]["beta"][:1]  # a single row: not drawn as rows
  if sweep.get("chosen"):
    out["chosen"] = move(sweep["chosen"])
  return out, names


GRID_AXES = ("alpha", "p", "beta")


def sweep_slices(sweep: dict):
  """(file name suffix, the sensitivity map at one value of each other axis)
  for each combination of the values of the axes beyond alpha, p and beta
  (a mixing rule's own, --sweep_mix); ("", sweep) when there are none."""
  extra = [a for a in sweep["axes"] if a not in GRID_AXES]
  if not extra:
    yield "", sweep
    return
  for values in itertools.product(*(sweep["axes"][a] for a in extra)):
    at = dict(zip(extra, values))
    here = lambda t: all(t.get(a) == v for a, v in at.items())  # noqa: E731
    tag = ",".join(f"{a}={v:g}" for a, v in at.items())
    chosen = sweep.get("chosen") or {}
    yield f"_{tag}", {
        **sweep, "title": f"{sweep.get('title', '')}, {tag}",
        "axes": {a: v for a, v in sweep["axes"].items() if a in GRID_AXES},
        "trials": [t for t in sweep["trials"] if here(t)],
        "chosen": {a: v for a, v in chosen.items() if a in GRID_AXES} if here(chosen) else {}}


def sweep_heatmaps(sweep: dict, path) -> list[Path]:
  """sweep_heatmap of each of sweep_slices, `path` with the slice's suffix."""
  path = Path(path)
  out = []
  for suffix, part in sweep_slices(sweep):
    out.append(path.with_name(f"{path.stem}{suffix}{path.suffix}"))
    sweep_heatmap(part, out[-1])
  return out


def sweep_heatmap(sweep: dict, path) -> None:
  """Validation Avg. Gap, UA and RA over alpha x p, a row per beta value
  (over beta x p or alpha x beta when alpha or p has one value: `oriented`)."""
  from matplotlib.figure import Figure

  sweep, (xname, yname, _) = oriented(sweep)
  betas = _betas(sweep)
  na, npv = len(sweep["axes"]["alpha"]), len(sweep["axes"]["p"])
  w, h = max(3.4, 0.75 * na + 1.8), max(2.4, 0.5 * npv + 1.5)
  fig = Figure(figsize=(3 * w, len(betas) * h + 0.9))
  axes = fig.subplots(len(betas), len(SWEEP_PANELS), squeeze=False)
  chosen = chosen_cell(sweep)
  for row, beta in enumerate(betas):
    div = sweep_diverged(sweep, beta)
    here = chosen[1:] if chosen is not None and chosen[0] == row else None
    for ax, (key, label, cmap) in zip(axes[row], SWEEP_PANELS):
      _heat_panel(fig, ax, sweep, sweep_grid(sweep, key, beta), div, here, label, cmap)
      ax.set_xlabel(xname, fontsize=9)
    axes[row][0].set_ylabel(("" if beta is None else f"beta = {beta:g}\n") + yname,
                            fontsize=9)
  name = _pretty(sweep.get("method", "?"))
  fig.suptitle(f"{name} sensitivity (validation) - {sweep.get('title', '')}\n"
               "smaller Avg. Gap is better; boxed: chosen; hatched 'div': diverged; "
               "blank: not run", fontsize=10)
  fig.tight_layout()   # it makes room for the suptitle itself
  fig.savefig(Path(path), dpi=DPI)


# ---------------------------------------------------------------- gaps


def _metric(row: dict | None, k: str) -> float:
  return _num((row or {}).get(k))


def gap_table(res: dict) -> dict[str, dict[str, tuple[float, float | None]]]:
  """Per method (not Retrain) and metric: (mean of method - Retrain, sample std
  over seeds of that difference, or None with fewer than two seeds). A metric
  a method (or Retrain) lacks is left out of that method's dict."""
  if "retrain" not in res["methods"]:
    raise ValueError("gap_table needs a 'retrain' row to measure gaps against")
  per_seed = list((res.get("per_seed") or {}).values())
  ref = res["methods"]["retrain"]
  out = {}
  for name, row in res["methods"].items():
    if name == "retrain":
      continue
    out[name] = {}
    for k in METRICS:
      # Differences seed by seed, each against its own seed's Retrain: the
      # spread of the gap, not of the raw metric (the two co-vary by seed).
      d = np.array([_metric(s.get(name), k) - _metric(s.get("retrain"), k)
                    for s in per_seed], float)
      d = d[np.isfinite(d)]
      if len(d) > 1:
        out[name][k] = (float(d.mean()), float(d.std(ddof=1)))
      elif _finite(row.get(k)) and _finite(ref.get(k)):
        out[name][k] = (_num(row[k]) - _num(ref[k]), None)
  return out


def _label(name: str, row: dict, std: dict) -> str:
  g, s = row.get("avg_gap"), std.get("avg_gap")
  text = _pretty(name)
  if _finite(g):
    text += f"  (gap {float(g):.2f}" + (f" ± {float(s):.2f})" if _finite(s) else ")")
  if row.get("diverged") or row.get("n_diverged"):
    text += " [diverged]"
  if row.get("selected_in_run"):
    text += " [selected in-run]"
  return text


def gaps(res: dict, path) -> None:
  """Each method's signed distance to Retrain on UA, MIA, RA and TA."""
  from matplotlib.figure import Figure

  table = gap_table(res)
  names = list(table)
  stds = res.get("stds") or {}
  fig = Figure(figsize=(17, max(3.0, 0.42 * len(names) + 1.7)))
  axes = fig.subplots(1, len(METRICS), sharey=True)
  ys = np.arange(len(names))
  colors = ["tab:red" if "ugradsl" in n else "tab:blue" for n in names]
  for ax, k in zip(axes, METRICS):
    have = [i for i, n in enumerate(names) if k in table[n]]
    vals = np.array([table[names[i]][k][0] for i in have], float)
    errs = [table[names[i]][k][1] for i in have]
    xerr = (np.array([e or 0.0 for e in errs]) if any(e is not None for e in errs)
            else None)
    ax.barh(ys[have], vals, xerr=xerr, color=[colors[i] for i in have],
            capsize=3 if xerr is not None else 0, height=0.7)
    ax.axvline(0, color="k", lw=1.2, label="= Retrain")
    # Symmetric, from the data: gaps are a few points, a 0-100 axis hides them.
    reach = np.abs(vals) + (xerr if xerr is not None else 0)
    lim = 1.15 * float(reach.max()) if len(reach) and reach.max() > 0 else 1.0
    ax.set_xlim(-lim, lim)
    ax.set_title(k, fontsize=10)
    ax.set_xlabel("method - Retrain (points)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", alpha=0.3)
  axes[0].set_yticks(ys, [_label(n, res["methods"][n], stds.get(n, {})) for n in names],
                     fontsize=8)
  axes[-1].legend(loc="lower right", fontsize=8)
  if names:
    axes[0].set_ylim(len(names) - 0.5, -0.5)   # first method on top
  else:
    axes[0].text(0.5, 0.5, "no method besides Retrain", ha="center", va="center",
                 transform=axes[0].transAxes)
  seeds = res.get("seeds", [res.get("seed")])
  bars = "mean ± std over seeds (ddof=1)" if len(seeds) > 1 else "one seed"
  fig.suptitle(f"{report.title(res)} - seed(s) {', '.join(map(str, seeds))} - "
               f"bars: method - Retrain, {bars}; red: UGradSL family; "
               "gap = Avg. Gap", fontsize=10)
  fig.tight_layout()
  fig.savefig(Path(path), dpi=DPI)


# ---------------------------------------------------------------- audit


def audit_figure(res: dict, path) -> None:
  """Left: each fleet's per-example epsilon (competition forget score) as a
  histogram; right: the likelihood-ratio test's ROC curve per fleet."""
  from matplotlib.figure import Figure
  rows = res["methods"]
  fig = Figure(figsize=(11, 4.2))
  ax_e, ax_r = fig.subplots(1, 2)
  # One bin a 0.5-wide bucket of the forget score, and a last one for every
  # epsilon past the measurable range (no points; the peaky rule's cap too).
  top = BUCKET * num_buckets(res["num_models"])
  bins = np.arange(0.0, top + 1.5 * BUCKET, BUCKET)
  for name, r in rows.items():
    label = "Retrain (control)" if name == "retrain_control" else _pretty(name)
    eps = np.minimum(np.asarray(r["epsilons"], float), top + 0.5 * BUCKET)
    ax_e.hist(eps, bins=bins, histtype="step", lw=1.5,
              label=f"{label}  (F {r['forget_score']:.2f})")
    ax_r.plot(r["roc"]["fpr"], r["roc"]["tpr"], lw=1.5,
              label=f"{label}  (AUC {r['lira_auc']:.2f})")
  ax_e.set(xlabel=f"per-example epsilon (smaller: closer to Retrain; last bin: "
                  f">= {top:g}, no points)",
           ylabel="forget examples", title="forget-score epsilons")
  ax_r.plot([0, 1], [0, 1], "k:", lw=1)
  ax_r.set(xlabel="false positive rate", ylabel="true positive rate",
           title="per-example likelihood-ratio test", xlim=(0, 1), ylim=(0, 1))
  for ax in (ax_e, ax_r):
    ax.legend(fontsize=7)
  fig.suptitle(f"{report.title(res)}, {res['num_models']} models a fleet", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=DPI)


def write_figure(res: dict, workdir) -> None:
  """results.png beside results.json: the gaps to Retrain (none without one)."""
  from . import distributed
  if distributed.is_primary() and "retrain" in res["methods"]:
    gaps(res, Path(workdir) / "results.png")
