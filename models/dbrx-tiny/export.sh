#!/usr/bin/env bash
# Exports a training checkpoint as the shipped model and measures it:
#   models/dbrx-tiny/{config.json,generation_config.json,model.safetensors (bf16),model.sha256}
#   models/dbrx-tiny/{metrics.jsonl,eval.jsonl,experts.jsonl,loss.png} from the run
#   models/dbrx-tiny/heldout.jsonl: held-out nats/token of the model and of a unigram model
#   models/dbrx-tiny/samples.txt:   greedy and sampled continuations
set -euo pipefail
CKPT=$1
RUN=$(dirname "$(dirname "$CKPT")")
OUT=models/dbrx-tiny
DBRX=${DBRX:-build/dbrx}
$DBRX convert --from "$CKPT" --to "$OUT" --type bf16
printf '{\n  "eos_token_id": [100257, 100279],\n  "transformers_version": "4.43.4"\n}\n' > "$OUT/generation_config.json"
(cd "$OUT" && sha256sum model.safetensors > model.sha256)
cp "$RUN"/metrics.jsonl "$RUN"/eval.jsonl "$RUN"/experts.jsonl "$RUN"/loss.png "$OUT"/
$DBRX perplexity --model "$OUT" --data build/corpus/code.json,build/corpus/prose.json --seq-len 256 --max-tokens 0 > "$OUT/heldout.jsonl"
{
  for p in "package main

import (" "func (s *Server) " "// Copyright 2009 The Go Authors" "In the beginning" "And Jesus said unto them," "The LORD is my shepherd;"; do
    printf '=== prompt: %q (greedy)\n' "$p"
    $DBRX run --model "$OUT" --max-new-tokens 48 --temperature 0 "$p"
    printf '\n=== prompt: %q (temperature 0.8, top-p 0.95, seed 1)\n' "$p"
    $DBRX run --model "$OUT" --max-new-tokens 48 --temperature 0.8 --top-p 0.95 --top-k 0 --seed 1 "$p"
    printf '\n'
  done
} > "$OUT/samples.txt"
cat "$OUT/heldout.jsonl"
