#!/usr/bin/env bash
# Session 10 on 2 x H200.  bash .data/s10/drv.sh PHASE OUT
#   PHASE 1: GPU0 kernel bench (V9b), then MAC (run 13's best export) trains; GPU1 Transformer++ and
#            SWA from scratch at <= 4K beside the GPU test suite.   PHASE 2: all resume, export, test.
set -uo pipefail
phase=$1; out=$2; mkdir -p "$out"
ln -sfn .data/s10/data data
export PYTHONPATH=src
R="--haystack data/test.jsonl.gz --lm-data data/lm_train.jsonl.gz --d-model 256 --n-layers 3 --n-heads 4
   --expansion 4 --chunk 64 --segment 512 --batch 32 --copy-mode embedded --copy-len 1024
   --context-loss 0.25 --fill lm --value-norm rms --eta-max 0.9 --alpha-init 1e-4 --niah-fraction 0.5
   --workers 8 --cuda-graph --train-len 4096 --min-train-len 1024
   --train-variants passkey number uuid uuid --lr 1e-3 --warmup 50 --steps 100000"
T="--test-lengths 1024 2048 4096 8192 16384 32768 --depths 5 --samples 20"
run() {  # gpu name extra...
  local gpu=$1 name=$2; shift 2
  CUDA_VISIBLE_DEVICES=$gpu python3 experiments/niah/run_niah.py $R --checkpoint ../ckpt_$name "$@" \
    --out "$out/niah_$name" > "$out/niah_$name.log" 2>&1
}
if [[ $phase == 1 ]]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  ( CUDA_VISIBLE_DEVICES=0 PYTHONPATH=src:/tmp/site timeout 270 python3 benchmarks/bench_kernel.py --sections layers \
      --models ours-triton,ours-triton-rc256,ours-triton-rc512,titans-pytorch,gdn --out "$out/kernel_v9b.json" \
      > "$out/bench_v9b.log" 2>&1
    run 0 mac --models mac --init .data/s10/init --copy-fraction 0.4 --total-seconds 700 --no-test \
      --max-seconds $((540 - SECONDS)) ) &
  run 1 transformer --models transformer --copy-fraction 0.25 --total-seconds 950 --no-test --max-seconds 520 &
  run 1 swa --models swa --copy-fraction 0.25 --total-seconds 950 --no-test --max-seconds 520 &
  CUDA_VISIBLE_DEVICES=1 timeout 400 bash scripts/gpu_tests.sh "$out/gpu_tests_v9b.log" > /dev/null 2>&1
  wait
  tail -n 30 "$out/bench_v9b.log"; tail -n 3 "$out/gpu_tests_v9b.log"; grep -n "FAIL" "$out/gpu_tests_v9b.log" | head
else
  run 0 mac --models mac --init .data/s10/init --copy-fraction 0.4 --total-seconds 700 --resume \
    --max-seconds 400 --export "$out/models" --deadline 575 $T &
  run 1 transformer --models transformer --copy-fraction 0.25 --total-seconds 950 --resume \
    --max-seconds 400 --export "$out/models" --deadline 575 $T &
  run 1 swa --models swa --copy-fraction 0.25 --total-seconds 950 --resume \
    --max-seconds 400 --export "$out/models" --deadline 575 $T &
  wait
  [[ -d $out/models ]] && tar -czf "$out/models.tgz" -C "$out/models" . && rm -rf "$out/models"
fi
for f in "$out"/niah_*.log; do echo "== $f"; tail -n 12 "$f"; done
