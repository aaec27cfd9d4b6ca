"""The SQL of a step write: the guarded step upsert/update and the stats row it refreshes.

Statements are built once per shape (``lru_cache``): rebuilding ``ON CONFLICT`` statements per call
cost more than the SQL. On PostgreSQL a miner step's write and its stats update go in one round trip
as data-modifying CTEs; elsewhere as two statements in the same transaction.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from weather_dagster.core.states import StepStatus
from weather_dagster.db.schema import forecast_runs, forecast_stats, forecast_steps
from weather_dagster.work.keys import StepKey

MAX_CONTEXT_BYTES = 16 * 1024


def bounded_context(context: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if context is None:
        return None
    text = json.dumps(context, default=str, sort_keys=True)
    if len(text.encode()) > MAX_CONTEXT_BYTES:
        return {"truncated": True, "keys": sorted(context)[:50]}
    return json.loads(text)


_KEY_COLUMNS = ("run_id", "miner_uid", "miner_hotkey", "step_name", "substep", "lead_hours")
_STATS_KEY = ("run_id", "miner_uid", "miner_hotkey")


@functools.lru_cache(maxsize=128)
def _step_upsert(dialect: str, columns: tuple[str, ...], allowed_from: tuple[str, ...]) -> sa.Executable:
    """Built once per shape: rebuilding ``ON CONFLICT`` statements per call cost more than the SQL."""
    table = forecast_steps
    stmt = (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)).values(
        {name: sa.bindparam(f"v_{name}") for name in columns}
    )
    return stmt.on_conflict_do_update(
        index_elements=list(_KEY_COLUMNS),
        set_={name: stmt.excluded[name] for name in columns if name not in _KEY_COLUMNS and name != "created_at"},
        where=table.c.status.in_(allowed_from),
    ).returning(table.c.id, table.c.retry_count)


@functools.lru_cache(maxsize=128)
def _step_update(columns: tuple[str, ...], allowed_from: tuple[str, ...]) -> sa.Executable:
    table = forecast_steps
    return (
        sa.update(table)
        .where(*(table.c[k] == sa.bindparam(f"key_{k}") for k in _KEY_COLUMNS), table.c.status.in_(allowed_from))
        .values({name: sa.bindparam(f"v_{name}") for name in columns if name not in _KEY_COLUMNS})
        .returning(table.c.id, table.c.retry_count)
    )


@functools.lru_cache(maxsize=32)
def _stats_update(columns: tuple[str, ...]) -> sa.Executable:
    table = forecast_stats
    return (
        sa.update(table)
        .where(*(table.c[k] == sa.bindparam(f"key_{k}") for k in _STATS_KEY))
        .values({name: sa.bindparam(name) for name in columns})
    )


@functools.lru_cache(maxsize=32)
def _stats_insert(dialect: str, columns: tuple[str, ...]) -> sa.Executable:
    table = forecast_stats
    init_time = (
        sa.select(forecast_runs.c.gfs_init_time_utc)
        .where(forecast_runs.c.id == sa.bindparam("run_id"))
        .scalar_subquery()
    )
    stmt = (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)).values(
        {**{name: sa.bindparam(name) for name in columns}, "forecast_init_time": init_time}
    )
    return stmt.on_conflict_do_nothing()


def stats_values(
    key: StepKey, status: StepStatus, now: datetime, next_retry: datetime | None, last_error: str | None
) -> dict[str, Any]:
    """What a step transition tells the miner's stats row (SPEC ``weather_forecast_stats``)."""
    values: dict[str, Any] = {
        "current_forecast_stage": key.stage,
        "current_forecast_status": status.value,
        "next_scheduled_retry": next_retry,
        "updated_at": now,
    }
    if last_error is not None:
        values["last_error_message"] = last_error
    return values


def step_statement(
    dialect: str, key: StepKey, values: dict[str, Any], allowed_from: tuple[str, ...]
) -> tuple[sa.Executable, dict[str, Any]]:
    """The guarded step write: an upsert when a missing row may count as pending, else an update."""
    # Parameters are prefixed: an UPDATE compiled beside them treats any parameter named like one of its
    # columns as a SET value, which would corrupt the combined PostgreSQL statement.
    if StepStatus.PENDING.value in allowed_from:
        values = {**values, "created_at": values["updated_at"]}
        return _step_upsert(dialect, tuple(values), allowed_from), {f"v_{k}": v for k, v in values.items()}
    params = {**{f"v_{k}": v for k, v in values.items()}, **{f"key_{k}": v for k, v in key.as_values().items()}}
    return _step_update(tuple(values), allowed_from), params


def _stats_params(key: StepKey, values: dict[str, Any]) -> dict[str, Any]:
    return {
        **values,
        "key_run_id": key.run_id,
        "key_miner_uid": key.miner_uid,
        "key_miner_hotkey": key.miner_hotkey,
    }


def refresh_stats(conn: sa.Connection, key: StepKey, values: dict[str, Any], now: datetime) -> None:
    """Update the miner's stats row; the round seeds it, so insert only when it is missing."""
    params = _stats_params(key, values)
    if conn.execute(_stats_update(tuple(values)), params).rowcount:
        return
    row = {
        "run_id": key.run_id,
        "miner_uid": key.miner_uid,
        "miner_hotkey": key.miner_hotkey,
        "forecast_status": "created",
        "created_at": now,
        "updated_at": now,
    }
    conn.execute(_stats_insert(conn.dialect.name, tuple(row)), row)
    conn.execute(_stats_update(tuple(values)), params)


def combined_statement(
    key: StepKey,
    step_values: dict[str, Any],
    stats_values: dict[str, Any],
    allowed_from: tuple[str, ...],
    max_attempts: int,
) -> tuple[sa.Executable, dict[str, Any]]:
    stmt, params = step_statement("postgresql", key, step_values, allowed_from)
    stats_params = {f"s_{k}": v for k, v in _stats_params(key, stats_values).items()}
    combined = _combined(stmt, tuple(stats_values))
    return combined, {**params, **stats_params, "s_max_attempts": max_attempts}


@functools.lru_cache(maxsize=128)
def _combined(step_stmt: sa.Executable, stats_columns: tuple[str, ...]) -> sa.Executable:
    step = step_stmt.cte("step")
    table = forecast_stats
    stats = (
        sa.update(table)
        .where(
            *(table.c[k] == sa.bindparam(f"s_key_{k}") for k in _STATS_KEY),
            sa.exists(sa.select(step.c.id)),
        )
        .values(
            {
                **{name: sa.bindparam(f"s_{name}") for name in stats_columns},
                "retries_remaining": sa.func.greatest(
                    0,
                    sa.bindparam("s_max_attempts", type_=sa.Integer) - sa.select(step.c.retry_count).scalar_subquery(),
                ),
            }
        )
        .returning(table.c.id)
        .cte("stats")
    )
    return sa.select(
        sa.select(step.c.id).scalar_subquery().label("step_id"),
        sa.select(sa.func.count()).select_from(stats).scalar_subquery().label("stats_rows"),
    )
