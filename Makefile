# vqa: `make train` and `make test` are the whole set-up; each installs into .venv first when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= configs/synthetic/avg_soft.yaml
ARGS   ?=
NPROC  ?= 1
PRESET ?= small
FORMAT ?= vqa2
JOBS   ?= 2
LOGDIR ?= runs
# make paper: the models x losses x seeds grid of configs/$(DATA)/, then `vqa compare` into $(OUT);
# DATA = synthetic | vqa2 | vqa1 | vqacp2 | vizwiz | okvqa | synthetic-<vqa1|vqacp2|vizwiz|okvqa>.
# LOSSES are arms: loss names or named variants (vqa/report/runs.py ARMS; `shuffled`: soft_ce with
# data.soft_target=shuffled). Runs are named <model>_<arm>_s<seed>.
# make paper PROTOCOL=long: AVG and POOL x hard_ce, soft_ce, label_smoothing, shuffled x 5 seeds,
# 60 epochs of configs/synthetic-long/ (the overfitting regime; 1 h 16 min here with JOBS=2) into
# reports/synthetic-long/. Variables given on the command line still win (SEEDS=2 EPOCHS=3).
PROTOCOL ?=
ifeq ($(PROTOCOL),long)
DATA   ?= synthetic-long
MODELS ?= avg pool
LOSSES ?= hard_ce soft_ce label_smoothing shuffled
SEEDS  ?= 5
else ifneq ($(PROTOCOL),)
$(error PROTOCOL=$(PROTOCOL): give PROTOCOL=long, or none for the paper's 12-epoch grid)
endif
SEEDS  ?= 5
DATA   ?= synthetic
MODELS ?= avg pool mcb
LOSSES ?= hard_ce soft_ce
EPOCHS ?=
OUT    ?= reports/$(DATA)
PAPER_RUNS ?= runs/paper_$(DATA)

.PHONY: install train test test-fast mutants lint format data tensorboard bench paper clean

# The stamp is rebuilt when .venv is missing or pyproject.toml changed.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

train: install
ifeq ($(NPROC),1)
	$(BIN)/vqa train --config $(CONFIG) $(ARGS)
else
	$(BIN)/torchrun --standalone --nproc_per_node $(NPROC) -m vqa train --config $(CONFIG) $(ARGS)
endif

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# Deliberate one-line mistakes in the reported numbers, each in a temporary copy of the tree: the fast
# tests must kill every one (tests/mutants.py; NAMES="..." for some).
mutants: install
	$(BIN)/python tests/mutants.py $(NAMES)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# make data FORMAT=vizwiz: the stand-in of another dataset, where configs/synthetic-<format>/ look
data: install
	$(BIN)/vqa synth --out data/synthetic/$(PRESET)$(if $(filter-out vqa2,$(FORMAT)),-$(FORMAT)) --preset $(PRESET) --format $(FORMAT)

tensorboard: install
	$(BIN)/tensorboard --logdir $(LOGDIR)

bench: install
	$(BIN)/vqa bench --out bench

# Skips complete runs, resumes interrupted ones; ARGS (key=value ...) apply to every run.
paper: install
	$(BIN)/vqa paper --config-dir configs/$(DATA) --models "$(MODELS)" --losses "$(LOSSES)" \
		--seeds $(SEEDS) --jobs $(JOBS) --runs-dir $(PAPER_RUNS) --out $(OUT) $(if $(EPOCHS),--epochs $(EPOCHS)) -- $(ARGS)

clean:
	rm -rf runs bench reports .pytest_cache .ruff_cache
