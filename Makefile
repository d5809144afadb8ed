# keygate: `make help` lists every target.
SHELL := /bin/bash
GO ?= go
BIN := bin/keygate
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
OPA := $(GO) tool opa
# golangci-lint is pinned in a module of its own: its dependencies clash with OPA's.
LINT := $(GO) tool -modfile=.tools/go.mod golangci-lint
COVERAGE_THRESHOLD ?= 90

.DEFAULT_GOAL := help

.PHONY: help
help: ## list every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/keygate
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/keygate

.PHONY: run
run: build ## run the service on its embedded default (127.0.0.1:8080, SQLite in ./data)
	./$(BIN) serve

.PHONY: test
test: opa-test interop-deps ## run every test: Rego, Go unit, storage on SQLite and Postgres, handlers, MCP interop, end to end
	$(GO) test -race -count=1 -timeout 15m ./...

.PHONY: interop-deps
interop-deps: ## install the pinned npm peers of the MCP interop test (needs Node 20+; skipped without npm)
	@cd mcp/testdata/interop && { [ -d node_modules ] || ! command -v npm >/dev/null || npm ci --no-audit --no-fund --loglevel=error; }

.PHONY: opa-test
opa-test: ## run the Rego tests with the pinned OPA CLI; fails below $(COVERAGE_THRESHOLD)% coverage
	$(OPA) check --strict policies opa-tests
	@$(OPA) test --coverage --threshold $(COVERAGE_THRESHOLD) policies opa-tests > .opa-coverage.json || \
		{ $(OPA) test -v policies opa-tests; rm -f .opa-coverage.json; echo "opa-test: a test failed or coverage is below $(COVERAGE_THRESHOLD)%"; exit 1; }
	@echo "opa-test: every Rego test passes; coverage $$(tail -n 5 .opa-coverage.json | sed -n 's/.*"coverage": *\([0-9.]*\).*/\1/p')%"; rm -f .opa-coverage.json
	@# Each example is a policy of its own beside keygate's: its rules add to
	@# deny, so two examples loaded together would deny each other's tests.
	@set -e; for ex in docs/examples/*/; do \
		$(OPA) check --strict policies $$ex; \
		$(OPA) test policies $$ex > /dev/null || { $(OPA) test -v policies $$ex; echo "opa-test: a test of the example $$ex failed"; exit 1; }; \
	done
	@echo "opa-test: each example policy in docs/examples passes its tests"

# Every fuzz target as package:Target; `make test` runs their seed corpora
# (testdata/fuzz) as ordinary tests.
FUZZ_TARGETS := authz:FuzzTokenFormat authz:FuzzParseScope authz:FuzzScopeCeiling \
	server:FuzzScanJSON server:FuzzAuthorizeBody server:FuzzJWTVerify storage:FuzzDecodeCursor
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME (default 30s); a finding is saved under the package's testdata/fuzz
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz: $$name in ./$$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) ./$$pkg/; done

.PHONY: bench
bench: ## keygate vs OPA vs a bare gin handler, SQLite and Postgres, 1,000,000 keys, then the realistic workload; writes docs/benchmarks.md (BENCH_FLAGS=-scale=false: shorter)
	$(GO) run ./cmd/keygate-bench $(BENCH_FLAGS)

.PHONY: bench-realistic
bench-realistic: ## the realistic workload alone: 500 keys, 20,000 distinct questions, half denied; rewrites its section of docs/benchmarks.md
	$(GO) run ./cmd/keygate-bench -realistic-only $(BENCH_FLAGS)

.PHONY: bench-go
bench-go: ## Go benchmarks of the decision path, authentication, the handler, the key cache and the MCP gateway
	$(GO) test -run '^$$' -bench . -benchmem ./authz/ ./server/ ./mcp/

# The soak: its length, and the database (sqlite or postgres).
SOAK_DURATION ?= 10m
SOAK_DB ?= sqlite

.PHONY: soak
soak: ## run keygate for SOAK_DURATION (default 10m; SOAK_DB=postgres on Postgres) under mixed traffic; fails when memory, goroutines or fds keep rising, or on a 5xx or panic; writes docs/soak.md
	@case "$(SOAK_DB)" in sqlite|postgres) ;; *) echo "soak: SOAK_DB must be sqlite or postgres, got $(SOAK_DB)"; exit 1;; esac
	$(GO) run ./cmd/keygate-soak -duration $(SOAK_DURATION) $(if $(filter postgres,$(SOAK_DB)),-postgres) $(SOAK_FLAGS)

.PHONY: lint
lint: ## gofmt, go vet, golangci-lint and opa fmt
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "run make fmt"; exit 1; }
	$(GO) vet ./...
	$(LINT) run ./...
	@test -z "$$($(OPA) fmt --list policies opa-tests docs/examples)" || { echo "run make fmt"; exit 1; }

.PHONY: docs
docs: ## write docs/api.md from the OpenAPI document, server/openapi.yaml (a test fails when it is stale)
	$(GO) run ./cmd/keygate-docs -o docs/api.md

.PHONY: fmt
fmt: ## format Go and Rego sources
	gofmt -w $$(git ls-files '*.go')
	$(OPA) fmt -w policies opa-tests docs/examples

.PHONY: clean
clean: ## remove build output (keeps ./data)
	rm -rf bin
