# Loom's one tooling entry point. `make` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when pyproject.toml changes (or the venv is gone).
STAMP := $(VENV)/.installed-stamp

.PHONY: help venv fmt check test test-unit test-integration demo bench infra-up infra-down infra-status

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) \
	  | awk 'BEGIN { FS = ":.*## " } { printf "  make %-17s %s\n", $$1, $$2 }'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv (python3.11) and install Loom with dev tools
	@true

fmt: venv ## format the code and apply safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: venv ## lint, format check, mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: venv ## all tiers: unit, pipeline, integration, e2e (fixtures start and stop Kafka + Redis)
	$(BIN)/pytest tests

test-unit: venv ## unit tier only: pure, no servers, seconds
	$(BIN)/pytest tests/unit

test-integration: venv ## integration tier only (real Kafka + Redis)
	$(BIN)/pytest tests/integration

demo: venv ## run the end-to-end demo (`loom demo`)
	$(BIN)/loom demo

bench: venv ## run the benchmark (`python -m bench`)
	$(BIN)/python -m bench

infra-up: ## start the local Kafka + Redis (deploy/infra.sh up)
	deploy/infra.sh up

infra-down: ## stop the local Kafka + Redis
	deploy/infra.sh down

infra-status: ## show whether the local Kafka + Redis run
	deploy/infra.sh status
