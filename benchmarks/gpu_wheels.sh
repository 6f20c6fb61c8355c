#!/usr/bin/env bash
# Download the cp312 manylinux wheels that the GPU machine's image lacks into .whl/ (ignored by
# git through .gitignore), for benchmarks/gpu_check.sh to install there without a
# registry; then check that they and the working tree that travels with them fit in 64 MiB.
#
#   bash benchmarks/gpu_wheels.sh            # here, once, before run(..., carry=[".whl"])
#
# The image has torch, transformers, timm, pillow, numpy, httpx, anyio, h11, click,
# typing-extensions, annotated-doc and prometheus-client; it lacks the embedded Qdrant engine
# and the server's stack. Versions: the ones this project is tested with (pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(
  qdrant-edge-py==0.9.0
  fastapi==0.165.0 starlette==1.10.0 uvicorn==0.55.0
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  opentelemetry-api==1.45.2
)
rm -rf .whl && mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 \
         manylinux_2_34_x86_64 manylinux_2_31_x86_64 manylinux_2_24_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl "${WHEELS[@]}"
wheels=$(du -sb .whl | cut -f1)
# what travels: tracked files and untracked files that git does not ignore, plus .whl
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
total=$((wheels + tree))
ls -l .whl
printf 'wheels %.1f MiB + working tree %.1f MiB = %.1f MiB (limit 64 MiB)\n' \
  "$(echo "$wheels / 1048576" | bc -l)" "$(echo "$tree / 1048576" | bc -l)" "$(echo "$total / 1048576" | bc -l)"
if [ "$total" -gt $((64 * 1024 * 1024)) ]; then
  echo "too large to travel: over 64 MiB" >&2
  exit 1
fi
