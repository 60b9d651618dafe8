#!/usr/bin/env bash
# Screen quick-preset pretraining recipes on a GPU (accuracy only; the CPU
# cost of each is images / CPU images-per-second, measured on the CPU).
#
#   bash benchmarks/recipe_screen.sh             # on the GPU machine; outputs in $OUT
#   bash benchmarks/recipe_screen.sh --dry-run   # on CPU, two tiny variants
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-.devdata/recipe_screen}"
mkdir -p "$OUT"
DATA=.devdata/cifar10-jpeg.tar.gz
if [[ ! -f $DATA && -f ../shared/data/cifar10-jpeg.tar.gz ]]; then
  mkdir -p .devdata && cp ../shared/data/cifar10-jpeg.tar.gz "$DATA"
fi
export UGRADSL_CACHE_DIR="${UGRADSL_CACHE_DIR:-.devdata/cache}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
if [[ "${1:-}" == "--dry-run" ]]; then
  export JAX_PLATFORMS=cpu
  V="a:epochs=1,train_per_class=100;b:epochs=1,train_per_class=100,augment=flip"
  T=300
else
  # Cheapest first, so a timeout loses the expensive references.
  V="base:;w8flip:augment=flip;w16e3:width=16,epochs=3;w16e3flip:width=16,epochs=3,augment=flip"
  V+=";w8e8flip:epochs=8,augment=flip;w16e4:width=16,epochs=4;w16e4flip:width=16,epochs=4,augment=flip"
  V+=";w8n27k:train_per_class=3000,epochs=4;w8n45k:train_per_class=5000,epochs=3"
  V+=";w8e10:epochs=10;w16e6:width=16,epochs=6"
  T=${SCREEN_TIMEOUT:-240}
fi
PYTHONUNBUFFERED=1 timeout "$T" python -m benchmarks.pretrain_recipes --data "$DATA" \
  --variants "$V" --json "$OUT/recipes.json" 2>&1 | tee "$OUT/recipes.log"
