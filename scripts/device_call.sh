#!/usr/bin/env bash
# One device call of issue 24, as the `run` tool executes it on the accelerator machine (repository
# root, $OUT set). Prepare the carried folders here first with `bash scripts/device_prep.sh`, then
#
#   run(command="bash scripts/device_call.sh", carry=[".whl", ".gl", ".jax_cache"], timeout_s=600)
#
# and afterwards copy the returned jax_cache over .jax_cache and unpack each <name>.tar over
# results/<name>/ (docs/accelerator.md). The machine has JAX with CUDA but no Keras: the carried
# wheels go to /tmp/site. JOBS, WORKERS, BUDGET and KERNELS override the defaults below; EXTRA adds
# arguments (a CPU rehearsal: EXTRA="--canary-steps 4 --set steps=4 eval_every=2 ..." JAX_PLATFORMS=cpu).
set -euo pipefail
: "${OUT:?OUT must name the folder that comes back}"
# Keras from the carried wheels unless this Python has it (a CPU rehearsal of this script here)
python3 -c "import keras" 2>/dev/null \
    || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax PYTHONUNBUFFERED=1
echo "device_call: $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
command -v nvidia-cuda-mps-control >/dev/null && echo "device_call: nvidia-cuda-mps-control present" \
    || echo "device_call: nvidia-cuda-mps-control absent"
python3 experiments/accelerator_tables.py --data .gl/d256 --data-seed .gl/d224 --out "$OUT" --work results \
    --cache .jax_cache --workers "${WORKERS:-2}" --budget "${BUDGET:-540}" --kernels "${KERNELS:-first_max_pool}" \
    --jobs "${JOBS:-canary,bench,paper,init:paper,init:caffe,init:fan_in,seed,paper20}" ${EXTRA:-}
