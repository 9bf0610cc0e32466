#!/usr/bin/env bash
# Seed spread at horizon 96: the three models with seeds 1 and 2 (the main grid uses 2021), to
# judge which differences in the main table are larger than run-to-run noise. CPU, ~40 min.
#   bash experiments/forecasting/run_seeds.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
for ds in ETTh1 ETTh2; do
  (for seed in 1 2; do
     titans eval forecast --datasets $ds --horizons 96 --seed $seed --threads 1 \
       --out experiments/forecasting/seeds/seed$seed
   done > experiments/forecasting/seeds/log_$ds.txt 2>&1) &
done
wait
