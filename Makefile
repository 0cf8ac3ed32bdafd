# Two commands on a fresh machine with Python 3.11+:
#   make run    install, migrate, create signing keys and demo data, run web + worker + beat
#   make test   install (with test tools and Debian's chromium) and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-test lint bench

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
	@test -x /usr/bin/chromium || bash .ci/install-chromium

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py signing_key ensure
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py ledger_checkpoint
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	HOST=$(HOST) PORT=$(PORT) bash bin/run-all

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python manage.py makemigrations --check --dry-run

bench: install-test
	$(BIN)/python -m bench $(BENCH_ARGS)
