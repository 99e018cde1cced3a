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

.PHONY: help run test mail-preview chromium soak bench bench-ledger fuzz fmt clippy clean-local venv build build-OrderConfirmationFunction build-OperatorFunction lint invoke-local sam-local deploy

# Python tools (cargo-lambda + zig, SAM CLI, cfn-lint, moto), pinned in requirements-dev.txt.
VENV := .venv
VENV_BIN := $(CURDIR)/$(VENV)/bin
# cargo-lambda finds zig through the first python3 on PATH: the venv's, which has ziglang.
WITH_VENV := PATH="$(VENV_BIN):$$PATH" SAM_CLI_TELEMETRY=0
LAMBDA_TARGET := aarch64-unknown-linux-gnu
# Region for the offline template checks only (sam validate needs one); deploys use samconfig.toml.
LINT_REGION := us-east-1

help: ## List the targets
	@grep -E '^[a-z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

run: ## Build and run the handler on events/sqs-batch.json with the embedded local defaults, then on the SES events the outbox simulated
	@cargo build --quiet --bin order-confirmation
	$(BIN) invoke events/sqs-batch.json
	@for f in .local/ses-events/*.json; do [ -e "$$f" ] || continue; \
		RUST_LOG=warn $(BIN) invoke "$$f" > /dev/null && rm "$$f"; done

test: node_modules/.installed $(VENV)/.installed chromium ## Run every test (starts its own PostgreSQL and local services)
	cargo build --workspace --all-targets
	scripts/with-postgres $(TEST_CMD)

mail-preview: chromium ## Render the sample mails (five languages, five currencies, 100 items, a hostile name) and screenshot them in headless Chromium at 375 and 800 px, light and dark, into .local/preview/ (open index.html)
	MAIL_PREVIEW_DIR=$(CURDIR)/.local/preview cargo nextest run --test integration --no-capture -E 'test(/^mail_preview::/)'

# Debian's Chromium and a Japanese font for the mail screenshots (tests/mail_preview.rs); apt-get
# update only when something is to be installed.
chromium:
	@if ! command -v chromium >/dev/null || ! fc-list :lang=ja | grep -q .; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-ipafont-gothic; fi

soak: node_modules/.installed $(VENV)/.installed ## The large load-and-fault run (steady, peak, backlog, small-share; about 20 min) with the throughput and priority targets enforced; see BENCHMARKS.md
	cargo build --bin order-confirmation
	SOAK_ENFORCE_TARGETS=1 scripts/with-postgres cargo test --test integration -- --ignored --nocapture soak::large_soak

# aws-ses-v2-local, the SES v2 emulator the tests start; pinned by package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

bench: ## Benchmarks: criterion (per record, pipeline, latency floor), cold start, peak memory; see BENCHMARKS.md
	cargo bench --bench pipeline
	cargo build --release --bin order-confirmation
	scripts/measure-startup target/release/order-confirmation

bench-ledger: ## Ledger at scale: stats, status, reconcile and a batch through rds-data-local at 1,000 and 2,000,000 rows of history (a throw-away PostgreSQL; a few minutes)
	scripts/with-postgres cargo run --example ledger_scale -- 1000 2000000

# `make test` runs the same fuzz test for 5 seconds; this is the long run BENCHMARKS.md records.
FUZZ_SECONDS ?= 600
fuzz: ## Fuzz decode, the Python-literal reader and render for FUZZ_SECONDS (default 600) from fuzz/corpus/
	FUZZ_SECONDS=$(FUZZ_SECONDS) nice cargo test --test integration -- --nocapture fuzz::

fmt: ## Format the code
	cargo fmt --all

clippy: ## Lint the code
	cargo clippy --workspace --all-targets -- -D warnings

clean-local: ## Forget local state (.local/: SQLite ledger and outbox)
	rm -rf .local

venv: $(VENV)/.installed ## Install the pinned Python tools into .venv (cargo-lambda, zig, SAM CLI, cfn-lint, moto)

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV_BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

build: $(VENV)/.installed ## Build the arm64 Lambda package: target/lambda/order-confirmation/bootstrap.zip
	rustup target list --installed | grep -qx $(LAMBDA_TARGET) || rustup target add $(LAMBDA_TARGET)
	$(WITH_VENV) cargo lambda build --release --arm64 --bin order-confirmation --output-format zip

# Run by `sam build` (BuildMethod: makefile), which sets ARTIFACTS_DIR. Always arm64, like the
# template, except when LAMBDA_ARCH_FALLBACK=native is set (tests/template.rs does) and the arm64
# Rust target cannot be installed: then this local check builds x86_64 and says so in one line.
# build-OperatorFunction: the operator function runs the same binary (FUNCTION_ROLE=operator).
build-OrderConfirmationFunction build-OperatorFunction: $(VENV)/.installed
	@test -n "$${ARTIFACTS_DIR:-}" || { echo "ARTIFACTS_DIR is not set: sam build runs this target" >&2; exit 1; }
	@arch=--arm64; \
	if ! rustup target list --installed 2>/dev/null | grep -qx $(LAMBDA_TARGET) \
	  && ! timeout 300 rustup target add $(LAMBDA_TARGET) >/dev/null 2>&1; then \
	  if [ "$${LAMBDA_ARCH_FALLBACK:-}" != native ]; then \
	    echo "the $(LAMBDA_TARGET) Rust target cannot be installed (rustup target add failed)" >&2; exit 1; fi; \
	  arch=--x86-64; \
	  echo "note: $(LAMBDA_TARGET) cannot be installed here; building x86_64 instead for this local check"; \
	fi; \
	$(WITH_VENV) cargo lambda build --release $$arch --bin order-confirmation
	cp target/lambda/order-confirmation/bootstrap "$$ARTIFACTS_DIR/"

lint: $(VENV)/.installed ## Check template.yaml: cfn-lint + serverless rules, sam validate --lint, cfn-lint of the SAM translation
	$(VENV_BIN)/cfn-lint template.yaml -a cfn_lint_serverless.rules
	$(WITH_VENV) sam validate --lint --region $(LINT_REGION)
	@mkdir -p .aws-sam
	$(VENV_BIN)/python3 scripts/sam-translate template.yaml .aws-sam/translated.json
	$(VENV_BIN)/cfn-lint .aws-sam/translated.json

invoke-local: $(VENV)/.installed ## Serve the function through the Lambda runtime API (cargo lambda watch) and invoke it with EVENT (default events/sqs-batch.json)
	scripts/invoke-local $(or $(EVENT),events/sqs-batch.json)

sam-local: node_modules/.installed $(VENV)/.installed ## sam local invoke on the arm64 artifact in a private dockerd against the local stack (Linux, root; README "sam local invoke")
	cargo build --quiet -p rds-data-local
	scripts/sam-local

deploy: $(VENV)/.installed ## sam build + sam deploy with samconfig.toml (run `sam deploy --guided` once first)
	$(WITH_VENV) sam build --build-in-source
	$(WITH_VENV) sam deploy
