#!/usr/bin/env bash
# One GPU check (H100/H200), under 6 minutes, nothing fetched over the network.
#
#   cp ../shared/data/cifar10-jpeg.tar.gz .devdata/    # git-ignored; travel with the checkout
#   bash benchmarks/device_check.sh                    # on the GPU machine; outputs in $OUT
#   bash benchmarks/device_check.sh --dry-run          # on CPU, tiny sizes: proves it runs
#
# 1. step throughput, width 64, batch 256+256, float32 and bfloat16 compute,
#    JAX vs PyTorch (autocast bf16), with XLA's FLOP count and the share of
#    the card's dense peak (H100/H200: ~67 TFLOP/s fp32, ~990 bf16);
# 2. UGradSL's RTE on the paper preset's unlearning phase (4,500 forget images,
#    width 64, randomly initialised model), JAX vs projected PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
OUT="${OUT:-.devdata/device_check}"  # git-ignored
mkdir -p "$OUT"
DATA=.devdata/cifar10-jpeg.tar.gz
if [[ ! -f $DATA && -f ../shared/data/cifar10-jpeg.tar.gz ]]; then
  mkdir -p .devdata && cp ../shared/data/cifar10-jpeg.tar.gz "$DATA"
fi
[[ -f $DATA ]] || { echo "missing $DATA (copy the CIFAR-10 tar.gz there first)"; exit 2; }
export UGRADSL_CACHE_DIR="${UGRADSL_CACHE_DIR:-.devdata/cache}"
# Let JAX take GPU memory as it needs it, so torch in the same process fits too.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

if [[ $DRY == 1 ]]; then
  export JAX_PLATFORMS=cpu
  STEP=(--widths 8 --batch 16 --repeats 1)
  RTE=(--preset smoke --width 4 --torch-steps 2)
  T=300
else
  STEP=(--widths 64 --batch 256 --repeats 10 --warmup 2)
  RTE=(--preset paper --width 64 --epochs-scale 1 --torch-steps 20)
  T=${STAGE_TIMEOUT:-150}
fi

{
  date -u; hostname
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python -c "import jax, torch; print('jax', jax.__version__, jax.devices()); print('torch', torch.__version__, torch.cuda.is_available())"
} 2>&1 | tee "$OUT/env.txt"

run() {  # name, then the command; a stage that fails or overruns does not stop the rest
  local name=$1; shift
  echo "== $name"
  if ! timeout "$T" "$@" 2>&1 | tee "$OUT/$name.log"; then
    echo "!! $name failed or timed out (see $OUT/$name.log)" | tee -a "$OUT/failures.txt"
  fi
}

run step_fp32 python -m benchmarks.step_throughput "${STEP[@]}" --dtype float32 --json "$OUT/step_fp32.json"
run step_bf16 python -m benchmarks.step_throughput "${STEP[@]}" --dtype bfloat16 --json "$OUT/step_bf16.json"
run rte_ugradsl python -m benchmarks.rte "${RTE[@]}" --methods ugradsl --data "$DATA" --json "$OUT/rte_ugradsl.json"

echo "== done; outputs in $OUT"
[[ ! -s "$OUT/failures.txt" ]]
