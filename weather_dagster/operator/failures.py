"""Exceptions an operator's input causes, turned into one line that says what to do.

``weather-dagster`` prints these instead of a traceback (exit status 2). Anything not recognised here
is a bug and keeps its traceback. Every message passes through the error sanitiser: a database URL an
operator typed may carry a password.
"""

from __future__ import annotations

import sqlalchemy as sa

from weather_dagster.core.errors import redact
from weather_dagster.operator.demo_env import OperatorInputError

EXAMPLE_URL = "postgresql://user@127.0.0.1:5432/weather or sqlite:////path/to/weather.db"


def _database_message(exc: sa.exc.DBAPIError | sa.exc.ArgumentError) -> str:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    if "no such table" in detail or ("does not exist" in detail and "relation" in detail):
        return (
            f"the database has no weather tables ({detail}): check WEATHER_DATABASE_URL points at the "
            "validator's database, or create them with `weather-dagster db upgrade`"
        )
    return (
        f"cannot open the database ({detail}): check WEATHER_DATABASE_URL (e.g. {EXAMPLE_URL}) "
        "and that its server is running"
    )


def operator_message(exc: BaseException) -> str | None:
    """The message for an exception caused by the operator's input, or None for a bug."""
    from dagster._core.errors import DagsterHomeNotSetError, DagsterInvariantViolationError

    if isinstance(exc, OperatorInputError):
        message = str(exc)
    elif isinstance(exc, DagsterHomeNotSetError):
        message = (
            "DAGSTER_HOME is not set: export DAGSTER_HOME=/path/to/dagster_home (a directory with a "
            "dagster.yaml; `make` targets use ./.dagster_home; the demo's is out/demo/dagster_home)"
        )
    elif isinstance(exc, DagsterInvariantViolationError) and "DAGSTER_HOME" in str(exc):
        message = f"{str(exc).splitlines()[0]}: create the directory, or point DAGSTER_HOME at an existing one"
    elif isinstance(
        exc, (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.InterfaceError, sa.exc.ArgumentError)
    ):
        message = _database_message(exc)
    elif isinstance(exc, sa.exc.NoSuchModuleError) or (
        isinstance(exc, ModuleNotFoundError) and exc.name in ("psycopg", "pg8000", "asyncpg", "MySQLdb")
    ):
        message = f"{exc}: WEATHER_DATABASE_URL names a driver this install lacks; use {EXAMPLE_URL}"
    else:
        return None
    return redact(message)
