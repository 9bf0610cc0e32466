#!/usr/bin/env bash
# S-NIAH run 13: MAC continued at <= 4K bytes from run 12's two exported checkpoints, one per GPU.
#   bash .data/snap/niah13.sh PHASE OUT      PHASE: a (train, checkpoint) | b (resume, export, test)
set -uo pipefail
phase=$1; out=$2; mkdir -p "$out"
ln -sfn .data/snap/data data
export PYTHONPATH=src
R="--haystack data/test.jsonl.gz --lm-data data/lm_train.jsonl.gz --d-model 256 --n-layers 3 --n-heads 4
   --expansion 4 --chunk 64 --segment 512 --batch 32 --copy-fraction 0.25 --copy-mode embedded --copy-len 1024
   --context-loss 0.25 --fill lm --value-norm rms --eta-max 0.9 --alpha-init 1e-4 --niah-fraction 0.5
   --workers 8 --cuda-graph --models mac --train-len 4096 --min-train-len 1024
   --train-variants passkey number uuid uuid --lr 1e-3 --warmup 50 --steps 100000 --total-seconds 900"
T="--test-lengths 1024 2048 4096 8192 16384 32768 --depths 5 --samples 4"
for run in a b; do
  gpu=$([[ $run == a ]] && echo 0 || echo 1)
  init=.data/snap/init_$run
  if [[ $phase == a ]]; then
    P="--init $init --checkpoint ../ckpt_$run --no-test --max-seconds 510 --deadline 560"
  elif [[ $phase == c ]]; then
    P="--init $init --checkpoint ../ckpt_$run --resume --total-seconds 1280 --max-seconds 370 --export $out/models_$run --deadline 520 --test-lengths 1024 2048 4096 8192 16384 32768 65536 --depths 5 --samples 8"
  else
    P="--init $init --checkpoint ../ckpt_$run --resume --max-seconds 380 --export $out/models_$run --deadline 565 $T"
  fi
  CUDA_VISIBLE_DEVICES=$gpu python3 experiments/niah/run_niah.py $R $P --out "$out/niah_$run" > "$out/niah_$run.log" 2>&1 &
done
wait
for run in a b; do
  [[ -d $out/models_$run ]] && tar -czf "$out/model_$run.tgz" -C "$out/models_$run" . && rm -rf "$out/models_$run"
done
tar -czf "$out/results.tgz" -C "$out" $(cd "$out" && ls -d niah_*)
tail -n 22 "$out"/*.log
