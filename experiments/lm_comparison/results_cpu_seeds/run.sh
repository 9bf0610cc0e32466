#!/usr/bin/env bash
# Table 5's ablations at a CPU scale with three seeds (session 13): the seed spread the H100 run
# (one seed, docs/results/lm.md run 4) left unmeasured. Tiny models (d_model 64, 2 layers, BPE 8192),
# 200 steps of 16 x 256 tokens (0.82M tokens each), the same steps for every model.
#   bash experiments/lm_comparison/prepare.sh          # once, ~1.5 min: .data/lm
#   bash experiments/lm_comparison/results_cpu_seeds/run.sh     # ~40 min on 2 cores
#   python3 experiments/lm_comparison/results_cpu_seeds/table.py
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=experiments/lm_comparison/results_cpu_seeds
for seed in 0 1 2; do
  [[ -f $out/seed$seed.json ]] && continue
  PYTHONPATH=src python3 experiments/lm_comparison/run.py --data .data/lm --size tiny --seq-len 256 \
    --batch-size 16 --steps 200 --eval-tokens 100000 --seed $seed --out $out/seed$seed.json.part \
    --variants lmm lmm-linear lmm-noconv lmm-nomomentum lmm-nodecay lmm-nopersistent \
    > $out/seed$seed.log 2>&1
  mv $out/seed$seed.json.part $out/seed$seed.json
done
