# The two commands of the README: `make run` (main job) and `make test` (lint, the import
# contract and the tests). Both install into .venv first when needed (scripts/setup.sh is a
# no-op once done). `make test-fast` is the edit loop: the tests that train nothing.
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
# two test processes (pytest-xdist); the tests that share the smoke training stay on one of
# them (tests/conftest.py)
XDIST ?= -n 2

.PHONY: setup setup-dev run test test-fast lint
setup:
	@bash scripts/setup.sh
setup-dev:
	@bash scripts/setup.sh --dev
run: setup
	$(PY) -m pipeline $(ARGS)
lint: setup-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache --no-logo
test: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q $(XDIST) $(PYTEST_ARGS)
test-fast: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q $(XDIST) -m "not slow" $(PYTEST_ARGS)
