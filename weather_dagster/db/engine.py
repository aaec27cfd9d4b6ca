"""Engines, the Database handle, and migrations applied by one call.

SQLite is the default (a file under the data directory) and PostgreSQL the production choice; both
go through :func:`make_engine` so their behaviour matches: SQLite gets WAL, a busy timeout, foreign
keys and ``BEGIN IMMEDIATE`` transactions (so concurrent writers queue instead of deadlocking).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

T = TypeVar("T")
SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


def normalise_url(url: str) -> str:
    """Use psycopg2 for bare PostgreSQL URLs (what dagster-postgres also needs with SQLAlchemy 2.1)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, **kwargs) -> sa.Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60}, **kwargs)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # let the "begin" hook below control transactions
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # No pool_pre_ping: it costs a round trip per transaction (a third of a step-log write). A connection
    # broken by a server restart fails one statement, SQLAlchemy then invalidates the whole pool, and
    # the step log's retry machinery re-runs that unit of work on fresh connections.
    return sa.create_engine(url, pool_recycle=3600, **kwargs)


def retry_on_disconnect(work: Callable[[], T]) -> T:
    """Run ``work`` once more when its connection was lost (a database restart), never more.

    The engines use no pre-ping (see :func:`make_engine`): the first statement on a connection broken by
    a restart fails and SQLAlchemy invalidates the pool. Code with no retry of its own around it, such
    as a sensor's reaction to a failed run (Dagster does not call it again), repeats its unit of work on
    a fresh connection; the work must be idempotent.
    """
    try:
        return work()
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return work()


def alembic_config(url: str) -> Config:
    if not (SQL_DIR / "env.py").exists():
        raise FileNotFoundError(
            f"migrations not found at {SQL_DIR}; install the project from its repository (pip install -e .)"
        )
    config = Config()
    config.set_main_option("path_separator", "os")
    config.set_main_option("script_location", str(SQL_DIR))
    config.set_main_option("version_locations", str(SQL_DIR / "versions"))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


class Database:
    """The handle passed to assets as the ``db`` resource: a lazily created, migrated engine.

    Nothing connects at import or definition-load time; the first use creates the engine and brings
    the schema to head (so a fresh SQLite default just works), once per process.
    """

    def __init__(self, url: str, *, auto_upgrade: bool = True) -> None:
        self.url = url
        self.auto_upgrade = auto_upgrade
        self._lock = threading.Lock()
        self._ready = False

    def __repr__(self) -> str:
        return f"Database({sa.engine.make_url(normalise_url(self.url)).render_as_string(hide_password=True)!r})"

    @cached_property
    def _engine(self) -> sa.Engine:
        return make_engine(self.url)

    @property
    def engine(self) -> sa.Engine:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    if self.auto_upgrade and current_revision(self._engine) != head_revision():
                        upgrade(self._engine)
                    self._ready = True
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        if "_engine" in self.__dict__:
            self._engine.dispose()
