#!/usr/bin/env bash
# Builds SeaweedFS's `weed` from its Go module at the version the proving ground runs
# (tests/proving), into a cache outside the repo:
#
#   ${HEXAGONE_CACHE:-$HOME/.cache/hexagone}/seaweedfs/<release>-go<go version>/weed
#
# with the image's own files the proving ground plays (docker/filer.toml, the image's
# /etc/seaweedfs/filer.toml; docker/entrypoint.sh, for the record) and VERSION (what was built,
# from which module version, with which Go). The module version is pinned below, with the
# release it carries (its weed/util/version/constants.go); the catalog's image
# (platform/data/stack-catalog.yaml) must be that release, or the script refuses: running another
# program than the image's would prove nothing about the image. One build at a time (a lock),
# reused when present (the file `installed` is written last). Build output goes to stderr; the
# binary's path is printed alone on the last stdout line.
set -euo pipefail

log() { echo "seaweedfs.sh: $*" >&2; }

# The newest SeaweedFS the Go module proxy reachable here serves: a pseudo-version of the
# upstream commit 7506e5f91cd6 (2026-11-09), whose weed/util/version/constants.go:11-12 says 4.53.
module=github.com/seaweedfs/seaweedfs
module_version=v0.0.0-20261109003541-7506e5f91cd6
release=4.53

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
command -v go >/dev/null || { log "'go' is not on PATH"; exit 2; }
image=$(sed -n 's|^ *image: docker.io/chrislusf/seaweedfs:\([0-9.]*\)$|\1|p' "$here/platform/data/stack-catalog.yaml" | sort -u)
[ "$image" = "$release" ] || {
  log "the catalog's SeaweedFS image is '$image', this script builds $release ($module@$module_version)"
  exit 2
}

goversion=$(go env GOVERSION)
cache="${HEXAGONE_CACHE:-$HOME/.cache/hexagone}/seaweedfs"
out="$cache/$release-go${goversion#go}"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

if [ -x "$out/weed" ] && [ -f "$out/installed" ]; then
  log "cached build $out"
  echo "$out/weed"
  exit 0
fi

started=$SECONDS
work=$(mktemp -d "$cache/.build-$release.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
cat >"$work/src/go.mod" <<GOMOD
module hexagone.local/seaweedfs-build

go 1.26.6

require $module $module_version
GOMOD
# A blank import so that `go mod tidy` (when the first build misses a go.sum line) keeps the
# module and its dependencies.
printf 'package main\n\nimport _ "%s/weed/command"\n\nfunc main() {}\n' "$module" >"$work/src/tools.go"

export CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false"
build() {
  (cd "$work/src" && nice -n 10 go build -trimpath -ldflags "-s -w" -o "$work/weed" "$module/weed") >&2
}
log "building weed $release ($module@$module_version) with $goversion into $out"
if ! build; then
  log "first build failed: once more after go mod tidy"
  (cd "$work/src" && nice -n 10 go mod tidy) >&2
  build
fi
version=$("$work/weed" version 2>&1 | head -1)
log "built: $version"
case "$version" in *" $release "*) ;; *) log "the built weed is not $release"; exit 1 ;; esac
dir=$(cd "$work/src" && go list -m -f '{{.Dir}}' "$module")
cp "$dir/docker/filer.toml" "$dir/docker/entrypoint.sh" "$work/"
echo "weed $release built from $module@$module_version with $goversion ($version)" >"$work/VERSION"
rm -rf "$out"
mkdir -p "$out"
mv "$work/weed" "$work/filer.toml" "$work/entrypoint.sh" "$work/VERSION" "$out/"
touch "$out/installed"
log "built in $((SECONDS - started)) s, $(du -h "$out/weed" | cut -f1)"
echo "$out/weed"
