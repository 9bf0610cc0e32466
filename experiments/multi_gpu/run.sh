#!/usr/bin/env bash
# Two-GPU check of `titans train` under torchrun (DDP and FSDP2) against one GPU, same global
# batch and data; FSDP2 stops half-way and its checkpoint is resumed in a single process.
# Usage (repo root, a machine with 2 GPUs):  bash experiments/multi_gpu/run.sh OUT [DATA] [STEPS]
# Then:  python3 experiments/multi_gpu/compare.py OUT --json OUT/summary.json
set -euo pipefail
OUT=${1:?output folder}
DATA=${2:-data/lm_train.jsonl.gz}
STEPS=${3:-120}
HALF=$((STEPS / 2))
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
# CONFIG, SEQ, BATCH (per process), GLOBAL override the defaults (a quick CPU check:
# CONFIG=tiny-mag SEQ=128 BATCH=2 GLOBAL=4 bash experiments/multi_gpu/run.sh /tmp/mg DATA 6).
common=(train --config "${CONFIG:-small-mag}" --train-data "$DATA" --max-train-tokens 20000000
        --seq-len "${SEQ:-2048}" --batch-size "${BATCH:-8}" --global-batch "${GLOBAL:-16}" --max-steps "$STEPS" --warmup-steps $((STEPS < 20 ? 1 : 20))
        --eval-interval "$HALF" --eval-batches 4 --log-interval 5 --sample-tokens 0 --no-progress)
tr="torchrun --standalone --nproc_per_node 2 -m titans.cli.main"
mkdir -p "$OUT"
python3 -m titans.cli.main "${common[@]}" --out-dir "$OUT/gpu1" 2>&1 | tee "$OUT/gpu1.log"
$tr "${common[@]}" --parallel ddp --out-dir "$OUT/ddp2" 2>&1 | tee "$OUT/ddp2.log"
$tr "${common[@]}" --parallel fsdp --stop-after "$HALF" --out-dir "$OUT/fsdp2" 2>&1 | tee "$OUT/fsdp2.log"
python3 -m titans.cli.main train --resume "$OUT/fsdp2" --stop-after none --no-progress 2>&1 \
    | tee "$OUT/fsdp2_resumed_1gpu.log"
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpus.csv" 2>/dev/null || true
