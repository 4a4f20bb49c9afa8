# The paper's experiments as make targets (included by the Makefile; `make help` lists them).
#
# Which experiments each target runs, and how, comes from the registry (src/bga_mner/registry.py):
# each experiment's README.md front matter says how make runs it (runs: fit | test | sizes | cross |
# params) and in which tables it has a row. `python -m bga_mner.registry_make` turns it into make
# rules (RUNS_<experiment>, ROWS_<table>, ALL_RUNS, CLAIMS_EVIDENCE), which this file writes to
# $(REGISTRY_MK) and includes; make writes it again when an experiment folder changes. A new
# experiment is its folder: config.yaml and README.md (docs/experiments.md).
#
# Each run is a file target, $(RUNS)/<run name>/results.json, so make skips finished runs: a run
# shared by several tables (BERT-CRF is Table 2's baseline, Table 3's "w/o SCS & w/o MCG" and
# Fig. 5's reference; full BGA-MNER is in Tables 2, 3, 4 and 7) trains once. Fits run with
# `--resume`: an interrupted `make all` continues each unfinished run from its last finished epoch
# (checkpoints/last.ckpt) and loses at most the epoch it was in. Tables 4 and 7 train nothing: they
# re-test the full BGA-MNER runs' best.ckpt (`bga-mner test --out`) with the test-time overrides of
# experiments/real_visual and experiments/modality_missing; each evaluation depends on its trained
# run's results.json. To redo a run, delete its folder and make the target again: the run and
# everything derived from it are recomputed (an evaluation older than its trained run is replaced,
# `--replace`). Two makes on the same RUNS do not collide: a run folder in use is refused.
#   SEEDS='42 43'     one run per seed (default: each experiment's seeds, registry.SEEDS = 42 43 44 45
#                     46 unless its README says otherwise; PROFILE=smoke: the first); the report shows
#                     mean ± std, 95% CIs and, with 2 or more seeds, significance tests (docs/statistics.md)
#   PROFILE=smoke     synthetic set, tiny models, CPU: the data set loop collapses to `synthetic`
#   RUNS=DIR          where the runs and the report go
#   DATA_DIR=DIR      where the data sets are (default: paths.data_dir of the config defaults)
#   FIG5_SIZES='50 100 200 400'  training-set sizes of the data-efficiency runs
#   GPUS='0 1 2 3'    with make -j 4: each run (fit or evaluation) takes a GPU slot of its own,
#                     CUDA_VISIBLE_DEVICES=<slot>, and waits while all are busy ('0,1 2,3': two GPUs
#                     per run); bga_mner/gpu_slots.py. GPU_SLOTS_DIR=DIR: the slots' lock folder
#   OVERRIDES='k=v'   appended to every fit and evaluation: how a run runs (trainer.devices=2, ...),
#                     not which runs exist (the run names, and so what is finished, stay the same)
# `bga-mner sweep TARGET` (SLURM job arrays, or local) reads its plan from `make -n TARGET
# SWEEP_PLAN=1`: each unfinished run's recipe line then starts `sweep-plan <its results.json>
# <the results.json it needs first, or -> `, and each job makes its run's results.json.
# Dry runs stay dry: `make -n TARGET` runs nothing for any target (a recipe line that calls
# $(MAKE) holds nothing else), so `bga-mner sweep TARGET --dry-run` works for every target.
# A run's results.json is .PRECIOUS: make, stopped by a signal (a requeued sweep job, Ctrl-C),
# never deletes the results of a run that finished as the signal came.

EXP        := experiments
FIG5_SIZES ?= 50 100 200 400
DATA_DIR   ?=
SMOKE      := $(filter smoke,$(PROFILE))
DATASETS   := $(if $(SMOKE),synthetic,twitter2015 twitter2017)
FIT_COMMON := run.profile=$(PROFILE) paths.runs_dir=$(RUNS) $(if $(DATA_DIR),paths.data_dir=$(DATA_DIR))
TEST_COMMON = $(if $(DATA_DIR),paths.data_dir=$(DATA_DIR))
REPORT      = $(BGA) report $(RUNS)

run_path = $(RUNS)/$(1)/results.json

