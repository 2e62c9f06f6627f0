# valkey-webhook: build, test and verify.
#
# `make test` is the whole test run (CI runs exactly this): it builds the envtest
# control plane once into a cache outside the checkout (hack/envtest-assets.sh), then
# runs every unit, golden, fuzz-seed and envtest suite.

GO        ?= go
BIN       ?= bin
FUZZTIME  ?= 3m
GOTESTFLAGS ?= -race -count=1

.PHONY: all build test unit verify envtest-assets golden fuzz demo clean

all: verify build test

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/valkey-webhook ./cmd/valkey-webhook

## test: verify, then every test, the envtest suite included.
test: verify
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" $(GO) test $(GOTESTFLAGS) ./...

## unit: the tests that need no control plane.
unit:
	$(GO) test $(GOTESTFLAGS) ./config/... ./defaults/... ./webhook/... ./internal/... ./cmd/...

## verify: formatting, vet, and tidy modules.
verify:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff

## demo: a local control plane with the webhook registered; applies the examples and reports. Ctrl-C stops it.
demo:
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" $(GO) run ./hack/demo

## envtest-assets: build kube-apiserver, etcd and kube-controller-manager; print their directory.
envtest-assets:
	@hack/envtest-assets.sh

## golden: rewrite golden files from the current output; review the diff before committing.
golden:
	$(GO) test ./defaults/... ./generator/... ./cmd/... -run Golden -update

## fuzz: run each fuzz target for FUZZTIME (make fuzz FUZZTIME=10m).
fuzz:
	$(GO) test ./webhook -run '^$$' -fuzz '^FuzzAdmissionHandler$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s

clean:
	rm -rf $(BIN)
