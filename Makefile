# Two commands for a newcomer: `make run` (the app on 127.0.0.1:7860) and `make test`.
# Each creates .venv and installs what it needs the first time (and when requirements change).
# VENV=/path/to/venv reuses an existing environment (CI's fresh-clone job does).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test lint bench clean-cache help

help:
	@echo "make run    - start the app on http://127.0.0.1:7860 (ARGS='--help' for flags)"
	@echo "make test   - run the test suite (real weights and photos from ../shared when present;"
	@echo "              otherwise it downloads and builds the weights and draws its own photos)"
	@echo "make lint   - ruff (lint and format), mypy, requirements.txt vs pyproject.toml"
	@echo "make bench  - run the benchmarks, write bench/RESULTS.md"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python scripts/install_torch.py  # PyTorch's CPU wheels where there is no GPU
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .  # the `animegan` command
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(BIN)/python app.py $(ARGS)

test: $(VENV)/.dev
	$(BIN)/python -m pytest $(ARGS)

lint: $(VENV)/.dev
	PYTHON=$(BIN)/python scripts/check

bench: $(VENV)/.dev
	$(BIN)/python -m bench $(ARGS)

clean-cache:
	rm -rf .cache/results
