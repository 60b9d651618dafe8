#!/usr/bin/env bash
# Round 2 of the 20 Newsgroups tuning (seeds 4,5): the choices of round 1 that
# sat on an upper edge (FT 0.04, RL 0.02, SalUn 0.02, NegGrad+ 0.01; UGradSL+
# alpha -0.2 x lr 0.04) get one and two steps more. Settings already run are
# reused from their phase directories; the adaptive UGradSL+ row follows the
# final fixed choice.
set -u
cd /work/main
D=../shared/data/20news-bydate.tar.gz
W=runs/tune_text_45
T() { m=$1; shift; echo "=== $m $(date +%T)"; .venv/bin/python -m experiments.tune --dataset 20newsgroups --model transformer --data_dir $D --workdir $W --seeds 4,5 --no_progress --method "$m" "$@" || echo "FAILED $m"; }
best() { .venv/bin/python -c "import json,sys; b=json.load(open('$W/tune_$1.json'))['best']; print(b['$2'])"; }
while pgrep -f "tune_text45_rest.sh" >/dev/null; do sleep 5; done
T rl --grid lr=5e-3,0.01,0.02,0.04,0.08
T ugradsl_plus --grid alpha=-1,-0.5,-0.2,-0.1 --grid lr=0.02,0.04,0.08
T ft --grid lr=0.01,0.02,0.04,0.08
T salun --grid lr=5e-3,0.01,0.02,0.04,0.08
T neggrad_plus --grid lr=2e-3,5e-3,0.01,0.02,0.04
T ugradsl_plus_adaptive --grid alpha=$(best ugradsl_plus alpha) --grid lr=$(best ugradsl_plus lr) --grid beta=0.05,0.15,0.3
echo "=== done $(date +%T)"
