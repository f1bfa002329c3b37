#!/usr/bin/env bash
# Headless Chromium for the report tests (the HTML report is opened, screenshot and DOM dump).
#
#   HEXAGONE_CHROMIUM=$(tests/scripts/chromium.sh)   # prints the path of the chromium binary
#
# Installs the Debian `chromium` package when no chromium is found. Only stdout carries the
# path; apt's output goes to stderr.
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }

find_bin() {
  local name
  for name in chromium chromium-browser; do
    if command -v "$name" 2>/dev/null; then return 0; fi
  done
  return 1
}

if ! find_bin >/dev/null; then
  log "no chromium found: installing the Debian chromium package"
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends chromium >&2
fi
find_bin || { log "chromium is still missing after apt-get install"; exit 2; }
