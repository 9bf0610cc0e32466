#!/usr/bin/env bash
# S-NIAH and BABILong-style bAbI in the fine-tuning setting, every model in its own process on
# one GPU at the same time (the models are small; one process cannot fill an H100).
#   bash experiments/retrieval_gpu.sh OUT_DIR [SECONDS_PER_MODEL] [SUITES]   (SUITES: "niah babilong")
# Data: data/test.jsonl.gz (Gutenberg test split: haystacks, bAbI background) and
# data/lm_train.jsonl.gz (a slice of Gutenberg train-00: LM samples), relative to the
# working directory (a copy of the repository carried to the GPU machine).
# Extra options for every process: RETRIEVAL_ARGS; NIAH only: NIAH_ARGS. Batch-building processes
# per model: RETRIEVAL_WORKERS (default 3; a 16-core machine runs ~4 models at once). Models: NIAH_MODELS,
# BABILONG_MODELS (space-separated; default all). With several GPUs the processes are spread
# round-robin over them (niah first, then babilong); NIAH_GPUS / BABILONG_GPUS (one GPU index
# per model, in order) place them by hand, e.g. NIAH_MODELS="mac transformer swa" NIAH_GPUS="0 1 1".
set -uo pipefail
out=${1:?usage: retrieval_gpu.sh OUT_DIR [SECONDS_PER_MODEL] [SUITES]}
secs=${2:-300}
suites=${3:-niah babilong}
mkdir -p "$out"
common=(--haystack data/test.jsonl.gz --lm-data data/lm_train.jsonl.gz
        --d-model 256 --n-layers 4 --n-heads 4 --expansion 4 --chunk 16 --segment 256
        --batch 32 --copy-fraction 0.25 --copy-len 256 --context-loss 1.0
        --lr 2e-3 --warmup 50 --steps 100000 --max-seconds "$secs" --deadline $((secs + 230))
        --workers "${RETRIEVAL_WORKERS:-3}"
        ${RETRIEVAL_ARGS:-})
export PYTHONPATH=src
ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
(( ngpu > 0 )) || ngpu=1
slot=0
# gpu_for INDEX "LIST": the INDEX-th entry of LIST if given, else the next round-robin slot.
gpu_for() {
  local given
  given=$(echo "$2" | awk -v i=$(($1 + 1)) '{print $i}')
  if [[ -n "$given" ]]; then echo "$given"; else echo $((slot % ngpu)); fi
}
if [[ " $suites " == *" niah "* ]]; then
  i=0
  for m in ${NIAH_MODELS:-transformer swa mac lmm}; do
    gpu=$(gpu_for $i "${NIAH_GPUS:-}"); i=$((i + 1)); slot=$((slot + 1))
    CUDA_VISIBLE_DEVICES=$gpu python3 experiments/niah/run_niah.py "${common[@]}" --models $m --train-len 1024 --min-train-len 512 \
      --niah-fraction 0.5 --test-lengths 1024 2048 4096 8192 16384 --depths 5 --samples 2 \
      ${NIAH_ARGS:-} --out "$out/niah_$m" > "$out/niah_$m.log" 2>&1 &
  done
fi
if [[ " $suites " == *" babilong "* ]]; then
  i=0
  for m in ${BABILONG_MODELS:-transformer mac lmm}; do
    gpu=$(gpu_for $i "${BABILONG_GPUS:-}"); i=$((i + 1)); slot=$((slot + 1))
    CUDA_VISIBLE_DEVICES=$gpu python3 experiments/babilong/run_babilong.py "${common[@]}" --models $m --train-len 1024 \
      --niah-fraction 0.5 --test-lengths 0 1024 4096 16384 --samples 10 \
      --out "$out/babilong_$m" > "$out/babilong_$m.log" 2>&1 &
  done
fi
wait
# The device tool returns at most 8 files: pack the per-model results and logs.
tar -czf "$out/results.tgz" -C "$out" $(cd "$out" && ls -d niah_* babilong_* 2>/dev/null)
tail -n 25 "$out"/*.log
