# Every target installs what it needs into .venv from this repository's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: install test lint demo bench bench-db bench-reference bench-miners bench-hostile bench-scoring bench-round clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,chain]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) lint
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

bench: bench-db bench-reference bench-miners bench-hostile bench-scoring bench-round

clean:
	rm -rf $(VENV) .dagster_home .weather-data .pytest_cache

demo: $(STAMP)
	$(BIN)/weather-dagster demo
