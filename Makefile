# The README's first two commands: `make demo` and `make test`.
# Two stamps: `make demo` installs only what the package needs (pip install -e .);
# `make test` and `make bench` add the dev extras (pytest, nbclient, Playwright, statsmodels, OpenTelemetry).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-postgres bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $(STAMP)

$(DEV_STAMP): pyproject.toml $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

install: $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/workbench demo

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q

# The tests that run on PostgreSQL (each module's [postgres] runs and tests/test_postgres.py), on the
# server in WORKBENCH_TEST_POSTGRES or a throw-away cluster the fixture starts with the machine's
# pg_ctl (apt-get install postgresql); fails instead of skipping when neither is there.
test-postgres: $(DEV_STAMP)
	WORKBENCH_REQUIRE_POSTGRES=1 $(BIN)/python -m pytest -q -k postgres

bench: $(DEV_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) reports test-artifacts workbench.db workbench.db-wal workbench.db-shm
