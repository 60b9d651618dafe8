#!/usr/bin/env bash
# Class-wise (CIFAR-10 class 3) quick preset re-tuned on seeds 4,5, disjoint
# from the reported 1-3, after the fidelity fixes (flips, random MIA members).
# Grids centred on the seeds-1-2 choices, widened one step past each old edge.
set -u
cd /work/main
D=../shared/data/cifar10-jpeg.tar.gz
W=runs/tune_class_45
T() { m=$1; shift; echo "=== $m $(date +%T)"; .venv/bin/python -m experiments.tune --data_dir $D --workdir $W --seeds 4,5 --scenario class --forget_class 3 --no_progress --method "$m" "$@" || echo "FAILED $m"; }
best() { .venv/bin/python -c "import json,sys; b=json.load(open('$W/tune_$1.json'))['best']; print(b['$2'])"; }
T ga --grid lr=2e-4,5e-4,1e-3
T ugradsl --grid alpha=-1,-0.5,-0.2 --grid lr=1e-3,2e-3,5e-3
T ugradsl_plus --grid alpha=-1,-0.5,-0.2 --grid lr=2e-3,5e-3
T ft --grid lr=3e-3,0.01,0.02
T rl --grid lr=5e-3,0.01,0.02
T salun --grid lr=2e-3,5e-3,0.01
T neggrad_plus --grid lr=2e-3,5e-3,0.01
T l1_sparse --grid l1=5e-5,2e-4,5e-4
T ugradsl_adaptive --grid alpha=$(best ugradsl alpha) --grid lr=$(best ugradsl lr) --grid beta=0.05,0.15,0.3
T ugradsl_plus_adaptive --grid alpha=$(best ugradsl_plus alpha) --grid lr=$(best ugradsl_plus lr) --grid beta=0.05,0.15,0.3
echo "=== done $(date +%T)"
