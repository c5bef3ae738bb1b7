# The project's front door. `make dev` runs the service, `make test` the suite.
# Needs only Python 3.11+ and make; everything else goes into .venv.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { command -v $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install dev test lint fmt migrate bench screenshots clean

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

install: $(STAMP)  ## create .venv and install the project with its dev tools

dev: $(STAMP)  ## run the whole service: database, migrations, API and a worker
	$(BIN)/reportsvc dev

test: $(STAMP)  ## run the test suite
	$(BIN)/pytest

lint: $(STAMP)  ## ruff (lint + format check), mypy --strict, and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(STAMP)  ## format and autofix
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate: $(STAMP)  ## apply migrations to DATABASE_URL
	$(BIN)/reportsvc migrate

bench: $(STAMP)  ## run the benchmarks (DATABASE_URL's server, or an embedded one); ARGS=--quick
	$(BIN)/python -m bench $(ARGS)

screenshots: $(STAMP)  ## remake the README's screenshots of the web page (needs chromium)
	REPORTSVC_SCREENSHOTS=docs $(BIN)/pytest -q tests/test_page.py -k reads_well

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
