# asyncplugin: the two commands a newcomer needs are `make demo` (the main job) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY_VERSION ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export PATH := $(CURDIR)/$(BIN):$(PATH)
export GRPC_VERBOSITY ?= ERROR

PROTO_DIR := proto
PROTO_FILES := $(sort $(wildcard $(PROTO_DIR)/asyncplugin/*/*.proto $(PROTO_DIR)/asyncplugin/*/*/*.proto))
GEN_DIR := python
BASELINE := $(PROTO_DIR)/baseline.binpb
BP2_DIR := $(GEN_DIR)/asyncplugin_betterproto
FUZZ_SECONDS ?= 60
FUZZ_DIR := .fuzz

.PHONY: help venv node browser generate check-generated lint test pytest node-test demo bench bench-smoke fuzz reliability-long baseline screenshots clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

# The virtual environment is rebuilt when pyproject.toml or constraints.txt change.
$(BIN)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PY_VERSION) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

venv: $(BIN)/.installed ## Create .venv and install the package with its dev tools.

# The Node.js side (node/): TypeScript bindings, a Node plugin; installed from the lock file.
node/node_modules/.installed: node/package.json node/package-lock.json
	cd node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

node: node/node_modules/.installed ## Install the Node.js side's dependencies (npm ci).

# The console's browser test drives Debian's chromium through Playwright (which ships its own
# driver); Playwright's own browser download is never used, so this works from package mirrors.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser: ## Install Debian's chromium for the console's browser test, if missing.
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null)

# protoc writes no __init__.py; each generated v1 package gets an empty one.
protoc = $(PY) -m grpc_tools.protoc -I$(PROTO_DIR) --python_out=$(1) --mypy_out=$(1) \
	--grpc_python_out=$(1) --mypy_grpc_out=$(1) $(PROTO_FILES) >/dev/null && \
	find $(1)/asyncplugin -type d -name v1 -exec touch {}/__init__.py \;

# Dataclass bindings with betterproto2, in their own root package (asyncplugin_betterproto).
bp2 = mkdir -p $(1) && $(PY) -m grpc_tools.protoc -I$(PROTO_DIR) --python_betterproto2_out=$(1) \
	$(PROTO_FILES) >/dev/null 2> >(grep -v '^Writing ' >&2)

generate: $(BIN)/.installed node/node_modules/.installed ## Regenerate Python and TypeScript bindings.
	find $(GEN_DIR)/asyncplugin -type d -name v1 -prune -exec rm -rf {} +
	$(call protoc,$(GEN_DIR))
	rm -rf $(BP2_DIR)
	$(call bp2,$(BP2_DIR))
	cd node && BUF=$(CURDIR)/$(BIN)/buf npm run --silent generate

check-generated: $(BIN)/.installed node/node_modules/.installed ## Fail if committed bindings are stale.
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(call protoc,$$tmp) && \
	for d in $$(cd "$$tmp" && find asyncplugin -type d -name v1); do \
		diff -r -x __pycache__ "$$tmp/$$d" "$(GEN_DIR)/$$d" || \
		{ echo "generated code in $(GEN_DIR)/$$d is stale: run 'make generate' and commit"; exit 1; }; \
	done && \
	for d in $$(cd $(GEN_DIR) && find asyncplugin -type d -name v1); do \
		test -d "$$tmp/$$d" || { echo "$(GEN_DIR)/$$d has no proto source: remove it"; exit 1; }; \
	done && echo "generated Python bindings are fresh"
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && $(call bp2,$$tmp) && \
	diff -r -x __pycache__ "$$tmp" $(BP2_DIR) && echo "betterproto2 bindings are fresh" || \
	{ echo "betterproto2 bindings in $(BP2_DIR) are stale: run 'make generate' and commit"; exit 1; }
	cd node && BUF=$(CURDIR)/$(BIN)/buf npm run --silent check-generated

lint: $(BIN)/.installed ## buf lint/format/breaking, ruff, mypy --strict.
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/buf breaking --against $(BASELINE)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy python/asyncplugin server tests

baseline: $(BIN)/.installed ## Refresh the buf breaking baseline (only when cutting a release).
	$(BIN)/buf build -o $(BASELINE)

# The Node conformance tests must run here: a missing node_modules fails instead of skipping.
pytest: $(BIN)/.installed node/node_modules/.installed browser ## Run the test suite only.
	ASYNCPLUGIN_REQUIRE_NODE=1 $(PY) -m pytest

screenshots: $(BIN)/.installed browser ## Retake the console screenshots in docs/ (browser test).
	ASYNCPLUGIN_SCREENSHOTS_DIR=docs $(PY) -m pytest -q tests/console/test_browser.py

node-test: node/node_modules/.installed ## Build the Node.js side and run its tests.
	cd node && npm test --silent

test: lint check-generated node-test bench-smoke pytest ## Bootstrap, lint, check bindings, run all tests.

demo: $(BIN)/.installed ## Run the main job: a full async conversation through the engine.
	$(BIN)/asyncplugin demo

$(BIN)/.bench-installed: $(BIN)/.installed pyproject.toml constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,bench]'
	touch $@

bench: $(BIN)/.bench-installed ## Run the benchmarks (~40 min on 2 cores): one table, plots in docs/.
	$(PY) -m bench --plots docs

# Part of `make test`, so the benchmarks cannot rot: every section at tiny sizes (under a minute).
bench-smoke: $(BIN)/.bench-installed ## A quick (<1 min) run of every benchmark, as a test.
	ASYNCPLUGIN_REQUIRE_BENCH=1 $(PY) -m pytest -q bench/test_smoke.py

$(BIN)/.fuzz-installed: $(BIN)/.installed pyproject.toml constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,fuzz]'
	touch $@

fuzz: $(BIN)/.fuzz-installed ## Fuzz the decoding entry points with atheris (FUZZ_SECONDS each).
	@for target in fuzz/fuzz_*.py; do name=$$(basename $$target .py); mkdir -p $(FUZZ_DIR)/$$name; \
	  echo "== $$name: $(FUZZ_SECONDS) s"; \
	  $(PY) $$target -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_DIR)/$$name- $(FUZZ_DIR)/$$name testdata/golden testdata/invalid \
	    2>&1 | grep -E 'DONE|stat::number_of_executed_units|Uncaught|Error|crash-'; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; done

reliability-long: $(BIN)/.installed ## Full-size reliability runs (~6 min): 5,000-task chaos, long properties.
	RELIABILITY_LONG=1 $(PY) -m pytest -q tests/reliability

clean: ## Remove the virtual environment and caches.
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache node/node_modules node/dist
