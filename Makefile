# bga-mner: `make help` lists the targets. Everything installs itself into .venv on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BGA    := $(BIN)/bga-mner

PROFILE ?= full
SEEDS   ?= 42
RUNS    ?= runs

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help install test test-slow demo notebooks clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: PROFILE=full|smoke (now $(PROFILE))  SEEDS='42 43 44' (now $(SEEDS))  RUNS=$(RUNS)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the suite with its pinned dependencies (idempotent)

test: $(STAMP) ## run the fast test suite (what CI runs)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP) ## run the slow tests too (real data when ../shared/data exists)
	$(BIN)/python -m pytest -q

demo: $(STAMP) ## synthetic set + BGA-MNER and BERT-CRF on CPU, with a Table-2-shaped report
	$(BIN)/python -m bga_mner.demo --runs $(RUNS)/demo

notebooks: $(STAMP) ## execute notebooks/ against a BGA-MNER run (NB_RUN=..., default the demo's) into $(RUNS)/notebooks
	$(BIN)/python -m bga_mner.notebooks --run $(or $(NB_RUN),$(RUNS)/demo/bga-mner-seed42) --runs $(RUNS)

clean: ## remove runs, caches and the venv
	rm -rf $(VENV) $(RUNS) .cache wandb .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

-include experiments/experiments.mk
