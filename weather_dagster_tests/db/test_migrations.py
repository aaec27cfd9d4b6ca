from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from weather_dagster.db.engine import Database, current_revision, downgrade, head_revision, make_engine, upgrade
from weather_dagster.db.schema import forecast_runs, forecast_steps, metadata
from weather_dagster_tests.support.helpers import make_round


def _product_tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert _product_tables(engine) == set(metadata.tables)
        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert _product_tables(engine) == set()
        upgrade(engine)
        assert _product_tables(engine) == set(metadata.tables)
        # Upgrading again is a no-op.
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migrated_schema_equals_metadata(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == []
        inspector = sa.inspect(engine)
        for table in metadata.tables.values():
            reflected = {c["name"]: c for c in inspector.get_columns(table.name)}
            for column in table.columns:
                assert reflected[column.name]["nullable"] == column.nullable, (table.name, column.name)
            uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table.name)}
            for constraint in table.constraints:
                if isinstance(constraint, sa.UniqueConstraint):
                    assert tuple(c.name for c in constraint.columns) in uniques
            checks = {c["name"] for c in inspector.get_check_constraints(table.name)}
            for constraint in table.constraints:
                if isinstance(constraint, sa.CheckConstraint):
                    assert constraint.name in checks, (table.name, constraint.name)
    finally:
        engine.dispose()


def test_no_unique_key_contains_a_nullable_column() -> None:
    for table in metadata.tables.values():
        for constraint in table.constraints:
            if isinstance(constraint, sa.UniqueConstraint | sa.PrimaryKeyConstraint):
                for column in constraint.columns:
                    assert not column.nullable, f"{table.name}.{column.name} is nullable inside {constraint.name}"
        for index in table.indexes:
            if index.unique:
                assert all(not c.nullable for c in index.columns), index.name


def test_sensor_query_indexes_exist() -> None:
    indexed = {tuple(c.name for c in ix.columns) for ix in forecast_steps.indexes}
    assert ("status", "next_retry_time") in indexed
    assert ("run_id", "miner_uid", "step_name") in indexed


def test_status_columns_are_constrained(database) -> None:
    run_id = make_round(database.engine)
    with pytest.raises(sa.exc.IntegrityError), database.engine.begin() as conn:
        conn.execute(sa.update(forecast_runs).where(forecast_runs.c.id == run_id).values(status="exploded"))
    with pytest.raises(sa.exc.IntegrityError), database.engine.begin() as conn:
        conn.execute(sa.update(forecast_runs).where(forecast_runs.c.id == run_id).values(gfs_init_time_utc=None))


def test_database_migrates_itself_on_first_use(db_url: str) -> None:
    database = Database(db_url)
    try:
        assert current_revision(database.engine) == head_revision()
        assert _product_tables(database.engine) == set(metadata.tables)
    finally:
        database.dispose()
