#!/usr/bin/env bash
# Tokenizer throughput, side by side with the reference (issue 3):
#   Go: go test -bench 'BenchmarkEncode$' -cpu 1,2 over a 10 MiB corpus of Go toolchain
#       sources, built at run time (tokenizer/bench_test.go);
#   npm tiktoken (WASM build of OpenAI's Rust tiktoken), encode_ordinary of the same bytes.
# The ids of both are compared first. Usage: scripts/bench-tokenizer.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd scripts/tokbench && { [ -d node_modules/tiktoken ] || npm install --silent --no-audit --no-fund; })

go test ./tokenizer -count=1 -run '^TestWriteBenchCorpus$' -corpus-out "$tmp/corpus.txt" >/dev/null
echo "corpus: $(wc -c <"$tmp/corpus.txt") bytes of $(go env GOROOT)/src/**/*.go; $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== reference"
node scripts/tokbench/bench.mjs "$tmp/corpus.txt" 1 "$tmp/npm_ids.json"
go test ./tokenizer -count=1 -run '^TestBenchCorpusIDs$' -corpus-ids "$tmp/npm_ids.json" -v | grep -E 'ids equal|FAIL|---' || true

echo "== go (GOMAXPROCS = -cpu)"
go test ./tokenizer -run '^$' -bench 'BenchmarkEncode$' -cpu 1,2 -count "$count" -benchtime 5x | grep -E '^Benchmark'
echo "== npm tiktoken (single-threaded WASM)"
node scripts/tokbench/bench.mjs "$tmp/corpus.txt" "$count"
