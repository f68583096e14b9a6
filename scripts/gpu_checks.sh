#!/usr/bin/env bash
# The GPU checks, as one script for a machine with CUDA (the `device` machine).
#
#   OUT=gpu-out bash scripts/gpu_checks.sh tests      # pytest -m gpu, Table 1 on cpu vs cuda
#   OUT=gpu-out bash scripts/gpu_checks.sh bench      # bench: bank rows and the cold Tables 1-3
#   OUT=gpu-out bash scripts/gpu_checks.sh reproduce  # `paraeval reproduce --device cuda`
#   OUT=gpu-out bash scripts/gpu_checks.sh scaling    # Tables 1-3, 1 seed, cold, local:16 on cpu
#
# Several steps may be given; each runs under its own time limit (seconds, STEP_LIMIT_<step>)
# and a failing step does not stop the next. Everything it measures lands in $OUT.
#
# On a machine without paraeval's dependencies (the device machine has torch, pandas, rich,
# typer, ... but not ART, torchattacks or platformdirs) put their wheels in .whl/ and the MNIST
# files in .devdata/mnist (both ignored by git); a model cache to start the tests from may be
# put in .devcache (the cold measurements never use it).
set -u
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
OUT="${OUT:-$root/gpu-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 COLUMNS=160
python="${PYTHON:-python3}"

if [ -d .whl ]; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
if ! "$python" -c "import paraeval" 2>/dev/null || [ -d .whl ]; then
  "$python" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
    --upgrade --target /tmp/site . || exit 1
  export PYTHONPATH=/tmp/site
fi
if [ -d .devdata/mnist ] && [ ! -d ../shared/data/mnist ]; then
  mkdir -p ../shared/data && cp -r .devdata/mnist ../shared/data/mnist
fi
export PARAEVAL_DATA_DIR="${PARAEVAL_DATA_DIR:-$(cd ../shared/data/mnist && pwd)}"
cache=/tmp/paraeval-cache
if [ -d .devcache ] && [ ! -d "$cache" ]; then cp -r .devcache "$cache"; fi
export PARAEVAL_TEST_CACHE="$cache" PARAEVAL_CACHE_DIR="$cache"

{
  date -u
  nvidia-smi -L 2>&1
  nproc
  "$python" -c "import torch, art, torchattacks, paraeval; print('torch', torch.__version__, \
'| cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() \
else '', '| ART', art.__version__, '| paraeval', paraeval.__file__)"
} 2>&1 | tee -a "$OUT/env.txt"

step() {  # step NAME LIMIT COMMAND...: time-limited, logged, timed
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/steps.txt"
  local started=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name rc=$rc wall=$((SECONDS - started))s" | tee -a "$OUT/steps.txt"
  tail -n 25 "$OUT/$name.log"
}

for what in "$@"; do
  case "$what" in
    tests)
      rm -rf /tmp/gpu-pytest
      step gpu-tests "${STEP_LIMIT_tests:-300}" "$python" -m pytest -m gpu tests/test_gpu.py -v \
        -p no:cacheprovider --basetemp=/tmp/gpu-pytest
      for device in cpu cuda; do
        found=$(find /tmp/gpu-pytest -path "*table1*/$device/summary.csv" | head -1)
        [ -n "$found" ] && cp "$found" "$OUT/table1-summary-$device.csv"
      done
      ;;
    bench)
      step bench "${STEP_LIMIT_bench:-300}" "$python" -m paraeval bench --rows bank --cold \
        --out "$OUT/bench-gpu.csv" --format csv
      ;;
    reproduce)
      step reproduce "${STEP_LIMIT_reproduce:-420}" env PARAEVAL_CACHE_DIR=/tmp/cold-cache \
        "$python" -m paraeval reproduce --work /tmp/gpu-reproduce --device cuda
      [ -f /tmp/gpu-reproduce/results.csv ] && cp /tmp/gpu-reproduce/results.csv \
        "$OUT/reproduce-results.csv"
      ;;
    scaling)
      step scaling "${STEP_LIMIT_scaling:-240}" env PARAEVAL_CACHE_DIR=/tmp/scaling-cache \
        "$python" -m paraeval run --victims vm,vm-batch --defenses table1,table2,table3 \
        --attacks fgsm --seeds 1 --device cpu --executor local:16 --out /tmp/scaling
      ;;
    *) echo "unknown step $what" >&2 ;;
  esac
done
