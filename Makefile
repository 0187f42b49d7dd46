# ssl_bench: `make install` then `make test`; `make run` runs the main job (the digits comparison, offline);
# `make run-all` the digits comparison of every registered algorithm.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install test test-slow test-faults lint docs run run-all run-da leaderboard bench clean

install: $(BIN)/ssl-bench

$(BIN)/ssl-bench: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# torch and torchvision resolved together, so that `import torchvision` works
	$(BIN)/pip install -e '.[test,tensorboard,docs]'
	$(BIN)/python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(BIN)/ssl-bench

test:
	$(BIN)/python -m pytest -q

test-slow:
	$(BIN)/python -m pytest -q -m slow

# SIGKILLs at seeded random points, a full disk and concurrent writers, through the real CLI (minutes on 2 cores)
test-faults:
	$(BIN)/python tests/promises/faults/run.py

lint:
	$(BIN)/ruff check ssl_bench tests examples docs/hooks
	$(BIN)/ruff format --check ssl_bench tests examples docs/hooks
	$(BIN)/mypy

# the documentation site into site/ (mkdocs.yml); --strict: a broken link, a missing #anchor or an API reference
# warning fails the build. `$(BIN)/mkdocs serve` serves it at http://127.0.0.1:8000 while you edit.
docs:
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# the main job: the digits comparison of the algorithms below, within 25 minutes on 2 cores (docs/getting-started.md#the-main-job)
DIGITS := supervised mixmatch fixmatch flexmatch freematch softmatch
# run-all: every registered algorithm (tests/test_registry.py checks this list against `ssl-bench list algorithms`)
ALL_DIGITS := supervised pseudo_label pi_model mean_teacher mixmatch remixmatch uda fixmatch flexmatch freematch \
	softmatch dash adamatch
# two runs at a time, one thread each: 1.3-1.6x the throughput of one run on two threads on a 2-core CPU (README)
WORKERS ?= 2

run:
	$(BIN)/ssl-bench run $(foreach a,$(DIGITS),recipes/digits/$(a).toml) --workers $(WORKERS)

run-all:
	$(BIN)/ssl-bench run $(foreach a,$(ALL_DIGITS),recipes/digits/$(a).toml) --workers $(WORKERS)

DA := supervised adamatch fixmatch

run-da:
	$(BIN)/ssl-bench run $(foreach a,$(DA),recipes/da/digits_m/$(a).toml)

leaderboard:
	$(BIN)/ssl-bench leaderboard

# the figures of the README's "Speed", "Augmentation" and "Grids and many processes" sections (minutes on 2 cores;
# the step time of every algorithm against FixMatch's, at paper scale: about half an hour)
comma := ,
space := $(subst ,, )
BENCH_ALGORITHMS := fixmatch,$(subst $(space),$(comma),$(filter-out fixmatch,$(ALL_DIGITS)))
bench:
	$(BIN)/ssl-bench bench augment --json bench-augment.json
	$(BIN)/ssl-bench bench train --json bench-train-wrn.json
	$(BIN)/ssl-bench bench train --pipeline ours --algorithm $(BENCH_ALGORITHMS) --json bench-train-algorithms.json
	$(BIN)/ssl-bench bench train recipes/digits/fixmatch.toml --steps 30 \
		--set train.memory_format=auto --json bench-train-digits.json
	$(BIN)/ssl-bench bench grid recipes/smoke.toml --set 'grid.seeds=[1,2,3,4]' --json bench-grid.json

clean:
	rm -rf $(VENV) .pytest_cache build site *.egg-info
