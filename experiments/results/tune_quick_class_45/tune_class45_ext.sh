#!/usr/bin/env bash
# Widen the two grids whose choice sat on an edge (UGradSL alpha -1, UGradSL+
# lr 2e-3); settings already run are reused from their phase directories.
# Then the adaptive rows on the final fixed-rate choices (replacing the
# first script's adaptive lines, which this one stops before they start).
set -u
cd /work/main
D=../shared/data/cifar10-jpeg.tar.gz
W=runs/tune_class_45
T() { m=$1; shift; echo "=== $m $(date +%T)"; .venv/bin/python -m experiments.tune --data_dir $D --workdir $W --seeds 4,5 --scenario class --forget_class 3 --no_progress --method "$m" "$@" || echo "FAILED $m"; }
best() { .venv/bin/python -c "import json,sys; b=json.load(open('$W/tune_$1.json'))['best']; print(b['$2'])"; }
T ugradsl --grid alpha=-2,-1,-0.5,-0.2 --grid lr=1e-3,2e-3,5e-3
T ugradsl_plus --grid alpha=-1,-0.5,-0.2 --grid lr=1e-3,2e-3,5e-3
while ! grep -q "=== ugradsl_adaptive" runs/tune_class45.log; do sleep 5; done
pkill -f tune_class45.sh; sleep 1; pkill -f "method ugradsl_adaptive"; sleep 2
echo "=== first script stopped $(date +%T)"
T ugradsl_adaptive --grid alpha=$(best ugradsl alpha) --grid lr=$(best ugradsl lr) --grid beta=0.05,0.15,0.3
T ugradsl_plus_adaptive --grid alpha=$(best ugradsl_plus alpha) --grid lr=$(best ugradsl_plus lr) --grid beta=0.05,0.15,0.3
echo "=== done $(date +%T)"
