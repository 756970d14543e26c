#!/usr/bin/env bash
# Inference benchmark of issue 7 on the BENCH shape, all in one run:
#   - the 16-expert top-4 model as bf16 safetensors and as f16, q8_0 and q4_k GGUF
#     (made with dbrx convert), each at 1 and 2 threads: prefill pp512, decode tg128,
#     decode GB/s against the memcpy figure measured in the same dbrx bench call;
#   - a dense model of the same total size (1 expert of 16x width, top-1, bf16) against
#     the MoE model, decode at 2 threads, run back to back.
# Models are created once in $WORK (default /tmp/dbrx-bench) and reused.
#
#   scripts/bench-inference.sh [reps]
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-3}"
work="${WORK:-/tmp/dbrx-bench}"
mkdir -p "$work"
go build -o "$work/dbrx" ./cmd/dbrx
dbrx="$work/dbrx"

[ -f "$work/moe-bf16/model.safetensors" ] ||
	"$dbrx" init --config configs/bench.json --seed 1 --dtype bf16 --out "$work/moe-bf16"
[ -f "$work/dense-bf16/model.safetensors" ] ||
	"$dbrx" init --config configs/bench-dense.json --seed 1 --dtype bf16 --out "$work/dense-bf16"
for t in f16 q8_0 q4_k; do
	[ -f "$work/moe-$t.gguf" ] ||
		"$dbrx" convert --from "$work/moe-bf16" --to "$work/moe-$t.gguf" --type "$t"
done

echo "# weight types x threads (tokens/s, mean over $reps reps)"
for m in moe-bf16 moe-f16.gguf moe-q8_0.gguf moe-q4_k.gguf; do
	for th in 1 2; do
		"$dbrx" bench --model "$work/$m" --threads "$th" --prompt 512 --gen 128 --reps "$reps" |
			grep -E '^\| dbrx|^memcpy'
	done
done

echo
echo "# MoE (16 experts, top-4) vs dense (1 expert of 16x width), bf16, 2 threads, decode"
moe=$("$dbrx" bench --model "$work/moe-bf16" --threads 2 --prompt 0 --gen 128 --reps "$reps" --memcpy=false --json | grep tg128)
dense=$("$dbrx" bench --model "$work/dense-bf16" --threads 2 --prompt 0 --gen 128 --reps "$reps" --memcpy=false --json | grep tg128)
echo "moe:   $moe"
echo "dense: $dense"
tps() { grep -o '"tokens_per_second":[0-9.e+-]*' <<<"$1" | cut -d: -f2; }
awk -v m="$(tps "$moe")" -v d="$(tps "$dense")" \
	'BEGIN { printf "MoE decodes %.2fx faster than dense (ideal from weight bytes: 2.57x)\n", m / d }'
