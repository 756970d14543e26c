#!/usr/bin/env bash
# Training throughput on the TRAIN shape (issue 5), dbrx against PyTorch side by side in
# one run: PyTorch 1.13.1 (Debian's python3-torch, the build the reference fixtures were
# made with, BLAS = OpenBLAS) runs scripts/bench_train_pytorch.py, a float32 DBRX that is
# first checked against fixtures A and D (losses 1e-5, every gradient 1e-4 relative);
# dbrx runs BenchmarkTrainStep. Both: batch 8 x 256, vocab 100352, AdamW, clipping, 2
# threads. The runs alternate, reps times, so load from elsewhere hits both alike.
#
#   scripts/bench-train-pytorch.sh [reps]     (default 2; installs python3-torch if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-2}
py=/usr/bin/python3
if ! "$py" -c 'import torch' 2>/dev/null || ! ls /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 >/dev/null 2>&1; then
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
	echo "installing Debian's python3-torch and OpenBLAS..." >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-torch libopenblas0 >/dev/null
fi
"$py" scripts/bench_train_pytorch.py --check testdata/dbrx/A
"$py" scripts/bench_train_pytorch.py --check testdata/dbrx/D
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/train.test" ./train
printf '%-5s %-8s %12s %10s\n' rep impl tokens/s s/step
py_all=() go_all=()
for r in $(seq 1 "$reps"); do
	p=$("$py" scripts/bench_train_pytorch.py --steps 4 --foreach false 2>/dev/null)
	pt=$(echo "$p" | "$py" -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["tokens_per_s"])')
	ps=$(echo "$p" | "$py" -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["step_s_median"])')
	printf '%-5s %-8s %12s %10s\n' "$r" pytorch "$pt" "$ps"
	g=$(cd train && "$tmp/train.test" -test.run '^$' -test.bench TrainStep -test.benchtime 5x | grep '^BenchmarkTrainStep')
	gt=$(echo "$g" | awk '{for (i = 1; i < NF; i++) if ($(i+1) == "tokens/s") print $i}')
	gs=$(echo "$g" | awk '{printf "%.2f", $3 / 1e9}')
	printf '%-5s %-8s %12s %10s\n' "$r" dbrx "$gt" "$gs"
	py_all+=("$pt") go_all+=("$gt")
done
"$py" - "${py_all[*]}" "${go_all[*]}" <<'EOF'
import statistics, sys
p = [float(v) for v in sys.argv[1].split()]
g = [float(v) for v in sys.argv[2].split()]
mp, mg = statistics.median(p), statistics.median(g)
print(f"median tokens/s: pytorch {mp:.1f}, dbrx {mg:.1f}; dbrx / pytorch = {mg / mp:.2f}x")
EOF
