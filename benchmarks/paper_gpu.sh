#!/usr/bin/env bash
# The paper preset on one GPU (H100/H200): issue 13's items 6-8, nothing fetched
# over the network, everything measured written under $OUT.
#
#   cp ../shared/data/cifar10-jpeg.tar.gz .devdata/   # git-ignored: carry that file
#   (the device tool's carry: .devdata/cifar10-jpeg.tar.gz, not all of .devdata,
#   whose decoded caches pass its 64 MiB limit)
#   bash benchmarks/paper_gpu.sh [--dry-run] [table|sweep|speed|all]
#
# On the lent H200 the image's environment held jax, torch and the rest
# (device_check.sh ran there as: export PATH=/opt/torch/.venv/bin:$PATH
# PYTHONPATH=$PWD); the first lines of env.txt say which versions ran. The
# table also needs scikit-learn (the MIA's SVC) and matplotlib (figures).
#
#   table  the CIFAR-10 random-forgetting table of the paper preset, seed 1:
#          original model (182 epochs), Retrain, every method, evaluation.
#   sweep  UGradSL / UGradSL+ over an (alpha, p) grid by the vmapped sweep,
#          chosen on validation, from the table's original model and Retrain.
#   speed  the step benchmark at width 64, batch 256+256, bfloat16: JAX vs
#          PyTorch eager vs torch.compile; the vmapped sweep at K = 1, 4, 8.
#   all    (default) the three in that order.
#
# Every phase checkpoints into $WORKDIR (default .devdata/paper_gpu/workdir,
# git-ignored, so it stays on a warm device machine between calls). A part
# that runs past its time limit exits 3: running the same command again
# resumes it where it stopped, finished phases are reused. The device tool
# allows 10 minutes a command, so the table may take two calls: the first
# trains the original model (and Retrain if time allows), the second the rest.
#
# --dry-run: the same commands at the smoke preset and tiny benchmark sizes
# on the CPU (JAX_PLATFORMS=cpu), proving the script runs (5 min 12 s here).
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
PART="${1:-all}"
case $PART in table|sweep|speed|all) ;; *) echo "unknown part $PART (table|sweep|speed|all)"; exit 2;; esac

OUT="${OUT:-.devdata/paper_gpu/out}"
WORKDIR="${WORKDIR:-.devdata/paper_gpu/workdir}"
DTYPE="${DTYPE:-bfloat16}"  # float32 fits on an H200 too; bfloat16 is the faster of the two there
mkdir -p "$OUT" "$WORKDIR"
DATA=.devdata/cifar10-jpeg.tar.gz
if [[ ! -f $DATA && -f ../shared/data/cifar10-jpeg.tar.gz ]]; then
  mkdir -p .devdata && cp ../shared/data/cifar10-jpeg.tar.gz "$DATA"
fi
[[ -f $DATA ]] || { echo "missing $DATA (copy the CIFAR-10 tar.gz there first)"; exit 2; }
export UGRADSL_CACHE_DIR="${UGRADSL_CACHE_DIR:-.devdata/cache}"
CACHE="${COMPILE_CACHE:-.devdata/xla_cache}"

if [[ $DRY == 1 ]]; then
  export JAX_PLATFORMS=cpu
  PRESET=(--preset smoke)
  SWEEP=(--sweep_alpha -1,-0.3 --sweep_p 0.5)
  STEP=(--widths 8 --batch 16 --repeats 1 --warmup 1)
  SWEEP_BENCH=(--ks 1,2 --width 4 --batch 8 --steps 2 --repeats 1)
  T_TABLE=${TABLE_TIMEOUT:-600}; T=300
else
  PRESET=(--preset paper)
  # The paper preset's UGradSL values are untuned; the grid spans the
  # smoothing rates METHOD.md s.2 allows (alpha < 0) and the mixing weights
  # the quick preset's tuning found useful.
  SWEEP=(--sweep_alpha -2,-1,-0.5,-0.2 --sweep_p 0.5,0.7,0.9)
  STEP=(--widths 64 --batch 256 --repeats 10 --warmup 2)
  SWEEP_BENCH=(--ks 1,4,8 --width 64 --batch 256 --steps 6 --repeats 3)
  T_TABLE=${TABLE_TIMEOUT:-560}; T=${STAGE_TIMEOUT:-200}
fi
COMMON=("${PRESET[@]}" --seed 1 --dtype "$DTYPE" --parallel none --workdir "$WORKDIR"
        --data_dir "$DATA" --compile_cache "$CACHE" --no_progress)

{
  date -u; hostname
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python -c "import jax; print('jax', jax.__version__, jax.devices())"
  python -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" || true
  echo "part=$PART dtype=$DTYPE dry=$DRY workdir=$WORKDIR"
} 2>&1 | tee -a "$OUT/env.txt"

# Fail in seconds, not after a 10-minute table, when a package is missing.
if ! missing=$(python -c "import flax, optax, orbax.checkpoint, sklearn, matplotlib, tqdm, PIL" 2>&1); then
  echo "$missing" >> "$OUT/env.txt"
  echo "a package the table needs is missing: ${missing##*$'\n'}"; exit 2
fi

FAILED=0
run() {  # name, limit (s), command...: a stage that fails or overruns does not stop the rest
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date -u +%T), limit ${limit}s)"
  local t0=$SECONDS rc
  timeout "$limit" "$@" > >(tee -a "$OUT/$name.log") 2>&1
  rc=$?
  echo "$name rc=$rc wall_s=$((SECONDS - t0)) $(date -u +%FT%TZ)" | tee -a "$OUT/walltime.txt"
  if [[ $rc == 124 ]]; then
    echo "!! $name ran past ${limit}s: run the same command again to resume it" | tee -a "$OUT/failures.txt"
    FAILED=3
  elif [[ $rc != 0 ]]; then
    echo "!! $name failed (rc $rc, see $OUT/$name.log)" | tee -a "$OUT/failures.txt"
    [[ $FAILED == 0 ]] && FAILED=1
  fi
  return $rc
}

keep() {  # copy a finished part's files out of the workdir into $OUT/<dest>
  local dest=$OUT/$1; shift
  mkdir -p "$dest"
  for f in "$@"; do [[ -f $WORKDIR/$f ]] && cp "$WORKDIR/$f" "$dest/"; done
  return 0
}

if [[ $PART == table || $PART == all ]]; then
  run table "$T_TABLE" python -m experiments.cifar_random_forget "${COMMON[@]}" \
    && keep table results.json results.md results.png curves.png
fi
if [[ $PART == sweep || $PART == all ]]; then
  # From the same workdir: the original model and Retrain are reused, not retrained.
  run sweep "$T" python -m experiments.cifar_random_forget "${COMMON[@]}" \
      --methods ugradsl,ugradsl_plus "${SWEEP[@]}" \
    && keep sweep results.json results.md sweep_ugradsl.json sweep_ugradsl_plus.json \
            sweep_ugradsl.png sweep_ugradsl_plus.png
fi
if [[ $PART == speed || $PART == all ]]; then
  run step_bf16 "$T" python -m benchmarks.step_throughput "${STEP[@]}" --dtype bfloat16 \
      --torch-compile --json "$OUT/step_bf16.json"
  run step_fp32 "$T" python -m benchmarks.step_throughput "${STEP[@]}" --dtype float32 \
      --torch-compile --json "$OUT/step_fp32.json"
  run sweep_bench "$T" python -m benchmarks.sweep "${SWEEP_BENCH[@]}" --json "$OUT/sweep_bench.json"
fi
echo "== done ($PART); outputs in $OUT"
exit $FAILED
