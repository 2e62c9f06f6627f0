#!/usr/bin/env bash
# make vulncheck: govulncheck on the whole module (./..., the serve binary
# ./cmd/valkey-webhook included), offline. vuln.go.dev cannot be reached here, so the
# vulnerability database is built from its source, the Go module golang.org/x/vulndb
# (every entry as OSV JSON in data/osv/, and cmd/indexdb, which writes vuln.go.dev's
# layout), through the module proxy, once, into a cache directory outside the
# checkout, and reused afterwards. docs/reliability.md (section 8) has the figures.
#
# Exits 3 when a vulnerability is reachable from the module's code (govulncheck's
# symbol mode); one only imported or required is reported and does not fail.
#
# Raising vulndb_version brings newer entries (go list -m golang.org/x/vulndb@latest);
# the old database directory can then be removed.
#
# Environment:
#   VALKEY_WEBHOOK_CACHE  cache root (default: $XDG_CACHE_HOME or ~/.cache, then /valkey-webhook)
#   GOTOOLCHAIN           the Go toolchain (default go1.27.3, as the Makefile sets it)
set -euo pipefail

: "${GOTOOLCHAIN:=go1.27.3}"
export GOTOOLCHAIN

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
vulndb_version=v0.0.0-20261105234957-e22db6528018
govulncheck_version=v1.9.0
cache_root=${VALKEY_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/valkey-webhook}
db="$cache_root/vulndb-$vulndb_version"
log() { echo "vulncheck: $*" >&2; }

if [[ ! -d $db ]]; then
  log "building the vulnerability database from golang.org/x/vulndb@$vulndb_version into $db"
  # Outside the module, so that neither go.mod nor go.sum learns of vulndb.
  src=$(cd / && GOWORK=off go mod download -json "golang.org/x/vulndb@$vulndb_version" |
    awk -F'"' '$2 == "Dir" { print $4 }')
  [[ -d $src/data/osv ]] || { log "no data/osv in golang.org/x/vulndb@$vulndb_version ($src)"; exit 1; }
  # Write into a scratch directory and rename it into place at the end, so an
  # interrupted build never leaves a database that looks finished.
  mkdir -p "$cache_root"
  tmp=$(mktemp -d "$cache_root/.vulndb.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd / && GOWORK=off go run "golang.org/x/vulndb/cmd/indexdb@$vulndb_version" -vulns "$src/data/osv" -out "$tmp")
  chmod 755 "$tmp"
  # A run alongside may have put its database in place first: keep that one.
  mv -T "$tmp" "$db" 2>/dev/null || [[ -d $db ]]
  rm -rf "$tmp"
  trap - EXIT
fi

# Installed, not `go run`, so that its exit status (3: vulnerable) is the script's.
# go install is a no-op when the binary is up to date.
bin="$cache_root/govulncheck-$govulncheck_version"
(cd / && GOWORK=off GOBIN="$bin" go install "golang.org/x/vuln/cmd/govulncheck@$govulncheck_version")
cd "$repo"
go version
exec "$bin/govulncheck" -db "file://$db" ./...
