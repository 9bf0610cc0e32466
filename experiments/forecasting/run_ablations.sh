#!/usr/bin/env bash
# LMM forecaster ablations at horizon 96 (seed 2021): no memory sub-layer (patch embedding +
# EinFFT + head only), linear memory (depth 1), no momentum, and their ETTh1 / ETTh2 test MSE
# beside the full model of the main grid. CPU, two processes.
#   bash experiments/forecasting/run_ablations.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
A=experiments/forecasting/ablations
mkdir -p $A
for ds in ETTh1 ETTh2; do
  (titans eval forecast --datasets $ds --models lmm --horizons 96 --threads 1 --out $A/no_memory \
     --model-kwargs '{"lmm": {"use_memory": false}}'
   titans eval forecast --datasets $ds --models lmm --horizons 96 --threads 1 --out $A/linear_memory \
     --model-kwargs '{"lmm": {"memory_depth": 1}}'
   titans eval forecast --datasets $ds --models lmm --horizons 96 --threads 1 --out $A/no_momentum \
     --model-kwargs '{"lmm": {"momentum": false}}') > $A/log_$ds.txt 2>&1 &
done
wait
