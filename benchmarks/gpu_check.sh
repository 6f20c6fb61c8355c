#!/usr/bin/env bash
# The GPU check on the device machine (see benchmarks/gpu_check.py): installs the carried
# wheels (.whl/, made here by benchmarks/gpu_wheels.sh) into a folder of their own without a
# registry, runs the project from the source tree, and writes the results to $OUT.
#
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
#
# Extra arguments go to gpu_check.py (e.g. --dry-run, --steps engine).
set -uo pipefail
cd "$(dirname "$0")/.."
SITE=/tmp/gpu-check-site
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || echo "installing the carried wheels failed: the steps that need them will record it" >&2
fi
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
exec python3 benchmarks/gpu_check.py --out "${OUT:?set OUT to the results folder}" "$@"
