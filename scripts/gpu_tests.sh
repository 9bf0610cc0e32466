#!/usr/bin/env bash
# Runs every GPU test of the repo (pytest marker `gpu`) on a CUDA machine, printing each
# Triton-vs-reference error table (-rA shows the captured output of passing tests).
# Usage (repo root, GPU machine):  bash scripts/gpu_tests.sh [LOG [PYTEST ARGS...]]
# e.g. only the kernel-version-v6 tests:  bash scripts/gpu_tests.sh /tmp/out/gpu_v6.log -k v6
# The last output of the full run is committed as benchmarks/results/gpu_tests.log.
set -uo pipefail
cd "$(dirname "$0")/.."
log=${1:-benchmarks/results/gpu_tests.log}
shift $(( $# > 0 ? 1 : 0 ))
mkdir -p "$(dirname "$log")"
{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
  xdist=""
  python3 -c "import xdist" 2>/dev/null && xdist="-n 8"
  PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} python3 -m pytest -m gpu -v -rA -p no:cacheprovider --import-mode=importlib $xdist tests "$@"
} 2>&1 | tee "$log"
exit "${PIPESTATUS[0]}"
