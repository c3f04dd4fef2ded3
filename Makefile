# Two commands for a newcomer (see README.md):
#   make run   installs and runs the orchestrator on its embedded default (SQLite, in-process tasks)
#   make test  installs and runs the whole test suite against PostgreSQL and Redis
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-dev services lint typecheck check bench-ledger bench-orders bench-load simulate clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py bootstrap_demo
	PUBLIC_BASE_URL=$${PUBLIC_BASE_URL:-http://$(HOST):$(PORT)} $(BIN)/python manage.py serve $(HOST):$(PORT)

# PostgreSQL and Redis on 127.0.0.1 (started here if installed but stopped; installed on CI).
services:
	bash .ci/services.sh

test: install-dev services
	$(BIN)/pytest -n 2 --create-db

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-dev
	$(BIN)/mypy .

.PHONY: bench-events
bench-events: install-dev services
	$(BIN)/python bench/events.py

check: lint typecheck
	$(BIN)/python manage.py makemigrations --check --dry-run

bench-ledger: install-dev services
	$(BIN)/python bench/ledger.py

bench-orders: install-dev services
	$(BIN)/python bench/orders.py

# Baseline mix, hot accounts and a spike against gunicorn + Celery + the sandboxes; then
# verify_ledger (exits non-zero unless the money is exact). Options: bench/load.py --help.
bench-load: install-dev services
	$(BIN)/python bench/load.py $(BENCH_LOAD_ARGS)

# The seeded fault simulation on PostgreSQL (a scratch database test_<NAME>_simulation):
#   make simulate SEED=7 STEPS=10000
SEED ?= 1
STEPS ?= 2000
simulate: install-dev services
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/offerhub} \
		$(BIN)/python manage.py simulate --seed $(SEED) --steps $(STEPS)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
