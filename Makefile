# valkey-webhook: build, test and verify.
#
# `make test` is the whole test run (CI runs exactly this): it builds the envtest
# control plane and the real node's binaries once into a cache outside the checkout
# (hack/envtest-assets.sh, hack/node/build.sh), checks for vulnerabilities (make
# vulncheck), runs every unit, golden, fuzz-seed and envtest suite, then the
# real-node suite (test/realnode: root and Linux) with each fuzz target for
# FUZZSHORT beside it (hack/test.sh).

# The Go toolchain of every build and test: go1.27.3, which the machine's Go
# fetches from the module proxy the first time. The machine's go1.26.8 has
# standard-library vulnerabilities reachable from serve (docs/reliability.md,
# section 8). go.mod's go line stays at 1.26.0, which never makes the go command
# switch by itself, so every shell and script that runs go sets GOTOOLCHAIN.
export GOTOOLCHAIN := go1.27.3

GO        ?= go
BIN       ?= bin
# FUZZTIME is the time of the whole `make fuzz`, shared evenly by FUZZTARGETS
# (a Go duration of h, m and s: 10m, 90s, 1h30m).
FUZZTIME  ?= 10m
# FUZZSHORT is the time of each fuzz target in `make test` (make fuzz-short).
FUZZSHORT ?= 30s
FUZZMINIMIZETIME ?= 100x
FUZZTARGETS ?= ./webhook:FuzzAdmissionHandler ./webhook:FuzzHarden ./config:FuzzParse ./config:FuzzEffective
# -timeout 30m: test/lifecycle and test/matrix take about 9 minutes alone, close
# to go test's default 10, and more on a loaded machine.
GOTESTFLAGS ?= -race -count=1 -timeout 30m

.PHONY: all build deps test test-host unit verify vulncheck envtest-assets golden fuzz fuzz-short demo clean node-up node-down

all: verify build test

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/valkey-webhook ./cmd/valkey-webhook

## test: make test-host, then the real-node suite, and make fuzz-short beside it
## (hack/test.sh). The real-node suite runs after the other tests (its pods share
## the 2 cores), without -race: what it tests runs in the pods, built without it.
## Run beside each other, test/matrix's scale-down spec overran its waits
## (docs/real-node.md). The node's binaries are built meanwhile, and the fuzzing
## runs beside the suite, both in the background at the lowest CPU priority.
test: deps
	@GO='$(GO)' MAKE='$(MAKE)' hack/test.sh

## test-host: verify and vulncheck, then every test but the real node's: unit,
## golden, fuzz seeds, envtest, real Valkey.
test-host: deps verify vulncheck
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" KUBE_SCORE="$$(hack/kube-score.sh)" $(GO) test $(GOTESTFLAGS) ./...

## realnode: only the real-node suite (make node-up's node, started and removed by it).
.PHONY: realnode
realnode: deps
	@hack/node/build.sh > /dev/null
	$(GO) test -tags realnode -count=1 -timeout 50m -v ./test/realnode

## unit: the tests that need no control plane.
unit:
	$(GO) test $(GOTESTFLAGS) ./config/... ./defaults/... ./webhook/... ./internal/... ./cmd/...

## verify: formatting, vet, and tidy modules.
verify:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags realnode ./test/realnode
	$(GO) vet -tags 'realnode availability' ./test/realnode
	$(GO) mod tidy -diff

## vulncheck: govulncheck on the module, offline, against a database built once from
## golang.org/x/vulndb (hack/vulncheck.sh); fails on a vulnerability reachable from
## the code, not on one only imported.
vulncheck:
	@hack/vulncheck.sh

## demo: the real node (make node-up), valkey-webhook installed in-cluster, the minimal
## example formed into a cluster, a key read back, an unsafe spec denied; stays up
## until Ctrl-C, which removes the node. Root and Linux.
demo: deps
	$(GO) run ./hack/demo

## node-up: a real single-node Kubernetes on this machine (root, Linux): prints an
## `image ROLE=REF` line per locally built image and, last, an admin kubeconfig's path.
## node-down: stops it and removes everything it created. Both idempotent;
## docs/real-node.md says what runs and how.
node-up: deps
	@hack/node/up.sh

node-down:
	@hack/node/down.sh

## deps: the Debian packages the tests and the real node need (hack/deps.sh):
## installed when missing, as root on Debian; otherwise it says what to install.
deps:
	@hack/deps.sh

## envtest-assets: build kube-apiserver, etcd and kube-controller-manager; print their directory.
envtest-assets:
	@hack/envtest-assets.sh

## golden: rewrite golden files from the current output; review the diff before committing.
golden:
	$(GO) test ./defaults/... ./generator/... ./cmd/... -run Golden -update

