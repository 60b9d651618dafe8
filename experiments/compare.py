"""Rank methods over seeds with per-seed paired differences (no training, no JAX).

  python -m experiments.compare experiments/results/quick_all_seeds_1_2_3 \\
      experiments/results/ranking_seeds_6_7 --method ugradsl_plus

Pools the per-seed rows of one cell's results folders (or results.json
files): the reported seeds and further seeds run later with the same
recipes (ugradsl_jax/ranking.py refuses other cells or recipes). Prints the
methods by mean Avg. Gap, then `--method` against each rival (`--against`,
default: every method ranked near it, two either side) seed by seed: the
differences (negative: --method closer to Retrain), their mean and std, wins
and losses, and the one-sided sign test's p-value. `--json PATH` writes the
same as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ugradsl_jax import ranking, report


def _load(path: str) -> dict:
  p = Path(path)
  p = p / "results.json" if p.is_dir() else p
  if not p.exists():
    raise ValueError(f"{path}: no results.json there")
  return json.loads(p.read_text())


def compare(results: list[dict], method: str, against: list[str] | None = None,
            key: str = "avg_gap") -> dict:
  per_seed = ranking.merge(results)
  order = ranking.order(per_seed, key)
  names = [n for n, *_ in order]
  if method not in names:
    raise ValueError(f"--method {method}: not in the results (they hold {', '.join(names)})")
  if against is None:
    i = names.index(method)
    against = [n for n in names[max(0, i - 2):i + 3] if n != method]
  unknown = [n for n in against if n not in names]
  if unknown:
    raise ValueError(f"--against: {', '.join(unknown)} not in the results")
  return {"seeds": list(per_seed), "key": key,
          "order": [{"method": n, "mean": m, "std": s, "num_seeds": k}
                    for n, m, s, k in order],
          "pairs": [ranking.paired(per_seed, method, b, key) for b in against]}


def markdown(res: dict) -> str:
  pretty = lambda n: report.PRETTY.get(n, n)  # noqa: E731
  lines = [f"Seeds {', '.join(map(str, res['seeds']))}; {res['key']} (smaller is better).",
           "", "| Method | mean ± std | seeds |", "|---|---|---|"]
  lines += [f"| {pretty(r['method'])} | {r['mean']:.2f} ± {r['std']:.2f} | {r['num_seeds']} |"
            for r in res["order"]]
  lines += ["", "| pair | per-seed difference | mean ± std | wins / ties / losses | "
            "sign test p |", "|---|---|---|---|---|"]
  for p in res["pairs"]:
    diffs = " / ".join(f"{d:+.2f}" for d in p["diffs"])
    lines.append(f"| {pretty(p['a'])} − {pretty(p['b'])} | {diffs} | {p['mean']:+.2f} ± "
                 f"{p['std']:.2f} | {p['wins']} / {p['ties']} / {p['losses']} | "
                 f"{p['sign_p']:.3f} |")
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m experiments.compare", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("results", nargs="+", help="results folders or results.json files of one cell")
  p.add_argument("--method", required=True, help="the method whose rank is claimed")
  p.add_argument("--against", default=None,
                 help="comma list of rivals (default: its neighbours in the mean order)")
  p.add_argument("--key", default="avg_gap",
                 help="the per-seed score, smaller is better (default avg_gap)")
  p.add_argument("--json", default=None, help="also write the comparison here")
  a = p.parse_args(argv)
  try:
    res = compare([_load(r) for r in a.results], a.method,
                  a.against.split(",") if a.against else None, a.key)
  except (ValueError, KeyError, json.JSONDecodeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(markdown(res))
  if a.json:
    Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
