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

.PHONY: help install test test-slow mutation demo notebooks clean

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

MUTMUT_PIN     := $(shell grep -o '"mutmut==[^"]*"' pyproject.toml | tr -d '"')
MUTATION_JOBS  ?= 2
mutation: $(STAMP) ## mutation testing (mutmut, [tool.mutmut]) of models/, data/spans.py, metrics.py; ~1 h on 2 cores (docs/mutation.md)
	@test -x $(BIN)/mutmut || $(BIN)/python -m pip install --quiet "$(MUTMUT_PIN)"
	$(if $(MUTATION_FRESH),rm -rf mutants)
	@start=$$(date +%s); \
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS); rc=$$?; \
	echo; echo "mutmut run: exit $$rc after $$(( ($$(date +%s) - start) / 60 )) min"; \
	$(BIN)/python tools/mutation_score.py && exit $$rc

demo: $(STAMP) ## synthetic set + BGA-MNER and BERT-CRF on CPU, with a Table-2-shaped report
	$(BIN)/python -m bga_mner.demo --runs $(RUNS)/demo

notebooks: $(STAMP) ## execute notebooks/ against a BGA-MNER run (NB_RUN=..., default the demo's): $(RUNS)/notebooks/index.html and a page per notebook
	$(BIN)/python -m bga_mner.notebooks --run $(or $(NB_RUN),$(RUNS)/demo/bga-mner-seed42) --runs $(RUNS)

clean: ## remove runs, caches and the venv
	rm -rf $(VENV) $(RUNS) .cache wandb .pytest_cache .hypothesis mutants
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

-include experiments/experiments.mk
