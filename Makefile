# Loom's one tooling entry point. `make` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# The interpreter the venv is made from: the distribution's CPython 3.11 where it has one with
# venv support (Debian's is built with profile-guided optimization and LTO, as the
# image's python:3.11-slim is; on a plain source build such as pyenv's default the profiles
# lane costs ~17-22 % more CPU per event: ADR 0041), else the first python3.11 on the PATH.
# `make venv PYTHON=/path/to/python3.11` chooses another; an existing .venv keeps its own.
DISTRO_PYTHON := /usr/bin/python3.11
PYTHON ?= $(shell $(DISTRO_PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 \
	&& echo $(DISTRO_PYTHON) || echo python3.11)
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when the lock or pyproject.toml changes (or the venv is gone).
STAMP := $(VENV)/.installed-stamp
LOCK := requirements.lock
# The lock is compiled for every platform, Python 3.11, with hashes (uv pip compile).
LOCK_ARGS := pyproject.toml requirements/build.in --extra dev --universal --python-version 3.11 \
	--generate-hashes --quiet --custom-compile-command "make lock"

.PHONY: help venv js-deps lock lock-check fmt check test test-unit test-integration test-secured test-browser chaos demo bench infra-up infra-down infra-status

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) \
	  | awk 'BEGIN { FS = ":.*## " } { printf "  make %-17s %s\n", $$1, $$2 }'

$(STAMP): $(LOCK) pyproject.toml
	@test -x $(BIN)/python || { echo "creating $(VENV) from $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing the locked dependencies ($(LOCK)) into $(VENV)"
	@PIP_DISABLE_PIP_VERSION_CHECK=1 $(BIN)/python -m pip install -q --require-hashes \
	  --no-deps -r $(LOCK)
	@PIP_DISABLE_PIP_VERSION_CHECK=1 $(BIN)/python -m pip install -q --no-deps \
	  --no-build-isolation -e . 2>&1 | { grep -v -e '^ *$$' -e 'Editable installation' || true; }
	@touch $(STAMP)

venv: $(STAMP) ## create .venv (python3.11) with exactly the locked dependencies, Loom editable
	@true

# The real Segment SDKs the gateway tests run (npm, locked in tests/clients/package-lock.json).
JS_DIR := tests/clients
JS_STAMP := $(JS_DIR)/node_modules/.installed-stamp
$(JS_STAMP): $(JS_DIR)/package-lock.json $(JS_DIR)/package.json
	@echo "installing the locked npm test clients ($(JS_DIR)/package-lock.json)"
	@cd $(JS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $(JS_STAMP)

js-deps: $(JS_STAMP) ## install the npm test clients (Segment SDKs, esbuild, playwright-core): npm ci
	@true

lock: venv ## refresh requirements.lock to the newest versions pyproject.toml allows (deliberate)
	$(BIN)/uv pip compile --upgrade $(LOCK_ARGS) -o $(LOCK)
	@echo "review 'git diff $(LOCK)', then 'make venv test'"

lock-check: venv ## fail if requirements.lock does not satisfy pyproject.toml (no upgrades)
	cp $(LOCK) $(VENV)/lock-check.txt
	$(BIN)/uv pip compile $(LOCK_ARGS) -o $(VENV)/lock-check.txt
	diff -u $(LOCK) $(VENV)/lock-check.txt && echo "$(LOCK) is consistent with pyproject.toml"

fmt: venv ## format the code and apply safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: venv ## lint, format check, mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: venv js-deps ## all tiers but the browser (own Kafka + Redis), subsets of the secured and chaos tiers
	$(BIN)/pytest tests -m "not browser and not secured_full and not chaos_full"

test-unit: venv ## unit tier only: pure, no servers, seconds
	$(BIN)/pytest tests/unit

test-integration: venv ## integration tier only (real Kafka + Redis)
	$(BIN)/pytest tests/integration

test-secured: venv ## the whole secured tier: SASL_SSL/mTLS Kafka, TLS/ACL Redis, Sentinel failover
	$(BIN)/pytest tests -m secured

test-browser: venv js-deps ## browser tier: the Segment browser SDK in headless Chromium (needs /usr/bin/chromium)
	$(BIN)/pytest tests -m browser

chaos: venv ## the whole fault-injection tier (real Kafka, Redis, workers; tests/chaos)
	$(BIN)/pytest tests/chaos

demo: venv ## run the end-to-end demo (`loom demo`; DEMO_ARGS=--keep leaves the data up)
	$(BIN)/loom demo $(DEMO_ARGS)

bench: venv ## run the benchmark (`python -m bench`)
	$(BIN)/python -m bench

infra-up: ## start the local Kafka + Redis (deploy/infra.sh up)
	deploy/infra.sh up

infra-down: ## stop the local Kafka + Redis
	deploy/infra.sh down

infra-status: ## show whether the local Kafka + Redis run
	deploy/infra.sh status
