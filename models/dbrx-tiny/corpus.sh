#!/usr/bin/env bash
# Builds the offline, redistributable corpus of the shipped model and tokenizes it:
#   code:  the Go standard library's sources (BSD licence), from this machine's toolchain
#   prose: the King James Bible (public domain), from Debian's bible-kjv packages
# Output: $OUT/{code,prose}.json manifests and .tok shards (1% of documents held out).
set -euo pipefail
OUT=${1:-build/corpus}
DBRX=${DBRX:-go run ./cmd/dbrx}
mkdir -p "$OUT/text/prose"

if ! command -v bible >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bible-kjv >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bible-kjv >/dev/null
  fi
fi

# One document per chapter: verse references dropped, verses joined as one paragraph.
bible -f "Gen1:1-Rev22:21" | awk -v dir="$OUT/text/prose" '
  {
    ref = $1; sub(/^[^ ]+ /, "");
    chap = ref; sub(/:[0-9]+$/, "", chap);
    if (chap != last) {
      if (file != "") { printf "\n" > file; close(file) }
      n++; file = sprintf("%s/%04d.txt", dir, n); last = chap; sep = ""
    }
    printf "%s%s", sep, $0 > file; sep = " "
  }
  END { if (file != "") printf "\n" > file }'

GOSRC=$(go env GOROOT)/src
$DBRX data prepare --out "$OUT" --name code --heldout 0.01 --seed 1 --ext .go "$GOSRC"
$DBRX data prepare --out "$OUT" --name prose --heldout 0.01 --seed 1 "$OUT/text/prose"