## fuzz: run every fuzz target of FUZZTARGETS (package:Target), each for an equal
## share of FUZZTIME, 10 minutes in all by default (make fuzz FUZZTIME=30m). A crash
## stops the run; go test writes the input to the package's testdata/fuzz/, where
## it stays as a seed that `make test` runs.
fuzz:
	@secs=$$(echo '$(FUZZTIME)' | awk '{ t = $$0; s = 0; \
	    while (match(t, /^[0-9]+[hms]/)) { n = substr(t, 1, RLENGTH - 1); u = substr(t, RLENGTH, 1); \
	      s += n * (u == "h" ? 3600 : (u == "m" ? 60 : 1)); t = substr(t, RLENGTH + 1) } \
	    if (t != "" || s == 0) { exit 1 } print s }') || { echo "FUZZTIME=$(FUZZTIME): want a duration such as 10m or 90s"; exit 2; }; \
	set -- $(FUZZTARGETS); share=$$((secs / $$#)); [ $$share -gt 0 ] || share=1; \
	each=$${share}s; $(fuzz_each)

## fuzz-short: every fuzz target for FUZZSHORT (30s) on top of its seeds, as `make
## test` runs them, so that a regression only fuzzing finds fails it. As with make
## fuzz, a crash fails the run and its input is left in the package's testdata/fuzz/.
fuzz-short:
	@each='$(FUZZSHORT)'; $(fuzz_each)

# fuzz_each: the loop of fuzz and fuzz-short, in the shell: every target of
# FUZZTARGETS for $$each (a -fuzztime), stopping at the first that fails.
fuzz_each = for t in $(FUZZTARGETS); do \
	  pkg=$${t%%:*}; name=$${t\#\#*:}; \
	  echo "== $$name ($$pkg) for $$each"; \
	  $(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $$each -fuzzminimizetime $(FUZZMINIMIZETIME) || exit 1; \
	done

clean:
	rm -rf $(BIN)

## bench: valkey-webhook against the floor (a no-op webhook on the same
## controller-runtime server) at concurrency 1 and 50, peak RSS of serve, and
## StatefulSet creates through kube-apiserver with and without the webhooks. A few
## minutes; not part of `make test`. The last line is machine-readable; the method
## and the figures are in docs/benchmarks.md. Pass flags with BENCHFLAGS, e.g.
## make bench BENCHFLAGS='-rounds 9 -duration 3s'.
BENCHFLAGS ?=
.PHONY: bench
bench:
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" $(GO) run ./test/bench/run $(BENCHFLAGS)

## bench-lifecycle: cluster.Init against `valkey-cli --cluster create` on the same
## six valkey-server nodes (run as the hardened pods, test/valkeyharness), and
## cluster.Heal after a full restart on new addresses, with every key read back.
## Needs valkey-server and valkey-cli 8; about two minutes; not part of `make test`.
## The last line is machine-readable; the method and the figures are in
## docs/benchmarks.md. Pass flags with LIFECYCLEFLAGS, e.g.
## make bench-lifecycle LIFECYCLEFLAGS='-auth -tls -rounds 7'.
LIFECYCLEFLAGS ?=
.PHONY: bench-lifecycle
bench-lifecycle:
	$(GO) run ./test/bench/lifecycle $(LIFECYCLEFLAGS)

## bench-availability: on the real node (make node-up's node, started and removed
## by it; root and Linux), a valkey-go cluster client in a pod (test/realnode/writer)
## writes all along to keys over all slots, each write retried every 10 ms until it
## succeeds, through a config roll, a TLS certificate renewal, a drain of every pod
## through the Eviction API, a rollout restart of valkey-webhook, and a master
## killed with --force; per operation the longest stall, the failed attempts and
## the keys read back of those written, with the goals' verdicts. About half an
## hour by estimate; not part of `make test`. The last line is machine-readable; the
## method and the figures are in docs/benchmarks.md. AVAILABILITY_WRITERS sets the
## writers (8).
AVAILABILITY_REPORT ?= $(or $(TMPDIR),/tmp)/valkey-webhook-availability.txt
.PHONY: bench-availability
bench-availability:
	@hack/node/build.sh > /dev/null
	@rm -f '$(AVAILABILITY_REPORT)'
	@AVAILABILITY_REPORT='$(AVAILABILITY_REPORT)' $(GO) test -tags 'realnode availability' -count=1 -timeout 150m -v ./test/realnode \
	  -ginkgo.label-filter=availability -ginkgo.timeout=140m -ginkgo.v; rc=$$?; \
	  if [ -s '$(AVAILABILITY_REPORT)' ]; then echo; cat '$(AVAILABILITY_REPORT)'; fi; exit $$rc
