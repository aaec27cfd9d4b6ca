"""Status moves of rounds and miner forecasts: one guarded UPDATE each, in the caller's transaction.

The guard is ``core.states.predecessors`` (no self-loops); a replay writes nothing and returns False,
an illegal move raises ``IllegalTransition``. A forecast's ``error_message`` is sanitised here, so no
caller can store a miner's raw text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from weather_dagster.core.errors import sanitize_error
from weather_dagster.core.states import MinerForecastStatus, RoundStatus, predecessors
from weather_dagster.db.schema import forecast_runs, forecast_stats, miner_responses
from weather_dagster.db.types import utcnow
from weather_dagster.work.guard import settle


def set_round_status(
    conn: sa.Connection, run_id: int, target: RoundStatus, *, now: datetime | None = None, **fields: Any
) -> bool:
    """Move a round to ``target``; True if moved, False if it already was there."""
    now = now or utcnow()
    result = conn.execute(
        sa.update(forecast_runs)
        .where(forecast_runs.c.id == run_id, forecast_runs.c.status.in_(sorted(predecessors("round", target))))
        .values(status=target.value, updated_at=now, **fields)
    )
    if result.rowcount == 1:
        return True
    current = conn.execute(sa.select(forecast_runs.c.status).where(forecast_runs.c.id == run_id)).scalar()
    return settle("round", current, target)


def response_where(run_id: int, miner_uid: int, miner_hotkey: str) -> list[sa.ColumnElement[bool]]:
    """The natural key of a miner's forecast row, for every statement that targets one."""
    r = miner_responses.c
    return [r.run_id == run_id, r.miner_uid == miner_uid, r.miner_hotkey == miner_hotkey]


def set_miner_status(
    conn: sa.Connection,
    run_id: int,
    miner_uid: int,
    miner_hotkey: str,
    target: MinerForecastStatus,
    *,
    now: datetime | None = None,
    **fields: Any,
) -> bool:
    """Move a miner's forecast and mirror it into its stats row; True if moved, False on a replay."""
    now = now or utcnow()
    if fields.get("error_message") is not None:
        fields["error_message"] = sanitize_error(str(fields["error_message"]))["message"]
    where = response_where(run_id, miner_uid, miner_hotkey)
    result = conn.execute(
        sa.update(miner_responses)
        .where(*where, miner_responses.c.status.in_(sorted(predecessors("miner_forecast", target))))
        .values(status=target.value, updated_at=now, **fields)
    )
    if result.rowcount != 1:
        current = conn.execute(sa.select(miner_responses.c.status).where(*where)).scalar()
        return settle("miner_forecast", current, target)
    conn.execute(
        sa.update(forecast_stats)
        .where(
            forecast_stats.c.run_id == run_id,
            forecast_stats.c.miner_uid == miner_uid,
            forecast_stats.c.miner_hotkey == miner_hotkey,
        )
        .values(forecast_status=target.value, updated_at=now)
    )
    return True


def forecast_row(conn: sa.Connection, run_id: int, miner_uid: int, miner_hotkey: str) -> sa.Row | None:
    """The forecast's response row (status, job id, frozen manifest), read in the caller's connection."""
    return conn.execute(sa.select(miner_responses).where(*response_where(run_id, miner_uid, miner_hotkey))).first()