OVERRIDES     ?=
GPU_SLOTS_DIR ?=
GPU_SLOT       = $(if $(strip $(GPUS)),$(BIN)/python -m bga_mner.gpu_slots --gpus '$(strip $(GPUS))'$(if $(GPU_SLOTS_DIR), --lock-dir $(GPU_SLOTS_DIR)) -- )
# The start of a run's recipe line: its GPU slot, or with SWEEP_PLAN its plan entry.
# $(1): the run's results.json, $(2): the results.json it needs first (- for none).
run_prefix = $(if $(SWEEP_PLAN),sweep-plan $(1) $(2) ,$(GPU_SLOT))
# The plan entry alone (runs that take no GPU slot: make claims).
plan_prefix = $(if $(SWEEP_PLAN),sweep-plan $(1) $(2) ,)

# One run. $(1): run name, $(2): experiment folder, $(3): data set, $(4): seed, $(5): more overrides.
define FIT_RULE
$(call run_path,$(1)): | $(STAMP)
	$(call run_prefix,$(call run_path,$(1)),-)$(BGA) fit --resume --config $(EXP)/$(2)/config.yaml run.name=$(1) data.name=$(3) seed=$(4) $(FIT_COMMON) $(5) $(OVERRIDES)
endef

# One evaluation of a trained run, no training. $(1): run name, $(2): experiment folder (its
# config.yaml holds the test-time overrides), $(3): the trained run's name. Redone when the trained
# run's results.json is newer (the run was redone): --replace replaces the stale evaluation.
define TEST_RULE
$(call run_path,$(1)): $(call run_path,$(3)) | $(STAMP)
	$(call run_prefix,$(call run_path,$(1)),$(call run_path,$(3)))$(BGA) test --ckpt $(RUNS)/$(3)/checkpoints/best.ckpt --config $(EXP)/$(2)/config.yaml --out $(RUNS)/$(1) --replace $(TEST_COMMON) $(OVERRIDES)
endef

# $(call fit,NAME,EXPERIMENT,DATASET,SEED,OVERRIDES): define the run's rule, return its file.
fit = $(eval $(call FIT_RULE,$(1),$(2),$(3),$(4),$(5)))$(call run_path,$(1))
# $(call seeds_of,EXPERIMENT): SEEDS, else the experiment's default seeds (the smoke profile: the first)
seeds_of = $(or $(SEEDS),$(if $(SMOKE),$(firstword $(DEFAULT_SEEDS_$(1))),$(DEFAULT_SEEDS_$(1))))
# $(call std_runs,EXPERIMENT[,NAME,OVERRIDES]): the experiment on every data set and seed.
std_runs = $(foreach d,$(DATASETS),$(foreach s,$(call seeds_of,$(1)),$(call fit,$(or $(2),$(1))-$(d)-seed$(s),$(1),$(d),$(s),$(3))))
# $(call test_runs,EXPERIMENT,SOURCE): each run of SOURCE (every data set and seed) re-tested.
test_runs = $(foreach d,$(DATASETS),$(foreach s,$(call seeds_of,$(2)),\
              $(eval $(call TEST_RULE,$(1)-$(d)-seed$(s),$(1),$(2)-$(d)-seed$(s)))$(call run_path,$(1)-$(d)-seed$(s))))

# ----------------------------------------------------------------------------------------------
# make claims (docs/claims.md): each claim of the paper's Section 4 tested on the synthetic
# benchmark (experiments/claims), on CPU, with CLAIMS_SEEDS seeds of every setting. Each run is
# $(CLAIMS_RUNS)/<setting>-seed<seed>/ (results.json, then evidence.json); finished ones are skipped,
# as everywhere. The settings are the registry's (an experiment's `claims:` name, with its overrides;
# report/claims.py reads them): BERT-CRF, BGA-MNER, the real-context control, Table 3's ablations,
# Table 4's switch (a re-test, no training), Fig. 5's sizes (CLAIMS_SIZES), and BGA-MNER at the
# alphas of CLAIMS_ALPHAS. CLAIMS_JOBS fits run at once, one thread each.
CLAIMS_RUNS   ?= $(RUNS)/claims
CLAIMS_SEEDS  ?= $(DEFAULT_SEEDS_claims)
CLAIMS_SIZES  ?= 50 100
CLAIMS_ALPHAS ?= 0.1 1
CLAIMS_JOBS   ?= 2
CLAIMS_OVERRIDES ?=   # appended to every claims fit (e.g. a shorter budget for a try-out)
CLAIMS_CONFIG := $(EXP)/claims/config.yaml
CLAIMS_LOGS   := $(CLAIMS_RUNS)/logs
# one job's output to its log; on failure the log's tail
claims_log = > $(CLAIMS_LOGS)/$(1).log 2>&1 || { tail -n 30 $(CLAIMS_LOGS)/$(1).log; exit 1; }

