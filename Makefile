# VaultPay: `make run` starts the local cloud and the API; `make test` runs every check and test; `make check`
# is the edit loop's fast tier (ruff, mypy, the unit tests).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := install
.PHONY: help install run test check lint code-lint fmt unit component e2e build built validate clean bench soak demo deploy
.PHONY: localstack-deploy

# The ops console's browser test drives Debian's chromium (never a browser downloaded by playwright).
CHROMIUM := /usr/bin/chromium
# The ops console's browser libraries (pinned by its package-lock.json), served by the edge: no CDN.
CONSOLE := infra/ops_console
CONSOLE_STAMP := $(CONSOLE)/node_modules/.installed

install: $(STAMP) $(CONSOLE_STAMP) ## The default goal: .venv and the ops console's libraries, from the pins

# Every public target is a line `target: prerequisites ## what it does`; `make help` prints those lines.
help: ## List the public targets with what each does
	@awk -F':[^#]*## ' '/^[a-z0-9][a-z0-9-]*:[^=]*## /{printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The venv is (re)built when the pins change; nothing has to be installed by hand first. The local cloud is a
# package of its own (infra/localcloud), installed editable beside the product.
$(STAMP): pyproject.toml infra/localcloud/pyproject.toml requirements/dev.lock
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || { \
		echo "python3 -m venv failed: installing Debian's python3-venv" >&2; rm -rf $(VENV); \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3-venv && $(PY) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/dev.lock uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c requirements/dev.lock -e infra/localcloud -e '.[dev]'
	@touch $(STAMP)

$(CONSOLE_STAMP): $(CONSOLE)/package.json $(CONSOLE)/package-lock.json
	cd $(CONSOLE) && npm ci --no-audit --no-fund --loglevel=error
	@touch $(CONSOLE_STAMP)

# RUN_ARGS passes options to `vaultpay local up` (`make run RUN_ARGS=--fresh` deletes the saved state first;
# RUN_ARGS=--watch reloads a function when its code or a layer changes).
run: install built ## Start the local cloud and the API on http://127.0.0.1:3000 (RUN_ARGS=--fresh starts empty)
	$(BIN)/vaultpay local up $(RUN_ARGS)

lint: code-lint validate ## The gate's static half: code-lint, then validate

# The template half of `make lint`, ~30 s (the code half is code-lint).
validate: install ## The template half of lint: cfn-lint (both templates) and sam validate --lint
	$(BIN)/cfn-lint template.yaml infra/nats/cluster.yaml
	$(BIN)/sam validate --lint --region us-east-1

# The code half of `make lint`: ruff, mypy and the import contracts ([tool.importlinter] in pyproject.toml).
# mypy checks the core layer, every function (each app.py by its path: pyproject.toml's [tool.mypy]), the
# local cloud, the CLI, the OpenAPI builder, the deploy preflight and the LocalStack wiring, in one run
# (.pre-commit-config.yaml runs the same list; tests/unit/test_ci_files.py keeps them equal).
MYPY_PATHS := layers/core/vaultpay functions infra/localcloud/src/localcloud infra/vaultpay_cli infra/openapi infra/deploy infra/localstack
code-lint: install ## The code half of lint: ruff check and format, mypy, import-linter contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_PATHS)
	$(BIN)/lint-imports --no-cache

# The edit loop's fast tier, under a minute on 2 cores: ruff, mypy and the unit tests on every core
# (pytest-xdist). No template validation, no emulator: `make test` runs everything.
check: code-lint ## The edit loop's fast tier: code-lint, then the unit tests on every core
	$(BIN)/pytest -m unit -q -n auto

fmt: install ## Format the code and apply ruff's safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

build: install ## sam build (cached, parallel) into .aws-sam/build
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/sam build --cached --parallel

# LocalStack instead of the local cloud, for Docker users (README.md, "Using LocalStack instead"): the NATS
# node's users, LocalStack and NATS up and healthy (docker-compose.yml), sam build, samlocal deploy with
# samconfig.toml's local settings, then each role's NATS login into its secret and the JetStream streams.
localstack-deploy: build ## Deploy the stack into LocalStack beside a NATS node (Docker, LOCALSTACK_AUTH_TOKEN)
	$(BIN)/python infra/localstack/prepare.py nats-config
	docker compose up --detach --wait
	DISABLE_DEPRECATION_NOTICE=1 $(BIN)/samlocal deploy --config-env local
	$(BIN)/python infra/localstack/prepare.py wire

# The one way to deploy (docs/deployment.md). The preflight reads samconfig.toml's [STAGE] and the template and
# refuses, naming each, what CloudFormation would refuse after the build and upload: an unknown stage, a
# required parameter left unset, a placeholder, a value a template Rule refuses, a region outside India. Then
# the stage's own build and deploy settings; on prod, sam deploy shows the change set and asks first.
deploy: install ## Preflight, sam build and sam deploy of STAGE=dev|prod (docs/deployment.md)
	$(BIN)/python infra/deploy/preflight.py --stage "$(STAGE)"
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/sam build --config-env "$(STAGE)"
	$(BIN)/sam deploy --config-env "$(STAGE)"

# The local cloud runs what sam build builds (infra/localcloud/README.md), so `run` and `test` build first when
# template.yaml, functions/ or layers/ changed since the last build (a content hash; the check alone takes
# about 0.5 s), and install the deps layer's pins for this machine when they changed.
built: install ## sam build (cached, parallel) and this machine's deps, only when the sources changed
	$(BIN)/python -m localcloud.build

# The OpenAPI document (infra/openapi/openapi.json) is generated from the handlers and committed: rebuild it
# after changing a route (a test fails while it is stale).
.PHONY: openapi
openapi: install ## Regenerate infra/openapi/openapi.json from the handlers
	$(BIN)/python -m infra.openapi.build

unit: install ## The unit tests
	$(BIN)/pytest -m unit -q

component: install ## The component tests
	$(BIN)/pytest -m component -q

e2e: install ## The end-to-end tests
	$(BIN)/pytest -m e2e -q

# Two runs, one partition of the tests: everything but the unit tests (component and end-to-end, which share
# one local cloud per session, so one process), then the unit tests spread over every core (no I/O).
test: lint browser built ## Everything: lint, then the component and e2e tests, then the unit tests
	$(BIN)/pytest -q -m "not unit" --durations=20
	$(BIN)/pytest -q -m unit -n auto

.PHONY: browser
browser: ## Install Debian's chromium for the ops console's browser test when missing
	@test -x $(CHROMIUM) || { \
		echo "$(CHROMIUM) is missing: installing Debian's chromium" >&2; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# A guided tour against a running `make run` (another terminal); DEMO_ARGS passes options (--api, --edge...).
demo: install ## The guided tour against a running make run (DEMO_ARGS passes options)
	$(BIN)/vaultpay demo $(DEMO_ARGS)

# Long measurements stay out of `make test`; each writes its figures to a file under bench/.
# The bank test at scale (tests/support/bank_run.py): hundreds of concurrent transfers under faults.
soak: install ## The bank test at scale; figures in bench/bank-results.md and .json
	VAULTPAY_BANK_SCALE=soak VAULTPAY_BANK_REPORT=bench/bank-results.md \
		$(BIN)/pytest -q -s --timeout=3600 tests/e2e/test_bank.py

# bench/results.py ends the run: it gathers the figures into bench/RESULTS.md (and the headline ones, with the
# last soak's, into bench/results.json) and fails if a results file it
# needs was not written by this run (BENCH_STARTED: when make read this file, i.e. when `make bench` began).
bench: BENCH_STARTED := $(shell date +%s)
bench: install ## Every benchmark (about 21 min on 2 cores); figures gathered in bench/RESULTS.md
	$(BIN)/python bench/localcloud_bench.py --out bench/localcloud-results.md
	$(BIN)/python bench/identity_bench.py --out bench/identity-results.md
	$(BIN)/python bench/audit_bench.py --out bench/audit-results.md
	$(BIN)/python bench/audit_lag_bench.py
	$(BIN)/python bench/audit_shard_bench.py
	$(BIN)/python bench/relay_bench.py
	$(BIN)/python bench/ledger_bench.py --out bench/ledger-results.md
	$(BIN)/python bench/saga_bench.py --out bench/saga-results.md
	$(BIN)/python bench/api_latency_bench.py --out bench/api-latency-results.md
	$(BIN)/python bench/coldstart_bench.py --out bench/coldstart-results.md
	$(BIN)/python bench/schemathesis_run.py --out bench/schemathesis-results.md
	$(BIN)/python bench/restart_bench.py --out bench/restart-results.md
	$(BIN)/python bench/token_signing_bench.py --out bench/token-signing-results.md
	$(BIN)/python bench/session_check_bench.py --out bench/session-check-results.md
	$(BIN)/python bench/results.py --since $(BENCH_STARTED) --strict

clean: ## Delete build and tool caches (.aws-sam, .pytest_cache, .mypy_cache, .ruff_cache)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
