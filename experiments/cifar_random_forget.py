"""CIFAR-10 random (or class-wise) forgetting with ResNet-18, end to end.

  python -m experiments.cifar_random_forget --data_dir ../shared/data/cifar10-jpeg.tar.gz

The CIFAR-10 entry of experiments.unlearn: the same code and flags, with the
data set fixed to CIFAR-10 and the model to ResNet-18. `--forget_class 3`
gives class-wise forgetting. split -> original model -> Retrain -> each
method -> evaluation -> table; every phase checkpoints into --workdir and is
reused or resumed on rerun.
"""

from __future__ import annotations

import sys

from . import unlearn  # requests the host devices before JAX starts


def main(argv=None) -> int:
  return unlearn.main(argv, prog="python -m experiments.cifar_random_forget",
                      dataset="cifar10", doc=__doc__)


if __name__ == "__main__":
  sys.exit(main())
