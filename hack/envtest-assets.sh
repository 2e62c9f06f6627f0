#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver, kube-controller-manager, etcd) from
# the Go module proxy into a cache directory outside the checkout, once, and prints that
# directory: use it as KUBEBUILDER_ASSETS.
#
# No binary download site is needed: the tools modules under hack/tools/ pin the
# versions (Kubernetes 1.37.2, matching k8s.io/api v0.37.2; etcd 3.6.16) and `go build`
# compiles them like any dependency. About 5 minutes on 2 cores the first time; a few
# milliseconds afterwards, since a finished directory is reused as is.
#
# Environment:
#   VALKEY_WEBHOOK_CACHE  cache root (default: $XDG_CACHE_HOME or ~/.cache, then /valkey-webhook)
#   GOTOOLCHAIN           the Go toolchain (default go1.27.3, as the Makefile sets it)
set -euo pipefail

: "${GOTOOLCHAIN:=go1.27.3}"
export GOTOOLCHAIN

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kube_version=1.37.2
etcd_version=3.6.16
cache_root=${VALKEY_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/valkey-webhook}
dest="$cache_root/envtest/k8s-$kube_version-etcd-$etcd_version"

if [[ -x "$dest/kube-apiserver" && -x "$dest/etcd" && -x "$dest/kube-controller-manager" ]]; then
  echo "$dest"
  exit 0
fi

# Build into a scratch directory and rename it into place at the end, so an interrupted
# build never leaves a directory that looks finished.
mkdir -p "$cache_root/envtest"
tmp=$(mktemp -d "$cache_root/envtest/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"

# CGO_ENABLED=0 and -trimpath as hack/node/build.sh builds the node's Kubernetes
# binaries, so that the packages they share are compiled once into the build cache.
export CGO_ENABLED=0
log() { echo "envtest-assets: $*" >&2; }

log "building etcd $etcd_version"
(cd "$here/tools/etcd" && go build -trimpath -o "$tmp/etcd" go.etcd.io/etcd/server/v3) >&2
log "building kube-apiserver $kube_version"
(cd "$here/tools/kube" && go build -trimpath -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver) >&2
log "building kube-controller-manager $kube_version"
(cd "$here/tools/kube" && go build -trimpath -o "$tmp/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager) >&2

rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
log "done: $dest"
echo "$dest"
