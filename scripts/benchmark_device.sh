#!/usr/bin/env bash
# The accelerator checks and benchmarks in one go, for a lent GPU machine whose image has JAX (CUDA) but
# not every dependency: wheels in .whl/ (e.g. tensorboardX) are installed to /tmp/site first.
#   bash scripts/benchmark_device.sh [OUT_DIR]
# Each benchmark has its own time limit, so one failure does not eat the others' time.
set -u
out="${1:-${OUT:-/tmp/bench}}"
mkdir -p "$out"
cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="$PWD:/tmp/site:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$out/device.txt"
python3 -c "import jax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'optax', optax.__version__, jax.devices())" 2>&1 | tee -a "$out/device.txt"
run() {  # name, seconds, command...
  local name="$1" secs="$2"; shift 2
  echo "=== $name"
  timeout "$secs" "$@" > "$out/$name.txt" 2>&1; echo "exit $?" >> "$out/$name.txt"
  tail -n 12 "$out/$name.txt"
}
run gpu_tests 90 python3 -m pytest -q -p no:cacheprovider tests/models/test_transformer_lm.py -k cudnn
run lm 180 python3 scripts/benchmark_lm.py --steps 100 --steps_per_loop 1 10
run lm_cudnn 170 python3 scripts/benchmark_lm.py --steps 100 --steps_per_loop 1 10 --attention cudnn
run scaling_gpu 70 python3 scripts/benchmark_scaling.py --platform cuda --devices 1 --processes 0 --per_device_batch 8192 --steps 200
run lm_accum 80 python3 scripts/benchmark_lm.py --steps 40 --grad_accum 4 --steps_per_loop 10
run scaling_cpu 90 python3 scripts/benchmark_scaling.py --platform cpu --devices 1 2 4 --processes 2 --steps 100
