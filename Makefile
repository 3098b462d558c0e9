# flint: build, test and run. `make test` is what CI runs (.ci/run).

# sudo's secure_path often lacks Go: fall back to the standard install.
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)

VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/flint
DATA    ?= ./flint-data

.PHONY: all build deps deps-lite vet test unit integration run clean

all: build

## build: static bin/flint (no cgo), reproducible paths, version from git
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/flint

## deps: Debian packages the tests need (real DHCP/TFTP/HTTP clients, dnsmasq, iPXE)
deps:
	scripts/install-deps.sh

## deps-lite: only what `flint serve` itself needs (Debian's iPXE binaries)
deps-lite:
	scripts/install-deps.sh --runtime

vet:
	$(GO) vet ./...

## test: everything, integration tests included (they need root: `sudo make test`)
test: deps vet
	$(GO) test -count=1 -timeout 20m ./...

## unit: only the tests that need neither root nor Debian packages
unit:
	$(GO) test -count=1 -short ./...

## integration: the end-to-end tests alone, verbosely
integration: deps
	$(GO) test -count=1 -timeout 20m -v ./integration/

## run: serve the embedded example cluster (proxy mode) with data in ./flint-data
run: deps-lite build
	$(BIN) serve --data $(DATA)

clean:
	rm -rf bin
