"""``INSERT ... ON CONFLICT`` for both databases from one call site."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def insert_for(conn: sa.Connection, table: sa.Table):
    """The dialect's insert construct, which offers ``on_conflict_do_update / do_nothing``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {conn.dialect.name!r}: use SQLite or PostgreSQL")
