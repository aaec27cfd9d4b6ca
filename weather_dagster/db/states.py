"""Status changes of rounds and miner forecasts, checked by the one transition table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from weather_dagster.core.states import IllegalTransition, MinerForecastStatus, RoundStatus, predecessors
from weather_dagster.db.schema import forecast_runs, forecast_stats, miner_responses
from weather_dagster.db.types import utcnow


def set_round_status(
    conn: sa.Connection, run_id: int, target: RoundStatus, *, now: datetime | None = None, **fields: Any
) -> None:
    now = now or utcnow()
    allowed = sorted(predecessors("round", target))
    result = conn.execute(
        sa.update(forecast_runs)
        .where(forecast_runs.c.id == run_id, forecast_runs.c.status.in_(allowed))
        .values(status=target.value, updated_at=now, **fields)
    )
    if result.rowcount != 1:
        current = conn.execute(sa.select(forecast_runs.c.status).where(forecast_runs.c.id == run_id)).scalar()
        raise IllegalTransition("round", current or "(no round)", target)


def set_miner_status(
    conn: sa.Connection,
    run_id: int,
    miner_uid: int,
    miner_hotkey: str,
    target: MinerForecastStatus,
    *,
    now: datetime | None = None,
    **fields: Any,
) -> None:
    """Move a miner's forecast and mirror it into its stats row, in the caller's transaction."""
    now = now or utcnow()
    allowed = sorted(predecessors("miner_forecast", target))
    responses = miner_responses.c
    result = conn.execute(
        sa.update(miner_responses)
        .where(
            responses.run_id == run_id,
            responses.miner_uid == miner_uid,
            responses.miner_hotkey == miner_hotkey,
            responses.status.in_(allowed),
        )
        .values(status=target.value, updated_at=now, **fields)
    )
    if result.rowcount != 1:
        current = conn.execute(
            sa.select(responses.status).where(
                responses.run_id == run_id, responses.miner_uid == miner_uid, responses.miner_hotkey == miner_hotkey
            )
        ).scalar()
        raise IllegalTransition("miner_forecast", current or "(no response)", target)
    conn.execute(
        sa.update(forecast_stats)
        .where(
            forecast_stats.c.run_id == run_id,
            forecast_stats.c.miner_uid == miner_uid,
            forecast_stats.c.miner_hotkey == miner_hotkey,
        )
        .values(forecast_status=target.value, updated_at=now)
    )
