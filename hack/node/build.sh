#!/usr/bin/env bash
# Builds the real node's binaries from the Go module proxy into a cache directory
# outside the checkout, once, and prints that directory. Each binary is built into a
# scratch file and renamed into place, so an interrupted build never leaves a binary
# that looks finished, and a rerun builds only what is missing.
#
#   kubelet, kube-proxy, kube-scheduler, kubectl  hack/tools/kube (Kubernetes 1.37.2,
#                                                 the module the envtest assets come from)
#   coredns                                       hack/tools/coredns (v1.15.0)
#   kube-router                                   hack/tools/kube-router (v2.1.0, firewall only)
#   local-path-provisioner                        hack/tools/local-path-provisioner (v0.0.30)
#
# About 9 minutes on 2 cores the first time (kubelet alone about 3), milliseconds after.
#
# Environment:
#   VALKEY_WEBHOOK_CACHE  cache root (default: $XDG_CACHE_HOME or ~/.cache, then /valkey-webhook)
#   GOTOOLCHAIN           the Go toolchain (default go1.27.3, as the Makefile sets it)
set -euo pipefail

: "${GOTOOLCHAIN:=go1.27.3}"
export GOTOOLCHAIN

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_root=${VALKEY_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/valkey-webhook}
dest="$cache_root/node/k8s-v1.37.2-coredns-1.15.0-kube-router-2.1.0-lpp-0.0.30"
mkdir -p "$dest"

export CGO_ENABLED=0
log() { echo "node-build: $*" >&2; }

# Kubernetes binaries report their version (the kubelet puts it in its Node), as a
# release build stamps it.
kube_ldflags="-X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"

# build NAME MODULE_DIR PACKAGE [LDFLAGS]
build() {
  local name=$1 dir=$2 pkg=$3 ldflags=${4:-}
  [[ -x "$dest/$name" ]] && return 0
  log "building $name"
  local start=$SECONDS
  (cd "$here/tools/$dir" && go build -trimpath -ldflags="$ldflags" -o "$dest/.$name.tmp" "$pkg") >&2
  mv "$dest/.$name.tmp" "$dest/$name"
  log "built $name in $((SECONDS - start))s"
}

build kubelet kube k8s.io/kubernetes/cmd/kubelet "$kube_ldflags"
build kube-proxy kube k8s.io/kubernetes/cmd/kube-proxy "$kube_ldflags"
build kube-scheduler kube k8s.io/kubernetes/cmd/kube-scheduler "$kube_ldflags"
build kubectl kube k8s.io/kubernetes/cmd/kubectl "$kube_ldflags"
build coredns coredns github.com/coredns/coredns
build kube-router kube-router github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
build local-path-provisioner local-path-provisioner github.com/rancher/local-path-provisioner

echo "$dest"
