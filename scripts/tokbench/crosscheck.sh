#!/usr/bin/env bash
# Cross-checks `dbrx tokenize --jsonl` against the npm tiktoken package on random stress
# strings (gen.mjs). Usage: scripts/tokbench/crosscheck.sh [COUNT] [SEED]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
count="${1:-20000}"
seed="${2:-1}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$here" && [ -d node_modules/tiktoken ] || npm install --silent --no-audit --no-fund)
(cd "$root" && go build -o "$tmp/dbrx" ./cmd/dbrx)
node "$here/gen.mjs" "$count" "$seed" >"$tmp/in.jsonl"
for special in none all; do
  node "$here/encode.mjs" "$special" <"$tmp/in.jsonl" >"$tmp/want.jsonl"
  # The npm reference knows only cl100k_base's specials; list them for dbrx.
  list=none
  [ "$special" = all ] && list='<|endoftext|>,<|fim_prefix|>,<|fim_middle|>,<|fim_suffix|>,<|endofprompt|>'
  "$tmp/dbrx" tokenize --jsonl --special "$list" <"$tmp/in.jsonl" >"$tmp/got.jsonl"
  if ! cmp -s "$tmp/want.jsonl" "$tmp/got.jsonl"; then
    echo "special=$special: MISMATCH"
    paste -d '\n' "$tmp/in.jsonl" "$tmp/want.jsonl" "$tmp/got.jsonl" | awk 'NR%3==1{t=$0} NR%3==2{w=$0} NR%3==0{if (w!=$0) {print t; print "want " w; print "got  " $0; if (++n>=5) exit}}'
    exit 1
  fi
  echo "special=$special: $(wc -l <"$tmp/in.jsonl") cases agree"
done
