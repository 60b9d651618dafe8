#!/usr/bin/env bash
# The rest of tune_text45.sh after the first script stopped at UGradSL+ (its
# environment was rebuilt); settings already run are reused from their phase
# directories. UGradSL+ chose alpha -1, lr 0.02 on seed 4, both edges: widened.
set -u
cd /work/main
D=../shared/data/20news-bydate.tar.gz
W=runs/tune_text_45
T() { m=$1; shift; echo "=== $m $(date +%T)"; .venv/bin/python -m experiments.tune --dataset 20newsgroups --model transformer --data_dir $D --workdir $W --seeds 4,5 --no_progress --method "$m" "$@" || echo "FAILED $m"; }
best() { .venv/bin/python -c "import json,sys; b=json.load(open('$W/tune_$1.json'))['best']; print(b['$2'])"; }
while pgrep -f "method ugradsl_plus" >/dev/null; do sleep 5; done
T ugradsl_plus --grid alpha=-2,-1,-0.5,-0.2 --grid lr=5e-3,0.01,0.02,0.04
T ga --grid lr=2e-4,5e-4,1e-3,2e-3,3e-3
T ft --grid lr=0.01,0.02,0.04
T rl --grid lr=5e-3,0.01,0.02
T salun --grid lr=5e-3,0.01,0.02
T neggrad_plus --grid lr=2e-3,5e-3,0.01
T l1_sparse --grid l1=5e-6,2e-5,5e-5
T ugradsl_adaptive --grid alpha=$(best ugradsl alpha) --grid lr=$(best ugradsl lr) --grid beta=0.05,0.15,0.3
T ugradsl_plus_adaptive --grid alpha=$(best ugradsl_plus alpha) --grid lr=$(best ugradsl_plus lr) --grid beta=0.05,0.15,0.3
echo "=== done $(date +%T)"
