#!/usr/bin/env bash
# Long-term forecasting, Table 3 at our scale: ETTh1/ETTh2 x horizons 96/192/336/720 x {LMM, DLinear,
# PatchTST}, one harness, default hyper-parameters of `titans eval forecast`. CPU only; two
# processes (LMM | DLinear + PatchTST), one thread each. Finished runs are kept (resume).
#   bash experiments/forecasting/run_forecasting.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=experiments/forecasting/results
mkdir -p "$OUT"
titans eval forecast --models lmm --threads 1 --out "$OUT" > "$OUT/log_lmm.txt" 2>&1 &
titans eval forecast --models dlinear patchtst --threads 1 --out "$OUT" > "$OUT/log_baselines.txt" 2>&1 &
wait
titans eval forecast --threads 1 --out "$OUT" > "$OUT/log_summary.txt" 2>&1  # all finished: summary.csv
python3 experiments/forecasting/plot_forecasting.py "$OUT"
