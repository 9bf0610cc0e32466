#!/usr/bin/env bash
# BABILong run 4 (session 11) on 2 x H200: qa1-qa5 with a facts curriculum, trained at <= 2K bytes.
#   bash experiments/babilong/results_run4/bab4.sh PHASE OUT
#   PHASE 1: GPU1 times the 16-warp fused gate backward (60 s), then all models train
#            (MAC on GPU0; Transformer++ and LMM on GPU1), checkpointed in ../ckpt_bab_*.
#   PHASE 2: all resume and train on.   PHASE 3: resume, train on, export, test 0-128K.
# .data/s11/data holds the Gutenberg test split and a 25M-character slice of train-00 (as run 13).
set -uo pipefail
phase=$1; out=$2; mkdir -p "$out"
ln -sfn .data/s11/data data
export PYTHONPATH=src
R="--tasks qa1 qa2 qa3 qa4 qa5
   --facts qa1=2 qa1=4@1500 qa1=8@3500 qa2=2 qa2=6@1500 qa2=12@3500 qa3=3 qa3=8@1500 qa3=20@3500
           qa5=4 qa5=6@1500 qa5=12@3500
   --haystack data/test.jsonl.gz --lm-data data/lm_train.jsonl.gz --d-model 256 --n-layers 3
   --n-heads 4 --expansion 4 --chunk 64 --segment 512 --batch 32 --train-len 2048 --zero-fraction 0.25
   --context-loss 0.25 --fill lm --value-norm rms --eta-max 0.9 --alpha-init 1e-4 --niah-fraction 0.75
   --workers 6 --cuda-graph --lr 1e-3 --warmup 100 --steps 1000000 --total-seconds 1450"
T="--test-lengths 0 1024 2048 4096 8192 16384 32768 65536 131072 --samples 20"
run() {  # gpu name extra...
  local gpu=$1 name=$2; shift 2
  CUDA_VISIBLE_DEVICES=$gpu python3 experiments/babilong/run_babilong.py $R --models "$name" \
    --checkpoint ../ckpt_bab_$name "$@" --out "$out/bab_$name" > "$out/bab_$name.log" 2>&1
}
case $phase in
1)
  run 0 mac --no-test --max-seconds 510 &
  ( for g in torch triton; do
      CUDA_VISIBLE_DEVICES=1 TITANS_TRITON_GATES=$g timeout 40 python3 benchmarks/bench_kernel.py \
        --sections kernels --kernels v6 --chunks 64 --kernel-depths 2 --shapes 8x2048,1x16384 \
        --models ours-triton --max-seconds 2 --out "$out/kernel_gates_$g.json" > "$out/gates_$g.log" 2>&1
    done
    run 1 transformer --no-test --max-seconds $((510 - SECONDS)) &
    run 1 lmm --no-test --max-seconds $((510 - SECONDS)) &
    wait ) &
  wait
  tail -n 8 "$out"/gates_*.log ;;
2)
  for m in "0 mac" "1 transformer" "1 lmm"; do run $m --resume --no-test --max-seconds 530 & done
  wait ;;
3)
  for m in "0 mac" "1 transformer" "1 lmm"; do
    run $m --resume --max-seconds 400 --export "$out/models" --deadline 565 $T &
  done
  wait
  for m in mac transformer lmm; do
    [[ -d $out/models/$m ]] && tar -czf "$out/model_$m.tgz" -C "$out/models" "$m"
  done
  rm -rf "$out/models" ;;
esac
for f in "$out"/bab_*.log; do echo "== $f"; tail -n 6 "$f"; done
