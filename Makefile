# bureauhub: the two commands a new user runs are `make demo` and `make test`.
GO      ?= go
BIN     := bin
PKGS    := ./...
# Packages with real concurrency get the race detector in `make test`.
RACE_PKGS := ./agent/buffer/ ./agent/sink/ ./agent/ship/ ./hub/ingest/ ./hub/auth/ \
	./hub/refsvc/host/ ./hub/refsvc/capacity/ ./hub/refsvc/booking/ ./hub/refsvc/healthcode/ ./hub/site/
# Fuzz budgets are counts of executions (each about ten seconds on the
# 2-core development machine), not durations: with a duration, Go 1.26's
# fuzz coordinator can fail a target with "context deadline exceeded" at
# the deadline having found nothing (golang/go#75804, fixed in Go 1.27).
# Longer runs: make fuzz FUZZ_BATCH=2000000x ...
FUZZ_BATCH  ?= 60000x
FUZZ_WIRE   ?= 25000x
FUZZ_RW     ?= 150000x
FUZZ_CHUNK  ?= 20000x

.PHONY: all build test test-short vet fuzz demo bench proto fmt-check clean compose-check

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Every test, ClickHouse integration and end-to-end tests included (they
# start their own throwaway clickhouse-server), the race detector on the
# concurrent packages, the Grafana plugin (its Go module against a real hub,
# and its frontend: npm ci, typecheck, jest, build), and a short run of each
# fuzz target.
test: fmt-check vet
	./scripts/ensure-test-deps.sh
	$(MAKE) compose-check
	$(GO) test -count=1 -timeout 20m $(PKGS)
	$(GO) test -race -count=1 -timeout 10m $(RACE_PKGS)
	$(GO) test -race -count=1 -timeout 10m -run 'TestCompaction|TestDifferential' ./hub/store/clickhouse/
	$(MAKE) -C plugin test
	$(MAKE) fuzz

# Unit tests only: no ClickHouse needed.
test-short:
	$(GO) test -short -count=1 $(PKGS)

fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzBatchDecode$$' -fuzztime=$(FUZZ_BATCH) ./hub/ingest/
	$(GO) test -run='^$$' -fuzz='^FuzzWireMatchesPrompb$$' -fuzztime=$(FUZZ_WIRE) ./hub/ingest/
	$(GO) test -run='^$$' -fuzz='^FuzzRemoteWriteHandler$$' -fuzztime=$(FUZZ_RW) ./agent/remotewrite/
	$(GO) test -run='^$$' -fuzz='^FuzzRoundTrip$$' -fuzztime=$(FUZZ_CHUNK) ./hub/store/chunk/

# Starts ClickHouse, a hub and agents for three bureaus on loopback.
demo: build
	./scripts/ensure-clickhouse.sh
	$(BIN)/demo -bin $(BIN)

# Every benchmark (ingest, agent footprint, query and rules), each beside
# its peers in the same run; results go to bench-out/ and docs/benchmarks.md.
bench: build
	./bench/run.sh
	./bench/agent.sh
	./bench/query.sh
	./bench/refsvc.sh
	./bench/autoscale.sh
	./bench/alerting.sh
	./bench/cluster.sh
	./bench/docs.sh

# Regenerates the federation protocol's Go code (checked in).
proto:
	cd api/federationpb && protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative federation.proto

compose-check:
	docker-compose -f docker-compose.yml config -q

clean:
	rm -rf $(BIN) .demo bench-out
