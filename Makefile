# Two commands on a fresh machine with Python 3.11+:
#   make run    install, migrate, create signing keys and demo data, run web + worker + beat
#   make test   install (test tools; Debian's chromium, postgresql, redis-server) and run every test:
#               the suite on PostgreSQL and Redis (private ones are started when DATABASE_URL and
#               REDIS_URL are unset), then the engine-specific tests again on the embedded SQLite
#   make test-fast  the unit pass alone: no integration, browser or fuzzing tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast install install-test lint bench

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
	@bash .ci/install-debian-packages

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py signing_key ensure
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py ledger_checkpoint
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	HOST=$(HOST) PORT=$(PORT) bash bin/run-all

# Tests whose code paths differ on SQLite (ledger append and triggers, graph and page queries,
# concurrent writers): they run a second time on the embedded default engine.
SQLITE_TESTS := tests/audit tests/lineage/test_services.py tests/pages tests/integration/test_ledger_concurrency.py \
	tests/witness/test_log_side.py
FAST := not integration and not browser

# Three passes: the unit tests on both cores, the tests that start real processes one at a time
# (they measure and kill workers), then the SQLite pass. tests/servers.py starts a private
# PostgreSQL and Redis for the run when DATABASE_URL and REDIS_URL are unset.
test: install-test
	$(BIN)/python -m pytest -n 2 -m "$(FAST)" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m "not ($(FAST))" $(PYTEST_ARGS)
	DATABASE_URL=sqlite:///var/test-sqlite.sqlite3 $(BIN)/python -m pytest -n 2 $(SQLITE_TESTS) $(PYTEST_ARGS)

test-fast: install-test
	$(BIN)/python -m pytest -n 2 -m "$(FAST) and not fuzz" $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python manage.py makemigrations --check --dry-run

bench: install-test
	$(BIN)/python -m bench $(BENCH_ARGS)
