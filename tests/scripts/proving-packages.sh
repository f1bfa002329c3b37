#!/usr/bin/env bash
# Installs the Debian packages the proving ground (tests/proving) runs, when missing:
# redis-server (standing in for Valkey: bookworm packages no valkey-server), mariadb-server
# (standing in for MySQL), postgresql (tests/scripts/postgres.sh installs it too),
# python3-yaml (the harness reads the rendered YAML stream), python3-venv, and nftables (the
# rendered NetworkPolicies become each pod namespace's packet filter); then Synapse from
# its Python package at the catalog image's version, in a virtual environment of the system's
# Python under ${HEXAGONE_CACHE:-~/.cache/hexagone}/synapse/<version>/venv. An installed package
# is the cache: a later run only checks. Logs go to stderr; the last stdout line is "ok".
set -euo pipefail

log() { echo "proving-packages.sh: $*" >&2; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
/usr/bin/python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || missing+=(nftables)
if [ "${1:-}" = --keycloak ]; then
  command -v mvn >/dev/null || missing+=(maven)
  command -v unzip >/dev/null || missing+=(unzip)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
fi

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

cache="${HEXAGONE_CACHE:-$HOME/.cache/hexagone}"
here=$(cd "$(dirname "$0")/../.." && pwd)

# The version of an image in the catalog: catalog_version IMAGE-WITHOUT-TAG [TAG-PREFIX].
catalog_version() {
  local v
  v=$(sed -n "s|^ *image: $1:${2:-}\([0-9.]*\)\$|\1|p" "$here/platform/data/stack-catalog.yaml")
  [ -n "$v" ] || { log "no $1 version in platform/data/stack-catalog.yaml"; exit 2; }
  echo "$v"
}

# cached NAME VERSION FUNCTION: runs FUNCTION DIR to install NAME VERSION into
# $cache/NAME/VERSION unless done before. The file `installed` is written last, so an
# interrupted install is never taken for the cache.
cached() {
  local dir="$cache/$1/$2" started=$SECONDS
  [ -n "$1" ] && [ -n "$2" ] || { log "cached: no name or version"; exit 2; }
  [ ! -e "$dir/installed" ] || return 0
  log "installing $1 $2 into $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  "$3" "$dir" "$2" || { rm -rf "$dir"; exit 1; }
  touch "$dir/installed"
  log "$1 $2 installed in $((SECONDS - started)) s"
}

# Synapse: the catalog image's version, with the extras the image installs (`all`: the
# PostgreSQL driver, OIDC...; docker/Dockerfile installs `/synapse[all]`), its dependencies
# held at the versions the image installs (tests/proving/synapse-<version>-constraints.txt,
# from the release's lock file: the newest prometheus-client breaks Synapse 1.141.0's import),
# in a virtual environment of the system's Python.
synapse_install() {
  /usr/bin/python3 -m venv "$1/venv" &&
    "$1/venv/bin/pip" install -q --disable-pip-version-check -c "$constraints" "matrix-synapse[all]==$2" >&2
}
synapse=$(catalog_version docker.io/matrixdotorg/synapse v)
constraints="$here/tests/proving/synapse-$synapse-constraints.txt"
[ -f "$constraints" ] || { log "no $constraints: write it from the release's poetry.lock"; exit 2; }
cached synapse "$synapse" synapse_install

# Keycloak, with --keycloak only (the proving ground runs it under that option): the
# distribution of the catalog image's version from Maven Central
# (org.keycloak:keycloak-quarkus-dist, a zip), unpacked.
keycloak_install() {
  mvn -q dependency:copy "-Dartifact=org.keycloak:keycloak-quarkus-dist:$2:zip" "-DoutputDirectory=$1" >&2 &&
    unzip -q "$1/keycloak-quarkus-dist-$2.zip" -d "$1" && rm "$1/keycloak-quarkus-dist-$2.zip"
}
if [ "${1:-}" = --keycloak ]; then
  keycloak=$(catalog_version quay.io/keycloak/keycloak)
  cached keycloak "$keycloak" keycloak_install
fi
echo ok
