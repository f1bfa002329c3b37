#!/usr/bin/env bash
# Builds the real control plane binaries used by the test bed (tests/testbed):
# etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kubectl (tests/controlplane) and
# kwok with its stage definitions (tests/controlplane/kwok), into a cache outside the repo:
#
#   ${HEXAGONE_CACHE:-$HOME/.cache/hexagone}/controlplane/<key>/bin
#
# <key> is a hash of the Go sources, go.mod/go.sum files, the build flags and the Go version, so the
# build runs again only when a pin changes. Build output goes to stderr; the bin dir is printed
# alone on the last stdout line. Point the tests at it with:
#
#   export HEXAGONE_CONTROLPLANE_BIN="$(tests/scripts/controlplane.sh)"
#
# Modes:
#   controlplane.sh              build if needed, print the bin dir
#   controlplane.sh --print-dir  print the bin dir without building (exit 1 if not built yet)
set -euo pipefail

mode="${1:-build}"
case "$mode" in
  build | --print-dir) ;;
  -h | --help)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "controlplane.sh: unknown argument '$mode' (expected nothing or --print-dir)" >&2
    exit 2
    ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$(cd "$here/../controlplane" && pwd)"

command -v go >/dev/null || { echo "controlplane.sh: 'go' is not on PATH" >&2; exit 2; }

k8s_version="v1.34.4"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=34"
  ldflags+=" -X $pkg.gitTreeState=clean"
done
# kwok refuses to run without stages: take the ones its module ships (fast node
# initialisation, lease-backed heartbeat, fast pod lifecycle) as one multi-document file.
stages=(
  kustomize/stage/node/fast/node-initialize.yaml
  kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  kustomize/stage/pod/fast/pod-ready.yaml
  kustomize/stage/pod/fast/pod-complete.yaml
  kustomize/stage/pod/fast/pod-delete.yaml
)

bins=(etcd kube-apiserver kube-scheduler kube-controller-manager kubectl kwok)

# The list of binaries is part of the key: a cache built before a binary joined the list is
# rebuilt rather than found complete without it.
key="$(
  {
    go version
    (cd "$src" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) | LC_ALL=C sort |
      while read -r f; do echo "$f"; sha256sum <"$f"; done)
    echo "$ldflags" "${stages[@]}" "${bins[@]}"
  } | sha256sum | cut -c1-16
)"
cache="${HEXAGONE_CACHE:-$HOME/.cache/hexagone}/controlplane"
out="$cache/$key"
bin="$out/bin"

complete() {
  [ -f "$out/.complete" ] || return 1
  for b in "${bins[@]}"; do [ -x "$bin/$b" ] || return 1; done
  [ -f "$bin/kwok-stages.yaml" ]
}

if [ "$mode" = "--print-dir" ]; then
  echo "$bin"
  complete
  exit $?
fi

mkdir -p "$cache"
# One build at a time per cache (CI and a person, or two test runs, may start it together).
exec 9>"$cache/.lock"
flock 9

if complete; then
  echo "controlplane.sh: cached build $out" >&2
  echo "$bin"
  exit 0
fi

start=$(date +%s)
work="$(mktemp -d "$cache/.build-$key.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"

export CGO_ENABLED=0
export GOFLAGS="-mod=mod -buildvcs=false"
echo "controlplane.sh: building Kubernetes $k8s_version and etcd into $out" >&2
(cd "$src" && go build -trimpath -ldflags "$ldflags" -o "$work/bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl \
  ./etcd) >&2

echo "controlplane.sh: building kwok" >&2
(cd "$src/kwok" && go build -trimpath -ldflags "-s -w" -o "$work/bin/kwok" sigs.k8s.io/kwok/cmd/kwok) >&2

kwok_dir="$(cd "$src/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
: >"$work/bin/kwok-stages.yaml"
for s in "${stages[@]}"; do
  [ -f "$kwok_dir/$s" ] || { echo "controlplane.sh: kwok stage $s missing in $kwok_dir" >&2; exit 1; }
  { echo "---"; cat "$kwok_dir/$s"; } >>"$work/bin/kwok-stages.yaml"
done

(cd "$work/bin" && for b in "${bins[@]}"; do
  # kubectl has no --version flag; its client version is a subcommand.
  if [ "$b" = kubectl ]; then version=(version --client); else version=(--version); fi
  "./$b" "${version[@]}" 2>&1 | head -1 | sed "s/^/$b: /"
done) >"$work/VERSIONS" 2>&1 || true
cat "$work/VERSIONS" >&2
touch "$work/.complete"
rm -rf "$out"
mv "$work" "$out"
trap - EXIT
echo "controlplane.sh: built in $(($(date +%s) - start))s" >&2
echo "$bin"
