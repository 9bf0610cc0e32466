#!/usr/bin/env bash
# The first GPU check of the forget target inside the Triton kernels (kernel-notes V11), one
# device command (~3-4 min on an H200; prepared in session 12, not yet run):
#   bash experiments/forget_target/gpu/triton_check.sh OUT
# 1. the GPU tests of the target (bf16 vs float64 and the PyTorch path; the layer under autocast);
# 2. layer timing with and without the target, Triton against the PyTorch path (the shapes of
#    the issue, d_model 1024, 16 heads, L_M = 2, chunk 64).
set -uo pipefail
out=$1; mkdir -p "$out"
bash scripts/gpu_tests.sh "$out/gpu_tests_forget_target.log" -k "forget_target or init_target" > /dev/null 2>&1
tail -n 5 "$out/gpu_tests_forget_target.log"
PYTHONPATH=src timeout 200 python3 benchmarks/bench_kernel.py --sections layers \
  --models ours-triton,ours-triton-init,ours-torch,ours-torch-init --shapes 8x2048,1x16384 \
  --max-seconds 8 --out "$out/kernel_forget_target.json" > "$out/bench_forget_target.log" 2>&1
tail -n 12 "$out/bench_forget_target.log"
