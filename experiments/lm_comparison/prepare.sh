#!/usr/bin/env bash
# Tokenised data for the LM comparison (~36 MB under .data/lm; CPU, a few minutes).
# BPE: byte-level, 8192 tokens, trained on the first 40M characters of Gutenberg train-00.
set -euo pipefail
cd "$(dirname "$0")/../.."
D=${TITANS_DATA:-../shared/data}
OUT=.data/lm
mkdir -p $OUT
titans tokenizer train --input $D/gutenberg/train-00.jsonl.gz --output $OUT/tok --vocab-size 8192 \
    --max-chars 40000000 --quiet
titans tokenizer encode --tokenizer $OUT/tok --input $D/gutenberg/train-00.jsonl.gz --output $OUT/train.npy \
    --max-tokens 15000000
titans tokenizer encode --tokenizer $OUT/tok --input $D/gutenberg/test.jsonl.gz \
    --output $OUT/gutenberg_test.npy --max-tokens 1000000
titans tokenizer encode --tokenizer $OUT/tok --input $D/wikitext-2/test.txt --output $OUT/wikitext2_test.npy
titans tokenizer encode --tokenizer $OUT/tok --input $D/gutenberg/validation.jsonl.gz \
    --output $OUT/gutenberg_val.npy --max-tokens 300000
