#!/usr/bin/env bash
# S-NIAH run 16 (session 13, 2 x H200): run 15's init-target MAC continued on the Triton memory
# path (kernel-notes V11), two learning rates side by side, after the first GPU check of V11.
#   bash experiments/niah/results_run16/niah16.sh PHASE OUT
#   PHASE 1: GPU0 runs the forget-target GPU tests and times the layer with/without the target
#            (the two steps of experiments/forget_target/gpu/triton_check.sh); GPU1 runs the
#            16-warp gate tests.
#            If the forget-target tests pass, both fine-tunes train on the Triton path; if not, on
#            the PyTorch path (logged). GPU0: lr 1e-3 (run 15's); GPU1: lr 3e-4.
#   PHASE 2: both resume and train on.    PHASE 3: resume, train on, export, test 2K-64K.
# .data/s13 holds data/ (Gutenberg test split + 25M characters of train-00, as runs 13-15) and
# init/mac: run 15's init-target MAC export. Checkpoints live in ../ckpt_*: one warm machine.
# Phase 1's test and timing outputs were committed under benchmarks/results/ (gpu_tests_v11_h200.log,
# gpu_tests_gates16_h200.log, kernel_v11_h200.{json,log}); the training logs are in cmd1-3/ here.
set -uo pipefail
phase=$1; out=$2; mkdir -p "$out"
ln -sfn .data/s13/data data
export PYTHONPATH=src
R="--models mac --forget-target init --init .data/s13/init
   --haystack data/test.jsonl.gz --lm-data data/lm_train.jsonl.gz --d-model 256 --n-layers 3 --n-heads 4
   --expansion 4 --chunk 64 --segment 512 --batch 32 --copy-mode embedded --copy-len 1024
   --context-loss 0.25 --fill lm --value-norm rms --eta-max 0.9 --alpha-init 1e-4 --niah-fraction 0.5
   --workers 8 --cuda-graph --train-len 4096 --min-train-len 1024 --copy-fraction 0.4
   --train-variants passkey number uuid uuid --warmup 50 --steps 1000000 --total-seconds 1200"
T="--test-lengths 2048 4096 8192 16384 32768 65536 --depths 5 --samples 20"
flag=../niah16_backend  # phase 1 writes triton|torch here; phases 2-3 read it
[[ -f $flag ]] && export TITANS_NEURAL_MEMORY_BACKEND=$(cat $flag)
run() {  # gpu name lr extra...
  local gpu=$1 name=$2 lr=$3; shift 3
  CUDA_VISIBLE_DEVICES=$gpu python3 experiments/niah/run_niah.py $R --lr "$lr" --checkpoint ../ckpt_$name \
    "$@" --out "$out/niah_$name" >> "$out/niah_$name.log" 2>&1
}
case $phase in
1)
  ( export CUDA_VISIBLE_DEVICES=0
    timeout 200 bash scripts/gpu_tests.sh "$out/gpu_tests_forget_target.log" -k "forget_target or init_target" \
      > /dev/null 2>&1
    if grep -qE "[0-9]+ passed" "$out/gpu_tests_forget_target.log" \
       && ! grep -qE "[0-9]+ (failed|error)" "$out/gpu_tests_forget_target.log"; then
      echo triton > $flag
    else
      echo torch > $flag
    fi
    timeout 150 python3 benchmarks/bench_kernel.py --sections layers --max-seconds 8 \
      --models ours-triton,ours-triton-init,ours-torch,ours-torch-init --shapes 8x2048,1x16384 \
      --out "$out/kernel_forget_target.json" > "$out/bench_forget_target.log" 2>&1 ) & check=$!
  CUDA_VISIBLE_DEVICES=1 TITANS_TRITON_GATES=triton timeout 200 bash scripts/gpu_tests.sh \
    "$out/gpu_tests_gates16.log" -k "fused_gates or fp32_matches_reference or layer_under_autocast" \
    > /dev/null 2>&1
  while [[ ! -f $flag ]]; do sleep 2; done
  export TITANS_NEURAL_MEMORY_BACKEND=$(cat $flag)
  echo "memory backend for training: $TITANS_NEURAL_MEMORY_BACKEND"
  run 1 lr3e-4 3e-4 --no-test --max-seconds $((560 - SECONDS)) &
  wait $check
  run 0 lr1e-3 1e-3 --no-test --max-seconds $((560 - SECONDS)) &
  wait
  tail -n 5 "$out/gpu_tests_forget_target.log"; tail -n 12 "$out/bench_forget_target.log"; tail -n 3 "$out/gpu_tests_gates16.log" ;;
2)
  run 0 lr1e-3 1e-3 --resume --no-test --max-seconds 545 &
  run 1 lr3e-4 3e-4 --resume --no-test --max-seconds 545 &
  wait ;;
3)
  run 0 lr1e-3 1e-3 --resume --max-seconds 300 --export "$out/models_lr1e-3" --deadline 560 $T &
  run 1 lr3e-4 3e-4 --resume --max-seconds 300 --export "$out/models_lr3e-4" --deadline 560 $T &
  wait
  for d in "$out"/models_*; do [[ -d $d ]] && tar -czf "$d.tgz" -C "$d" . && rm -rf "$d"; done ;;
esac
for f in "$out"/niah_*.log; do echo "== $f"; tail -n 8 "$f"; done
