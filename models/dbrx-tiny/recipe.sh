#!/usr/bin/env bash
# The whole recipe of the shipped model, from nothing to models/dbrx-tiny/:
#   1. corpus: Go standard library sources + the King James Bible, tokenized into shards
#   2. train:  dbrx train with a curriculum over the two sources (models/dbrx-tiny/train.json)
#   3. export: the last checkpoint as a bf16 Hugging Face checkpoint (what dbrx embeds)
#   4. report: held-out loss against a unigram baseline, and sample continuations
# Run from the repository root: bash models/dbrx-tiny/recipe.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
go build -o build/dbrx ./cmd/dbrx
export DBRX=build/dbrx
bash models/dbrx-tiny/corpus.sh build/corpus
build/dbrx train --config models/dbrx-tiny/train.json --resume
last=$(ls -d build/runs/dbrx-tiny/checkpoints/step-* | sort | tail -1)
bash models/dbrx-tiny/export.sh "$last"
