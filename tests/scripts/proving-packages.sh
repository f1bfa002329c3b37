#!/usr/bin/env bash
# Installs the Debian packages the proving ground (tests/proving) runs, when missing:
# redis-server (standing in for Valkey: bookworm packages no valkey-server), mariadb-server
# (standing in for MySQL), postgresql (tests/scripts/postgres.sh installs it too) and
# python3-yaml (the harness reads the rendered YAML stream). An
# installed package is the cache: a later run only checks. Logs go to stderr; the last stdout
# line is "ok".
set -euo pipefail

log() { echo "proving-packages.sh: $*" >&2; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)

if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "root is needed to install ${missing[*]}"; exit 2; }
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The packages' own services are never started: the proving ground runs the programs itself.
  policy_added=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_added=1
  fi
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  [ -z "$policy_added" ] || rm -f /usr/sbin/policy-rc.d
fi
echo ok
