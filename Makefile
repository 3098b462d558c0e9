# flint: build, test and run. `make test` is what CI runs (.ci/run).

# sudo's secure_path often lacks Go: fall back to the standard install.
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
export PATH := $(dir $(GO)):$(PATH)

VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/flint
DATA    ?= ./flint-data
# The real Ignition clients the tests apply configs with (scripts/build-ignition.sh).
IGNITION_BIN := $(CURDIR)/.work/ignition-bin

.PHONY: all build image deps deps-lite vet test unit fuzz integration e2e lab lab-down run clean

all: build

## build: static bin/flint (no cgo), reproducible paths, version from git
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/flint

## image: bin/flint-image.tar (flint:$(VERSION)) and the OCI layout bin/flint-oci: flint (uid 65532, file
## capabilities) and Debian's iPXE, built without a container daemon (tools/image); reproducible: every
## timestamp is the last commit's time
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
image: build
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(GO) run ./tools/image -flint $(BIN) -ipxe /usr/lib/ipxe -tag flint:$(VERSION) -o bin/flint-image.tar -oci bin/flint-oci

## deps: Debian packages the tests need (real DHCP/TFTP/HTTP clients, dnsmasq, iPXE)
deps:
	scripts/install-deps.sh

## deps-lite: only what `flint serve` itself needs (Debian's iPXE binaries)
deps-lite:
	scripts/install-deps.sh --runtime

## vet: go vet, and gofmt must have nothing to say
vet:
	$(GO) vet ./...
	@unformatted=$$($(dir $(GO))gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.work/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt -w these files:"; echo "$$unformatted"; exit 1; fi

## test: everything, integration and e2e tests included (they need root: `sudo make test`)
# The e2e suite runs alone after the others: its five TCG VMs would
# otherwise compete for the 2 cores with the timing-sensitive integration tests.
test: deps vet
	GO=$(GO) scripts/build-ignition.sh $(IGNITION_BIN)
	FLINT_IGNITION_BIN=$(IGNITION_BIN) $(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v '/e2e')
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh
	FLINT_IGNITION_BIN=$(IGNITION_BIN) $(GO) test -count=1 -timeout 10m -v ./e2e/...

## fuzz: every Go fuzz target for FUZZTIME (default 30000 inputs) each, one at a time
FUZZTIME ?= 30000x
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

## unit: only the tests that need neither root nor Debian packages
unit:
	$(GO) test -count=1 -short ./...

## integration: the end-to-end tests alone, verbosely
integration: deps
	GO=$(GO) scripts/build-ignition.sh $(IGNITION_BIN)
	FLINT_IGNITION_BIN=$(IGNITION_BIN) $(GO) test -count=1 -timeout 20m -v ./integration/

## e2e: five QEMU machines (SeaBIOS+iPXE, OVMF native PXE, OVMF+e1000, OVMF HTTP boot, OVMF Secure Boot) netboot a test OS
## from flint and run the real Ignition client; checks every step (root, ~1-2 min)
e2e: deps
	GO=$(GO) scripts/build-ignition.sh $(IGNITION_BIN)
	FLINT_IGNITION_BIN=$(IGNITION_BIN) $(GO) test -count=1 -timeout 10m -v ./e2e/...

## lab: the e2e suite's virtual lab for people: namespace flt-lab, flint, five VMs; flint keeps running
lab: deps build
	GO=$(GO) scripts/build-ignition.sh $(IGNITION_BIN)
	FLINT_IGNITION_BIN=$(IGNITION_BIN) $(GO) run ./e2e/cmd/flint-lab up

## lab-down: stop the lab's VMs and flint (by PID) and delete its namespace; logs stay in .work/lab
lab-down:
	$(GO) run ./e2e/cmd/flint-lab down

## run: serve the embedded example cluster (proxy mode) with data in ./flint-data
run: deps-lite build
	$(BIN) serve --data $(DATA)

clean:
	rm -rf bin