# $(1): setting, $(2): seed, $(3): overrides
define CLAIMS_FIT_RULE
$(CLAIMS_RUNS)/$(1)-seed$(2)/results.json: | $(STAMP)
	@mkdir -p $(CLAIMS_LOGS); echo "claims: fit $(1) seed $(2)"
	@$(call plan_prefix,$(CLAIMS_RUNS)/$(1)-seed$(2)/results.json,-)OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BGA) fit --resume --config $(CLAIMS_CONFIG) run.name=$(1)-seed$(2) seed=$(2) paths.runs_dir=$(CLAIMS_RUNS) $(3) $(CLAIMS_OVERRIDES) $(call claims_log,$(1)-seed$(2))
endef
# A re-test, no training. $(1): setting, $(2): seed, $(3): experiment (its config.yaml: the test-time
# overrides), $(4): the trained setting
define CLAIMS_TEST_RULE
$(CLAIMS_RUNS)/$(1)-seed$(2)/results.json: $(CLAIMS_RUNS)/$(4)-seed$(2)/results.json | $(STAMP)
	@mkdir -p $(CLAIMS_LOGS); echo "claims: test $(4) seed $(2) with experiments/$(3)"
	@$(call plan_prefix,$(CLAIMS_RUNS)/$(1)-seed$(2)/results.json,$(CLAIMS_RUNS)/$(4)-seed$(2)/results.json)OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BGA) test --ckpt $(CLAIMS_RUNS)/$(4)-seed$(2)/checkpoints/best.ckpt --config $(EXP)/$(3)/config.yaml --out $(CLAIMS_RUNS)/$(1)-seed$(2) --replace $(call claims_log,$(1)-seed$(2))
endef
%/evidence.json: %/results.json | $(STAMP)
	@echo "claims: evidence of $(*F)"
	@OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BGA) evidence $* $(call claims_log,$(*F)-evidence)

# $(call claims_fit,SETTING,OVERRIDES): the setting's rule for every seed; returns its evidence files
claims_fit = $(foreach s,$(CLAIMS_SEEDS),$(eval $(call CLAIMS_FIT_RULE,$(1),$(s),$(2)))$(CLAIMS_RUNS)/$(1)-seed$(s)/evidence.json)
# $(call claims_test,SETTING,EXPERIMENT,TRAINED SETTING): the re-test of every seed's trained run
claims_test = $(foreach s,$(CLAIMS_SEEDS),$(eval $(call CLAIMS_TEST_RULE,$(1),$(s),$(2),$(3)))$(CLAIMS_RUNS)/$(1)-seed$(s)/evidence.json)
# Fig. 5 sizes: n tweets, repeated to the full set's steps per epoch (data.train_limit_fill), so a
# size differs from the full set in its data only, not in its optimiser steps
CLAIMS_LIMIT := data.train_limit_fill=true data.train_limit=

# ----------------------------------------------------------------------------------------------
# The registry's rules (RUNS_<experiment>, ROWS_<table>, ALL_RUNS, CLAIMS_EVIDENCE), written from
# experiments/*/README.md by the registry itself. Not for `make help` and `make clean`, which need
# no venv.
REGISTRY_MK := $(VENV)/registry.mk
ifneq ($(filter-out help clean,$(or $(MAKECMDGOALS),help)),)
$(REGISTRY_MK): $(EXP) $(wildcard $(EXP)/*/README.md $(EXP)/*/config.yaml) src/bga_mner/registry.py src/bga_mner/registry_make.py | $(STAMP)
	@$(BIN)/python -m bga_mner.registry_make > $@.tmp && mv $@.tmp $@
include $(REGISTRY_MK)
endif
CLAIMS_EVIDENCE += $(foreach a,$(CLAIMS_ALPHAS),$(call claims_fit,$(CLAIMS_REFERENCE)_alpha$(a),model.alpha=$(a)))
.PRECIOUS: $(ALL_RUNS)

PARAMS_JSON   := $(RUNS)/params-$(PROFILE)/params.json
# Not in the paper: the counts of experiments/large (XLM-R-large + ViT-L/14). No profile: the smoke
# profile would swap its backbones for the tiny patch-32 ones.
LARGE_PARAMS_JSON := $(RUNS)/params-large/params.json

