# crane_lens — set-up and checks. Every target builds the virtual environment it needs.
#   make demo   install everything into .venv and run the main job on the embedded default
#   make test   install the development dependencies and run the full test suite
#   make lint   ruff (lint + format check) and mypy
# TORCH selects the torch build; the default resolves to the local CPU wheel on our machines.
# For a CUDA build: make demo TORCH="torch==2.13.0 --index-url <URL of your CUDA wheel index>"

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test lint install install-dev corpus clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, so the package's loose "torch>=2.6" is already satisfied and pulls nothing.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/crane-lens run

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
test: install-dev
	@$(BIN)/python -m pytest -n 2 --dist loadfile --durations=10 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

corpus: install-dev
	$(BIN)/python scripts/build_corpus.py

clean:
	rm -rf $(VENV) build *.egg-info
