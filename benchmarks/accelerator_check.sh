#!/usr/bin/env bash
# Check the kernels on an accelerator and measure the MFLD step at scale, in one run.
# Usage: benchmarks/accelerator_check.sh OUTPUT_DIR
#   (writes devices.txt, tests.txt, benchmark.txt, sharding.txt)
set -uo pipefail
out=${1:-accelerator-check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1 | tee "$out/devices.txt"
# The statistical and identity tests of the kernels, run on the accelerator's default backend.
timeout 240 "$PYTHON" -m pytest -q -p no:cacheprovider -x \
  tests/test_objectives.py tests/kernels/test_mfld.py tests/kernels/test_gradients.py \
  tests/kernels/test_pda.py tests/certificates/test_duality.py 2>&1 | tee "$out/tests.txt"
timeout 300 "$PYTHON" benchmarks/mfld_step.py \
  --sizes 2000,32,2048 8000,64,8192 50000,128,16384 --steps 50 --repeats 5 \
  2>&1 | tee "$out/benchmark.txt"
# Step time and memory per device against the number of local accelerators (1, 2, 4, … up to
# all of them, one process per count); sizes × 8 so that the step is the accelerator's work.
timeout 300 "$PYTHON" benchmarks/sharding.py --platform gpu --scale 8 --repeats 5 \
  2>&1 | tee "$out/sharding.txt"
