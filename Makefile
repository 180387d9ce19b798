# Every target sets up what it needs: a fresh clone runs `make run` or `make test` and nothing else.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
# What `make run` needs only (requirements-local.txt): a fresh clone's first `make run` skips the test toolchain.
RUN_STAMP := $(VENV)/.installed-run
NODE_STAMP := node_modules/.installed
# jsii warns on every run that this Node is past its end of life; the CDK itself works on it. The variable must
# name the Node major version to silence that banner.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := $(shell node -p 'process.versions.node.split(".")[0]' 2>/dev/null)
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.PHONY: run test unit integration infra e2e lint format synth deploy diff destroy smoke iam-check bench clean venv node browser openapi

$(RUN_STAMP): requirements.txt requirements-jobs.txt requirements-local.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-local.txt
	# the `jobs` CLI (editable: it runs this checkout's code)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $@

# The whole toolchain: tests, lint, CDK (what `make run` needs comes first).
$(VENV_STAMP): $(RUN_STAMP) requirements-dev.txt requirements-tracing.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	scripts/install-chromium.sh

venv: $(VENV_STAMP)
node: $(NODE_STAMP)
browser: $(CHROMIUM)

## run: the whole stack locally (moto, the handlers, a gateway on :$(PORT), the SQS event source, the sweeper);
# state is kept across restarts (FRESH=1 starts empty), functions/ reloads on change: docs/local-development.md
run: $(RUN_STAMP)
	$(PY) -m local

# The suites run in parallel worker processes (pytest-xdist). A test file is one work unit, and the infrastructure
# suite's files that share one synthesized app are one (tests/conftest.py): module and session fixtures start once
# per worker; the longest files are handed out first. More workers than cores pays here because the e2e tests mostly
# wait on the local stack. TEST_WORKERS=1 runs in one worker. pytest's own exit codes stand (5: no tests ran).
TEST_WORKERS ?= 4
PARALLEL = -n $(1) --dist loadfile --no-loadscope-reorder

# Where the suites record the functions' AWS calls for the IAM coverage check (tests/iam, local/iam_calls.py).
IAM_CALLS := $(CURDIR)/.build/iam-calls

## test: lint, then every suite (unit, integration, infrastructure, e2e incl. the browser test), recording the
## functions' AWS calls; then the IAM coverage check of those calls against the synthesized roles
test: $(VENV_STAMP) $(NODE_STAMP) $(CHROMIUM) lint
	rm -rf $(IAM_CALLS)
	JOBS_IAM_RECORD_DIR=$(IAM_CALLS) $(PY) -m pytest tests -q $(call PARALLEL,$(TEST_WORKERS)) --durations=15
	JOBS_IAM_RECORD_DIR=$(IAM_CALLS) $(PY) -m pytest tests/iam -q

## iam-check: the integration and e2e suites with their AWS calls recorded, then the IAM coverage check alone
iam-check: $(VENV_STAMP) $(NODE_STAMP) $(CHROMIUM)
	rm -rf $(IAM_CALLS)
	JOBS_IAM_RECORD_DIR=$(IAM_CALLS) $(PY) -m pytest tests/integration tests/e2e -q $(call PARALLEL,$(TEST_WORKERS))
	JOBS_IAM_RECORD_DIR=$(IAM_CALLS) $(PY) -m pytest tests/iam -q

## unit / integration / infra / e2e: one suite
unit: $(VENV_STAMP)
	$(PY) -m pytest tests/unit -q $(call PARALLEL,2)
integration: $(VENV_STAMP)
	$(PY) -m pytest tests/integration -q $(call PARALLEL,$(TEST_WORKERS))
infra: $(VENV_STAMP) $(NODE_STAMP)
	$(PY) -m pytest tests/infrastructure -q $(call PARALLEL,2)
e2e: $(VENV_STAMP) $(CHROMIUM)
	$(PY) -m pytest tests/e2e -q $(call PARALLEL,$(TEST_WORKERS))

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## openapi: rewrite openapi.json from the routes (a test fails when it drifts)
openapi: $(VENV_STAMP)
	$(PY) scripts/export_openapi.py

format: $(VENV_STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## synth: write cdk.out/ (offline, no AWS credentials needed)
synth: $(VENV_STAMP) $(NODE_STAMP)
	node_modules/.bin/cdk synth --quiet

## deploy / diff: need AWS credentials
deploy: $(VENV_STAMP) $(NODE_STAMP)
	node_modules/.bin/cdk deploy --require-approval never

diff: $(VENV_STAMP) $(NODE_STAMP)
	node_modules/.bin/cdk diff

## destroy: delete the stack (asks first; FORCE=1 does not). Tables and the files bucket are retained: docs/deploy.md
destroy: $(VENV_STAMP) $(NODE_STAMP)
	node_modules/.bin/cdk destroy $(if $(FORCE),--force)

## smoke: the API contract end to end against a deployment: make smoke BASE=<url> KEY=<key> [KEY2=<another tenant's>]
smoke: $(VENV_STAMP)
	@test -n "$(BASE)" -a -n "$(KEY)" || { echo "usage: make smoke BASE=<api url> KEY=<api key> [KEY2=<second tenant's key>]"; exit 2; }
	$(PY) scripts/smoke.py --base "$(BASE)" --key "$(KEY)" $(if $(KEY2),--second-key "$(KEY2)")

## bench: every benchmark (e2e beside the Cloudflare peer, handler overhead, cost, hot keys, cold start); prints figures
bench: $(VENV_STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf cdk.out .build .pytest_cache .mypy_cache .ruff_cache
