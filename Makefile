# Every target installs what it needs into .venv from this repository's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install services test lint demo ui bench bench-db bench-reference bench-miners bench-hostile bench-scoring bench-round bench-dagster bench-api clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,chain]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# PostgreSQL, Redis and Chromium: found, installed with apt-get where this user may, or a stop with the
# one command to run (before the Python install, so a missing service costs no time).
services:
	scripts/ensure_services.sh

test: services $(STAMP) lint
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/python -m pytest

bench-db: $(STAMP)
	$(BIN)/python -m weather_dagster_tests.benchmarks.bench_db

bench-scoring: $(STAMP)
	$(BIN)/python -m weather_dagster_tests.benchmarks.bench_scoring

bench-reference: $(STAMP)
	$(BIN)/python -m weather_dagster_tests.benchmarks.bench_reference

bench-miners: $(STAMP)
	$(BIN)/python -m weather_dagster_tests.benchmarks.bench_miners

bench-hostile: $(STAMP)
	$(BIN)/python -m weather_dagster_tests.benchmarks.bench_hostile

bench-round: $(STAMP)
	$(BIN)/python -m weather_dagster_tests.benchmarks.bench_round

bench-dagster: $(STAMP)
	$(BIN)/python -m weather_dagster_tests.benchmarks.bench_dagster

bench-api: $(STAMP)
	$(BIN)/python -m weather_dagster_tests.benchmarks.bench_api

bench: bench-db bench-reference bench-miners bench-hostile bench-scoring bench-round bench-dagster bench-api

clean:
	rm -rf $(VENV) .dagster_home .weather-data .pytest_cache

DEMO_OUT ?= out/demo
UI_PORT ?= 3000

demo: $(STAMP)
	$(BIN)/weather-dagster demo --out $(DEMO_OUT) $(DEMO_ARGS)

# The Dagster UI on the finished (or running) demo's instance and database, on 127.0.0.1:$(UI_PORT).
ui: $(STAMP)
	$(BIN)/weather-dagster ui --demo $(DEMO_OUT) --port $(UI_PORT)
