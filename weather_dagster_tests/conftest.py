"""Shared fixtures: a fresh product database per test, on SQLite and on a throwaway PostgreSQL.

The PostgreSQL server is started once per test session from the installed binaries. If it cannot
start, every PostgreSQL test errors (never skips): CI must not pass without them.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest

from weather_dagster.core.retry import RetryPolicy
from weather_dagster.db.engine import Database
from weather_dagster.db.steps import StepLog
from weather_dagster.settings import Settings, load_settings
from weather_dagster_tests.support.pg_server import PostgresServer

BACKENDS = ("sqlite", "postgresql")
_passed_by_backend: collections.Counter[str] = collections.Counter()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
    except Exception:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'weather.db'}"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return load_settings(data_dir=tmp_path / "data", database_url=db_url)


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.engine  # migrate now, outside the code under test  # noqa: B018
    yield database
    database.dispose()


@pytest.fixture
def steps(database: Database, settings: Settings) -> StepLog:
    return StepLog(database.engine, RetryPolicy.from_settings(settings))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed:
        for name in BACKENDS:
            if f"[{name}" in report.nodeid or f"-{name}]" in report.nodeid or f"-{name}-" in report.nodeid:
                _passed_by_backend[name] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    counts = ", ".join(f"{name}: {_passed_by_backend[name]}" for name in BACKENDS)
    terminalreporter.write_line(f"database tests passed per backend: {counts}")


pytest_plugins = ["weather_dagster_tests.support.fixtures_reference"]
