#!/usr/bin/env bash
# make test: the host tests (make test-host: verify, vulncheck, every unit, golden,
# envtest and real-Valkey suite), then the real-node suite (test/realnode: root
# and Linux), alone among the tests, since its pods share the 2 cores.
#
# What needs the CPU but not the suite's timing runs beside, in the background at
# the lowest CPU priority (nice 19), so that it takes the time the tests leave idle
# (waiting on their polls, on Valkey, on the kubelet) rather than adding its own:
#   - from the start, the real node's binaries (hack/node/build.sh, about 14
#     minutes of both cores on a fresh machine) and the build cache of its images
#     (hack/node/images, into a scratch directory removed after);
#   - with the real-node suite, each fuzz target for FUZZSHORT (make fuzz-short),
#     its output in the cache directory, shown when it fails.
# Each is stopped with this script however it ends; docs/real-node.md has the
# figures.
#
# Environment (set by the Makefile): GO (the go command, words split as make
# splits $(GO)), MAKE.
set -euo pipefail

: "${GO:=go}" "${MAKE:=make}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

cache_root=${VALKEY_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/valkey-webhook}
mkdir -p "$cache_root"
build_log="$cache_root/node-build.log"
fuzz_log="$cache_root/fuzz-short.log"

# background NAME COMMAND...: COMMAND at nice 19 in a process group of its own
# (setsid), stopped as one; its PID in the variable NAME.
pids=()
background() {
  local name=$1
  shift
  setsid nice -n 19 "$@" &
  printf -v "$name" '%s' "$!"
  pids+=("$!")
}
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM -- -"$pid" 2> /dev/null || true; done
}
trap stop_all EXIT

background build bash -c '
  set -euo pipefail
  bin=$(hack/node/build.sh)
  scratch=$(mktemp -d)
  trap "rm -rf \"$scratch\"" EXIT
  $0 run ./hack/node/images -bin "$bin" -out "$scratch" -repo . > /dev/null
' "$GO" > /dev/null 2> "$build_log"

"$MAKE" --no-print-directory test-host

# A build that failed in the background is run again in the foreground, where its
# error is seen; one that succeeded leaves nothing to build.
if ! wait "$build"; then
  echo "node-build: the background build failed (its log: $build_log); building again" >&2
fi
hack/node/build.sh > /dev/null

background fuzz "$MAKE" --no-print-directory fuzz-short > "$fuzz_log" 2>&1
suite=0
$GO test -tags realnode -count=1 -timeout 50m ./test/realnode || suite=$?
fuzzed=0
wait "$fuzz" || fuzzed=$?
if [[ $fuzzed -ne 0 ]]; then
  cat "$fuzz_log" >&2
  echo "fuzz-short failed (its log: $fuzz_log)" >&2
else
  grep -E '^(== |ok|PASS)' "$fuzz_log" || true
fi
trap - EXIT
[[ $suite -eq 0 && $fuzzed -eq 0 ]]
