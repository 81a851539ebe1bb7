# broadcaster — two commands on a fresh Debian/Ubuntu machine:
#   make demo   install what is missing, start the service with SQLite, Mosquitto and the simulator
#   make test   lint (ruff, mypy --strict, import contracts), the dependency floors, and
#               the test suite on SQLite, then again on PostgreSQL when one answers
#               (required in CI); the suite includes the hostile suites (tests/hostile)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test
PYTEST_ARGS ?= -n auto --maxprocesses=4

.PHONY: demo test lint floors bench install system-deps browser-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: system-deps $(STAMP)

system-deps:
	@scripts/system-deps.sh

browser-deps:
	@scripts/system-deps.sh --with-browser

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# the lowest dependency versions pyproject.toml allows, installed in a throwaway
# environment (cached by the dependency list) and smoke-tested
floors: $(STAMP)
	$(BIN)/python scripts/check_floors.py

test: install browser-deps lint floors
	@echo "== tests on SQLite =="
	BROADCASTER_TEST_DATABASE_URL=sqlite:// $(BIN)/pytest $(PYTEST_ARGS)
	@if $(BIN)/python scripts/pg_available.py "$(PG_TEST_URL)"; then \
		echo "== tests on PostgreSQL ($(PG_TEST_URL)) =="; \
		BROADCASTER_TEST_DATABASE_URL="$(PG_TEST_URL)" $(BIN)/pytest $(PYTEST_ARGS); \
	elif [ -n "$$BROADCASTER_REQUIRE_POSTGRES" ]; then \
		echo "PostgreSQL at $(PG_TEST_URL) is required (BROADCASTER_REQUIRE_POSTGRES) but does not answer"; \
		exit 1; \
	else \
		echo "NOTE: no PostgreSQL at $(PG_TEST_URL): ran the suite on SQLite only."; \
	fi

demo: install
	$(BIN)/broadcaster demo

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache benchmarks/results
