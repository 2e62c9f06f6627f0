#!/usr/bin/env bash
# make test: the host tests (make test-host: verify, vulncheck, every unit, golden,
# envtest and real-Valkey suite, each fuzz target for FUZZSHORT), then the real-node
# suite (test/realnode: root and Linux), alone, since its pods share the 2 cores.
#
# The real node's binaries (hack/node/build.sh, about 14 minutes of both cores on a
# fresh machine) are built meanwhile, in the background at the lowest CPU priority
# (nice 19): they take the time the host tests leave idle, waiting on their polls and
# on Valkey, rather than adding their own. The build stops with this script however
# it ends; docs/real-node.md has the figures.
#
# Environment (set by the Makefile): GO, MAKE.
set -euo pipefail

: "${GO:=go}" "${MAKE:=make}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

cache_root=${VALKEY_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/valkey-webhook}
mkdir -p "$cache_root"
build_log="$cache_root/node-build.log"

# setsid: the build and its go commands are one process group, stopped as one.
setsid nice -n 19 hack/node/build.sh > /dev/null 2> "$build_log" &
build=$!
trap 'kill -TERM -- -"$build" 2> /dev/null || true' EXIT

"$MAKE" --no-print-directory test-host

# A build that failed in the background is run again in the foreground, where its
# error is seen; one that succeeded leaves nothing to build.
if ! wait "$build"; then
  echo "node-build: the background build failed (its log: $build_log); building again" >&2
fi
trap - EXIT
hack/node/build.sh > /dev/null
"$GO" test -tags realnode -count=1 -timeout 50m ./test/realnode
