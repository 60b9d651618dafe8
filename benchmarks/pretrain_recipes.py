"""Screen recipes for the original model: accuracy per unit of training cost.

  python -m benchmarks.pretrain_recipes --data ../shared/data/cifar10-jpeg.tar.gz \\
      --variants "base:;w16e3:width=16,epochs=3" --json out.json

Each variant is the quick preset's pretraining with some fields replaced
(TrainCfg fields, plus width, model and train_per_class). The library trains
the original model exactly as an experiment does (methods.original) and the
script reports train/val/test accuracy, images processed and run time.
Accuracy is a property of the recipe, so screening can run on a fast GPU;
the CPU cost is then images x (CPU seconds per image at that width),
measured with `python -m benchmarks.step_throughput --step train`.
Only validation accuracy may pick a recipe; test accuracy is printed so the
README can quote the recipe that was picked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from . import common

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
TOP = {"width": int, "depth": int, "train_per_class": int}
# Text data sets: the TextCfg fields ("remove" as parts joined by "+", e.g.
# headers+footers, or "none").
TEXT = {"vocab_size": int, "max_len": int,
        "remove": lambda s: () if s == "none" else tuple(s.split("+"))}
TRAIN = {"epochs": int, "lr": float, "batch_size": int, "schedule": str,
         "momentum": float, "nesterov": lambda s: s.lower() in ("1", "true"),
         "weight_decay": float,
         "augment": lambda s: "flip" if s == "flip" else s.lower() in ("1", "true")}


def parse_variants(spec: str) -> list[tuple[str, dict, dict, dict]]:
  """"name:k=v,k=v;name2:..." -> [(name, top-level, TrainCfg, TextCfg changes)]."""
  out = []
  for item in filter(None, (s.strip() for s in spec.split(";"))):
    name, _, body = item.partition(":")
    top, tr, tx = {}, {}, {}
    for kv in filter(None, (s.strip() for s in body.split(","))):
      k, _, v = kv.partition("=")
      if k in TOP:
        top[k] = TOP[k](v)
      elif k in TEXT:
        tx[k] = TEXT[k](v)
      elif k in TRAIN:
        tr[k] = TRAIN[k](v)
      else:
        raise SystemExit(f"variant {name!r}: unknown field {k!r}")
    out.append((name, top, tr, tx))
  return out


def main(argv=None):
  a = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  a.add_argument("--data", default=str(DEFAULT_DATA))
  a.add_argument("--preset", default="quick")
  a.add_argument("--dataset", default="cifar10")
  a.add_argument("--model", default="resnet18")
  a.add_argument("--variants", default="base:")
  a.add_argument("--seed", type=int, default=1)
  a.add_argument("--json", default=None, help="rewritten after every variant")
  args = a.parse_args(argv)

  import numpy as np
  from experiments import cifar_random_forget  # noqa: F401  (requests host devices)
  from ugradsl_jax import configs, datasets, methods as M, metrics, phases, protocol

  base = configs.get(args.preset, args.dataset, model=args.model)
  rows = []
  for name, top, tr, tx in parse_variants(args.variants):
    cfg = base
    if tx:
      top = {**top, "text": dataclasses.replace(cfg.text, **tx)}
    cfg = dataclasses.replace(cfg, seed=args.seed, **top,
                              pretrain=dataclasses.replace(cfg.pretrain, **tr))
    data = datasets.load(args.dataset, args.data, text=cfg.text)
    configs.validate(cfg)
    exp = protocol.setup(cfg, data)
    split = exp.split
    ph = phases.run(exp, phases.Runner(None, progress=False), M.original(exp))
    variables = {"params": ph.state.params, "batch_stats": ph.state.batch_stats}
    out = metrics.outputs(exp.model(None), variables, exp.data, split, cfg.eval_batch,
                          exp.par)
    acc = lambda part: 100.0 * float(np.mean(out[part][0]))
    train_acc = (acc("forget") * len(split.forget) + acc("retain") * len(split.retain)) \
        / (len(split.forget) + len(split.retain))
    o = ph.outcome
    row = {"variant": name, "width": cfg.width, "model": cfg.model,
           "text": None if cfg.text is None else dataclasses.asdict(cfg.text),
           "train_images": len(split.train), **dataclasses.asdict(cfg.pretrain),
           "images": o["steps"] * cfg.pretrain.batch_size, "run_s": o["rte_s"],
           "compile_s": o["compile_s"], "diverged": o["diverged"],
           "train_acc": train_acc, "val_acc": acc("val"), "test_acc": acc("test")}
    rows.append(row)
    print(f"{name:>14}: w{cfg.width} n={len(split.train)} ep={cfg.pretrain.epochs} "
          f"images={row['images']} run {row['run_s']:.1f}s  "
          f"train {train_acc:.1f}  val {row['val_acc']:.1f}  test {row['test_acc']:.1f}",
          flush=True)
    if args.json:
      Path(args.json).write_text(json.dumps({**common.stamp(), "seed": args.seed,
                                             "rows": rows}, indent=1))


if __name__ == "__main__":
  main()
