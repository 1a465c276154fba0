# Python 3.13 for the venv: the .python-version file makes pyenv's shim pick it;
# override with `make PYTHON=/path/to/python3.13 ...`.
PYTHON ?= $(shell command -v python3.13 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(STAMP_TEST): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)
	$(BIN)/python run.py

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff for style and bugs, vulture for dead code (its settings: [tool.vulture] in pyproject.toml).
lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/vulture

# No BENCH: every bench, then one summary table (bench/summary.py); BENCH="chat --quick": one bench.
bench: $(STAMP_TEST)
	$(BIN)/python -m bench $(or $(BENCH),all)

clean:
	rm -rf $(VENV) var .pytest_cache
