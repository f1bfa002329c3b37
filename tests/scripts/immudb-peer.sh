#!/usr/bin/env bash
# Builds the append benchmark's peer, immudb's embedded store v1.11.1 (tests/peers/immudb), into
# a cache outside the repo and prints the binary's path alone on the last stdout line:
#
#   ${HEXAGONE_CACHE:-$HOME/.cache/hexagone}/peers/<key>/immudb-append
#
# <key> hashes the sources, go.mod/go.sum and the Go version. `tests/run bench` exports it as
# HEXAGONE_IMMUDB_APPEND for `cargo bench -p hexagone-auditor --bench append`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../peers/immudb" && pwd)"
command -v go >/dev/null || { echo "immudb-peer.sh: 'go' is not on PATH" >&2; exit 2; }
key=$( (cat "$src/main.go" "$src/go.mod" "$src/go.sum"; go version) | sha256sum | cut -c1-16)
out="${HEXAGONE_CACHE:-$HOME/.cache/hexagone}/peers/$key"
if [ ! -x "$out/immudb-append" ]; then
  mkdir -p "$out"
  (cd "$src" && go build -trimpath -o "$out/immudb-append.tmp" . >&2)
  mv "$out/immudb-append.tmp" "$out/immudb-append"
fi
echo "$out/immudb-append"
