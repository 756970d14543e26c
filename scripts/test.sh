#!/usr/bin/env bash
# The project's test command: installs what the tests need, then vets and tests everything.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS="${GOFLAGS:-} -mod=mod"
go vet ./...
go test -count=1 -timeout 20m ./...
