#!/usr/bin/env bash
# Builds kube-score (the outside scorer the generator's hardened output is checked
# against, generator/kubescore_test.go) from the Go module proxy into a cache
# directory outside the checkout, once, and prints the binary's path: use it as
# KUBE_SCORE. About a minute on 2 cores the first time.
#
# Environment:
#   VALKEY_WEBHOOK_CACHE  cache root (default: $XDG_CACHE_HOME or ~/.cache, then /valkey-webhook)
#   GOTOOLCHAIN           the Go toolchain (default go1.27.3, as the Makefile sets it)
set -euo pipefail

: "${GOTOOLCHAIN:=go1.27.3}"
export GOTOOLCHAIN

version=v1.20.0
cache_root=${VALKEY_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/valkey-webhook}
dest="$cache_root/kube-score-$version"
if [[ -x "$dest/kube-score" ]]; then
  echo "$dest/kube-score"
  exit 0
fi

# Build into a scratch directory and rename it into place, so an interrupted build
# never leaves a directory that looks finished.
mkdir -p "$cache_root"
tmp=$(mktemp -d "$cache_root/.kube-score.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "kube-score: building $version" >&2
(cd "$tmp" && CGO_ENABLED=0 GOBIN="$tmp/bin" go install "github.com/zegl/kube-score/cmd/kube-score@$version") >&2
rm -rf "$dest"
mv "$tmp/bin" "$dest"
echo "$dest/kube-score"
