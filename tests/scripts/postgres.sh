#!/usr/bin/env bash
# Throwaway PostgreSQL server for the ledger tests, on a free loopback port.
#
#   eval "$(tests/scripts/postgres.sh start)"   # prints: export HEXAGONE_TEST_POSTGRES_URL='postgres://…'
#   tests/scripts/postgres.sh url               # prints the URL of the running server
#   tests/scripts/postgres.sh stop              # stops it and deletes the cluster
#
# Installs the Debian `postgresql` package when no initdb is found. The cluster lives in
# $HEXAGONE_PG_DIR (default /tmp/hexagone-pg-test), owned by the `postgres` user when run as
# root (PostgreSQL refuses to run as root). Only stdout carries the export line; logs go to stderr.
set -euo pipefail

dir="${HEXAGONE_PG_DIR:-/tmp/hexagone-pg-test}"
db=hexagone_test
mode="${1:-start}"

log() { echo "postgres.sh: $*" >&2; }

find_bin() {
  local name="$1" found
  if found="$(command -v "$name" 2>/dev/null)"; then echo "$found"; return 0; fi
  found="$(ls -d /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -n 1 || true)"
  [ -n "$found" ] && echo "$found"
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

url_of() { echo "postgres://postgres@127.0.0.1:$(cat "$dir/port")/$db"; }

running() {
  [ -f "$dir/port" ] && [ -d "$dir/data" ] && as_owner "$(find_bin pg_ctl)" -D "$dir/data" status >/dev/null 2>&1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $(( 20000 + RANDOM % 30000 ))
}

start() {
  if [ -z "$(find_bin initdb || true)" ]; then
    log "initdb not found: installing the postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
  fi
  local initdb pg_ctl
  initdb="$(find_bin initdb)"; pg_ctl="$(find_bin pg_ctl)"
  if running; then
    log "already running on port $(cat "$dir/port")"
    echo "export HEXAGONE_TEST_POSTGRES_URL='$(url_of)'"
    return 0
  fi
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir "$dir" --shell /usr/sbin/nologin postgres
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  chmod 700 "$dir"
  as_owner "$initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  local port
  for _ in 1 2 3 4 5; do
    port="$(free_port)"
    if as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
         -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >&2; then
      echo "$port" | as_owner tee "$dir/port" >/dev/null
      break
    fi
    log "port $port did not work, trying another"
    port=""
  done
  [ -n "$port" ] || { cat "$dir/server.log" >&2; exit 1; }
  as_owner "$(find_bin createdb)" -h 127.0.0.1 -p "$port" -U postgres "$db"
  log "PostgreSQL running in $dir on 127.0.0.1:$port"
  echo "export HEXAGONE_TEST_POSTGRES_URL='$(url_of)'"
}

stop() {
  if running; then
    as_owner "$(find_bin pg_ctl)" -D "$dir/data" -m fast -w stop >&2
  fi
  rm -rf "$dir"
  log "stopped"
}

case "$mode" in
  start) start ;;
  stop) stop ;;
  url) running && url_of || { log "not running"; exit 1; } ;;
  *) echo "usage: $0 [start|stop|url]" >&2; exit 2 ;;
esac
