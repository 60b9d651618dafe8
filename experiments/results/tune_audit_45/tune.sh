#!/bin/sh
# The audit preset's learning rates on validation, seeds 4-5 (disjoint from
# the audit's split seed 1). Usage: tune.sh DATA_ARCHIVE WORKDIR
set -e
DATA=${1:-../shared/data/cifar10-jpeg.tar.gz}
W=${2:-runs/tune_audit}
t() { python -m experiments.tune --preset audit --data_dir "$DATA" --workdir "$W" \
        --seeds 4,5 --no_progress --method "$1" --grid "lr=$2"; }
t ft 0.01,0.04,0.1
t ga 1e-3,5e-3,0.02
t rl 5e-3,0.02,0.05
t salun 5e-3,0.02,0.05
t neggrad_plus 5e-3,0.02,0.05
t ugradsl 2e-3,0.01,0.03
t ugradsl_plus 5e-3,0.02,0.05
# Round 2: the choices on the first grids' upper edge, widened.
t neggrad_plus 0.05,0.1
t ugradsl 0.03,0.06,0.1
t ugradsl_plus 0.05,0.1
