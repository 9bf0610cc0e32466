#!/usr/bin/env bash
# forget_target="init" on the GPU (session 12, 2 x H200): does forgetting towards the learned
# initial memory, trained in, fix what the session-11 probes blamed on the decay of M_0?
#   bash experiments/forget_target/gpu/run.sh PHASE OUT      (PHASE 1, 2: train; 3: train, export, test)
# Four fine-tunes, each continuing an exported model for the same seconds on the PyTorch memory
# path (the Triton kernels do not take forget_target yet, so the zero-target controls are forced
# onto the same path: equal speed, equal steps), two processes a GPU, symmetric:
#   GPU 0: S-NIAH MAC   (run 14's export)  --forget-target init    BABILong LMM (run 4's) init
#   GPU 1: S-NIAH MAC   (run 14's export)  zero target (control)   BABILong LMM (run 4's) zero
# .data/s12 holds data/ (Gutenberg test split + 25M characters of train-00, as runs 13-14 and
# BABILong run 4) and init/{mac,lmm}: the run-14 S-NIAH MAC and the run-4 BABILong LMM exports.
# Checkpoints live outside the repo (../ckpt_*), so the three phases must run on one warm machine.
set -uo pipefail
phase=$1; out=$2; mkdir -p "$out"
ln -sfn .data/s12/data data
export PYTHONPATH=src TITANS_NEURAL_MEMORY_BACKEND=torch
N="--haystack data/test.jsonl.gz --lm-data data/lm_train.jsonl.gz --d-model 256 --n-layers 3 --n-heads 4
   --expansion 4 --chunk 64 --segment 512 --batch 32 --copy-mode embedded --copy-len 1024
   --context-loss 0.25 --fill lm --value-norm rms --eta-max 0.9 --alpha-init 1e-4 --niah-fraction 0.5
   --workers 4 --cuda-graph --train-len 4096 --min-train-len 1024 --copy-fraction 0.4
   --train-variants passkey number uuid uuid --lr 1e-3 --warmup 50 --steps 1000000
   --init .data/s12/init --init-changes memory.forget_target --total-seconds 1400"
B="--tasks qa1 qa2 qa3 qa4 qa5 --facts qa1=8 qa2=12 qa3=20 qa4=2 qa5=12
   --haystack data/test.jsonl.gz --lm-data data/lm_train.jsonl.gz --d-model 256 --n-layers 3
   --n-heads 4 --expansion 4 --chunk 64 --segment 512 --batch 32 --train-len 2048 --zero-fraction 0.25
   --context-loss 0.25 --fill lm --value-norm rms --eta-max 0.9 --alpha-init 1e-4 --niah-fraction 0.75
   --workers 4 --cuda-graph --lr 1e-3 --warmup 100 --steps 1000000
   --init .data/s12/init --init-changes memory.forget_target --total-seconds 1400"
NT="--test-lengths 2048 4096 8192 16384 32768 --depths 5 --samples 20"
BT="--test-lengths 0 2048 8192 16384 32768 65536 131072 --samples 20"
run() {  # gpu suite(niah|bab) model target extra...
  local gpu=$1 suite=$2 model=$3 target=$4; shift 4
  local name=${suite}_${model}_$target script=experiments/niah/run_niah.py recipe=$N
  [[ $suite == bab ]] && script=experiments/babilong/run_babilong.py recipe=$B
  CUDA_VISIBLE_DEVICES=$gpu python3 $script $recipe --models "$model" --forget-target "$target" \
    --resume --checkpoint "../ckpt_$name" "$@" --out "$out/$name" > "$out/$name.log" 2>&1
}
all() {  # extra...
  run 0 niah mac init "$@" & run 1 niah mac zero "$@" &
  run 0 bab lmm init "$@" & run 1 bab lmm zero "$@" &
  wait
}
case $phase in
1) all --no-test --max-seconds 520 ;;
2) all --no-test --max-seconds 545 ;;
3)
  run 0 niah mac init --max-seconds 335 --export "$out/models_niah_init" --deadline 560 $NT &
  run 1 niah mac zero --max-seconds 335 --export "$out/models_niah_zero" --deadline 560 $NT &
  run 0 bab lmm init --max-seconds 335 --export "$out/models_bab_init" --deadline 560 $BT &
  run 1 bab lmm zero --max-seconds 335 --export "$out/models_bab_zero" --deadline 560 $BT &
  wait
  for d in "$out"/models_*; do [[ -d $d ]] && tar -czf "$d.tgz" -C "$d" . && rm -rf "$d"; done ;;
esac
for f in "$out"/*.log; do echo "== $f"; tail -n 4 "$f"; done
