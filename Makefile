# order-confirmation — every task a developer or CI runs. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BIN := target/debug/order-confirmation
# cargo-nextest runs each test in its own process (isolated env and panics); fall back to cargo test.
NEXTEST := $(shell cargo nextest --version >/dev/null 2>&1 && echo yes)
ifeq ($(NEXTEST),yes)
TEST_CMD := cargo nextest run --workspace --no-fail-fast
else
TEST_CMD := cargo test --workspace --no-fail-fast
endif

.PHONY: help run test bench fmt clippy clean-local

help: ## List the targets
	@grep -E '^[a-z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

run: ## Build and run the handler on events/sqs-batch.json with the embedded local defaults
	@cargo build --quiet --bin order-confirmation
	$(BIN) invoke events/sqs-batch.json

test: node_modules/.installed ## Run every test (starts its own PostgreSQL and local services)
	cargo build --workspace --all-targets
	scripts/with-postgres $(TEST_CMD)

# aws-ses-v2-local, the SES v2 emulator the tests start; pinned by package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

bench: ## Criterion benchmarks; see BENCHMARKS.md
	cargo bench --bench pipeline

fmt: ## Format the code
	cargo fmt --all

clippy: ## Lint the code
	cargo clippy --workspace --all-targets -- -D warnings

clean-local: ## Forget local state (.local/: SQLite ledger and outbox)
	rm -rf .local
