# bga-mner: `make help` lists the targets. Everything installs itself into .venv on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BGA    := $(BIN)/bga-mner

PROFILE ?= full
# empty: each experiment's default seeds (the registry's: 5 for the paper targets, as the report's
# tests need at least 2 per side); the smoke profile runs the first only, which supports no
# comparison, and its report says so
SEEDS   ?=
RUNS    ?= runs
GPUS    ?=

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help install test test-slow mutation demo gpu-check gpu-wheels notebooks rehearsal clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_.-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: PROFILE=full|smoke (now $(PROFILE))  SEEDS (now '$(SEEDS)'; default each experiment's: 5 seeds, 1 with PROFILE=smoke)  RUNS=$(RUNS)"
	@echo "  GPUS='0 1 2 3' with make -j 4: one run per GPU (now '$(GPUS)'); bga-mner sweep TARGET: SLURM job arrays (docs/experiments.md)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,onnx]"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the suite with its pinned dependencies (idempotent)

test: $(STAMP) ## check the layer rules (lint-imports: docs/ARCHITECTURE.md), then run the fast test suite (what CI runs)
	$(BIN)/lint-imports --no-logo --cache-dir .cache/import-linter
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP) ## run the slow tests too (real data when ../shared/data exists)
	$(BIN)/python -m pytest -q

MUTMUT_PIN     := $(shell grep -o '"mutmut==[^"]*"' pyproject.toml | tr -d '"')
MUTATION_JOBS  ?= 2
mutation: $(STAMP) ## mutation testing (mutmut, [tool.mutmut]) of models/, data/spans.py, metrics.py; ~1 h on 2 cores (docs/mutation.md)
	@test -x $(BIN)/mutmut || $(BIN)/python -m pip install --quiet "$(MUTMUT_PIN)"
	$(if $(MUTATION_FRESH),rm -rf mutants)
	@start=$$(date +%s); names=mutants/sample.txt; \
	if [ -n "$(MUTATION_SAMPLE)" ]; then \
	  $(BIN)/python tools/mutation_score.py --sample $(MUTATION_SAMPLE) --seed $(or $(MUTATION_SEED),0) > $$names || exit 1; fi; \
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut run --max-children $(MUTATION_JOBS) \
	  $(if $(MUTATION_SAMPLE),$$(cat $$names),$(MUTANTS)); rc=$$?; \
	echo; echo "mutmut run: exit $$rc after $$(( ($$(date +%s) - start) / 60 )) min"; \
	$(BIN)/python tools/mutation_score.py $(if $(MUTATION_SAMPLE),--names $$names) && exit $$rc

DEMO_SEEDS ?=   # default: experiments/demo's seeds (its README.md: 42 43 44)
demo: $(STAMP) ## BGA-MNER and BERT-CRF on the synthetic benchmark, DEMO_SEEDS (3) seeds, 2 at a time: F1 with CIs and verdict, slices, Fig. 3/4 numbers (<= 10 min on 2 cores)
	$(BIN)/python -m bga_mner.demo --runs $(RUNS)/demo$(if $(strip $(DEMO_SEEDS)), --seeds $(DEMO_SEEDS))

GPU_CHECK_OUT ?= $(RUNS)/gpu-check/gpu_check.json
gpu-check: $(STAMP) ## one GPU, <= 8 min, nothing downloaded: samples/s (paper widths; eager/compiled, fp32/bf16), memory, a MiniLM fit -> $(GPU_CHECK_OUT) (docs/gpu.md)
	$(BIN)/python tools/gpu_check.py --out $(GPU_CHECK_OUT)

# what a GPU machine with only torch, lightning, transformers, timm and torchmetrics lacks
GPU_WHEELS := $(shell grep -o -E '"(pytorch-crf|omegaconf)==[^"]*"' pyproject.toml | tr -d '"')
gpu-wheels: $(STAMP) ## into .whl/: wheels of $(GPU_WHEELS) (Python 3.12) and a float16 MiniLM, for such a GPU machine (docs/gpu.md)
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)
	$(BIN)/python tools/gpu_check.py --export-minilm .whl/minilm
	@du -sh .whl

notebooks: $(STAMP) ## execute notebooks/ against a BGA-MNER run (NB_RUN=..., default the demo's): $(RUNS)/notebooks/index.html and a page per notebook
	$(BIN)/python -m bga_mner.notebooks --run $(or $(NB_RUN),$(RUNS)/demo/bga-seed42) --runs $(RUNS)

# make rehearsal (README, "Before booking GPU time"): the GPU user's flow without the GPU. It builds a
# folder shaped like the HVPNeT/MKGformer release from the real text in REHEARSAL_TEXT (the real IMGIDs,
# synthetic images and crops: tools/rehearsal.py; nothing is written there), then runs what the GPU
# user runs on their unpacked download: `bga-mner stats` (the label version) and
# `make reproduce-table2 DATA_DIR=<folder>`, with PROFILE=rehearsal (tiny models, two short epochs, CPU)
# through to the printed Table 2, and the counts of every run. Always from scratch: REHEARSAL_DIR is
# removed first. REHEARSAL_TWEETS=N: the first N tweets of each split (default all);
# REHEARSAL_OVERRIDES: appended to every fit (e.g. data.object_source=grounding); REHEARSAL_JOBS
# runs at once (make -j), REHEARSAL_THREADS torch threads each (2 x 1 fills a 2-core machine).
REHEARSAL_TEXT      ?= ../shared/data
REHEARSAL_DIR       ?= $(RUNS)/rehearsal
REHEARSAL_DATASETS  ?= twitter2015 twitter2017
REHEARSAL_TWEETS    ?=
REHEARSAL_OVERRIDES ?=
REHEARSAL_JOBS      ?= 2
REHEARSAL_THREADS   ?= 1
rehearsal: $(STAMP) ## the GPU flow on CPU (<= 15 min): a release-shaped folder from the real text with synthetic images, stats, reproduce-table2 with tiny models -> Table 2 and the counts
	rm -rf $(REHEARSAL_DIR) && mkdir -p $(REHEARSAL_DIR) && date +%s > $(REHEARSAL_DIR)/started
	$(BIN)/python tools/rehearsal.py build --text $(REHEARSAL_TEXT) --out $(REHEARSAL_DIR)/data \
	  --datasets $(REHEARSAL_DATASETS) $(if $(REHEARSAL_TWEETS),--tweets $(REHEARSAL_TWEETS))
	for d in $(REHEARSAL_DATASETS); do $(BGA) stats $(REHEARSAL_DIR)/data/$$d || exit 1; done
	OMP_NUM_THREADS=$(REHEARSAL_THREADS) MKL_NUM_THREADS=$(REHEARSAL_THREADS) \
	  $(MAKE) --no-print-directory -j $(REHEARSAL_JOBS) reproduce-table2 PROFILE=rehearsal SEEDS=42 DATASETS='$(REHEARSAL_DATASETS)' \
	  RUNS=$(REHEARSAL_DIR)/runs DATA_DIR=$(REHEARSAL_DIR)/data \
	  OVERRIDES='paths.cache_dir=$(REHEARSAL_DIR)/cache $(REHEARSAL_OVERRIDES)'
	$(BIN)/python tools/rehearsal.py summary --data $(REHEARSAL_DIR)/data --runs $(REHEARSAL_DIR)/runs \
	  --cache $(REHEARSAL_DIR)/cache --started $(REHEARSAL_DIR)/started

clean: ## remove runs, caches and the venv
	rm -rf $(VENV) $(RUNS) .cache wandb .pytest_cache .hypothesis mutants
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

-include experiments/experiments.mk
