# The two commands of the README: `make run` (main job) and `make test` (lint + tests).
# Both install into .venv first when needed (scripts/setup.sh is a no-op once done).
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: setup setup-dev run test lint
setup:
	@bash scripts/setup.sh
setup-dev:
	@bash scripts/setup.sh --dev
run: setup
	$(PY) -m pipeline $(ARGS)
lint: setup-dev
	$(VENV)/bin/ruff check .
test: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q $(PYTEST_ARGS)
