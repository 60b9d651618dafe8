#!/bin/bash
# The adaptive rate's feature mode chosen on validation, class-wise (class 3),
# seeds 4-5. Run from the repository root at commit 7a3178f.
PY=.venv/bin/python
for m in ugradsl_adaptive ugradsl_plus_adaptive; do
  $PY -m experiments.tune --preset quick --forget_class 3 --method $m \
      --grid feature_mode=train,eval --seeds 4,5 --no_progress \
      --data_dir ../shared/data/cifar10-jpeg.tar.gz --workdir runs/tune_feat_class
done