$(PARAMS_JSON): | $(STAMP)
	@mkdir -p $(@D)
	$(BGA) params --config $(EXP)/params/config.yaml run.profile=$(PROFILE) --json > $@.tmp
	@mv $@.tmp $@

$(LARGE_PARAMS_JSON): | $(STAMP)
	@mkdir -p $(@D)
	$(BGA) params --config $(EXP)/large/config.yaml --json > $@.tmp
	@mv $@.tmp $@

.PHONY: reproduce-table2 ablations data-efficiency table4 table5 table6 table7 params-large all data detect wandb-sync report

reproduce-table2: $(ROWS_2) ## Table 2: BGA-MNER and BERT-CRF on Twitter-2015/2017
	$(REPORT) --table 2

ablations: $(ROWS_3) ## Table 3: full BGA-MNER and its ablations (the experiments with a Table 3 row)
	$(REPORT) --table 3

data-efficiency: $(ROWS_fig5) ## Fig. 5: BGA-MNER and BERT-CRF trained on FIG5_SIZES tweets
	$(REPORT) --table fig5

table4: $(ROWS_4) ## Table 4: BGA-MNER re-tested with real instead of generated visual features
	$(REPORT) --table 4

table5: $(PARAMS_JSON) ## Table 5: parameter counts at train and inference time (no training)
	$(REPORT) --table 5

params-large: $(LARGE_PARAMS_JSON) ## not in the paper: parameter counts of XLM-R-large + ViT-L/14 (experiments/large)
	@cat $<

table6: $(ROWS_6) ## Table 6: cross-domain, 2017 -> 2015 and 2015 -> 2017
	$(REPORT) --table 6

table7: $(ROWS_7) ## Table 7: BGA-MNER re-tested with every test image replaced by an empty one
	$(REPORT) --table 7

all: $(ALL_RUNS) $(PARAMS_JSON) ## every experiment above, then the whole report
	$(REPORT) --table all

report: | $(STAMP) ## print and write (RUNS/report/) every table and the Fig. 5 plot from RUNS
	$(REPORT) --table all

data: | $(STAMP) ## download the Twitter-2015/2017 text (sha256-checked) into DATA_DIR
	$(BIN)/python -m bga_mner.data_fetch $(if $(DATA_DIR),--data-dir $(DATA_DIR))

detect: | $(STAMP) ## Faster R-CNN objects of DATA_DIR/<set>/images -> DATA_DIR/<set>/objects.jsonl
	@dir="$(or $(DATA_DIR),$$($(BIN)/python -c 'from bga_mner.config import load_config; print(load_config().paths.data_dir)'))"; \
	for d in twitter2015 twitter2017; do \
	  if [ -d "$$dir/$$d/images" ]; then \
	    echo "$(BGA) detect $$dir/$$d/images --out $$dir/$$d/objects.jsonl"; \
	    $(BGA) detect "$$dir/$$d/images" --out "$$dir/$$d/objects.jsonl" || exit 1; \
	  else echo "skip $$d: no folder $$dir/$$d/images (make data says where the images go)"; fi; \
	done

wandb-sync: | $(STAMP) ## upload the offline W&B runs under RUNS (after `wandb login`)
	@runs="$$(find $(RUNS) -type d -name 'offline-run-*' 2>/dev/null)"; \
	if [ -z "$$runs" ]; then echo "no offline W&B runs under $(RUNS)"; \
	else WANDB_MODE=online $(BIN)/wandb sync $$runs; fi

.PHONY: claims claims-runs
claims-runs: $(CLAIMS_EVIDENCE)
.PRECIOUS: $(CLAIMS_EVIDENCE:evidence.json=results.json)

# the sub-make's line holds nothing else: `make -n claims` runs it as a dry run too (a line with
# $(MAKE) is run under -n) and only prints the claims line
CLAIMS_START := $(shell date +%s)
claims: | $(STAMP) ## the paper's Section 4 claims on the synthetic benchmark: CPU, CLAIMS_SEEDS (5) seeds, ~1 h on 2 cores -> $(CLAIMS_RUNS)/claims.md (docs/claims.md)
	@$(MAKE) --no-print-directory -j $(CLAIMS_JOBS) claims-runs
	@$(BGA) claims $(CLAIMS_RUNS) && echo "make claims: $$(( ($$(date +%s) - $(CLAIMS_START)) / 60 )) min"
