"""Small builders shared by tests (rows a round would have created)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from weather_dagster.core.states import MinerForecastStatus, RoundStatus
from weather_dagster.db.schema import forecast_runs, forecast_stats, miner_responses

INIT = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


def make_round(engine: sa.Engine, init: datetime = INIT, status: RoundStatus = RoundStatus.CREATED) -> int:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        return conn.execute(
            sa.insert(forecast_runs)
            .values(
                gfs_init_time_utc=init,
                previous_step_time_utc=init - timedelta(hours=6),
                run_initiation_time=now,
                status=status.value,
                created_at=now,
                updated_at=now,
            )
            .returning(forecast_runs.c.id)
        ).scalar_one()


def make_response(engine: sa.Engine, run_id: int, uid: int, hotkey: str) -> int:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(forecast_stats).values(
                run_id=run_id,
                miner_uid=uid,
                miner_hotkey=hotkey,
                forecast_init_time=INIT,
                forecast_status=MinerForecastStatus.CREATED.value,
                created_at=now,
                updated_at=now,
            )
        )
        return conn.execute(
            sa.insert(miner_responses)
            .values(
                run_id=run_id,
                miner_uid=uid,
                miner_hotkey=hotkey,
                status=MinerForecastStatus.CREATED.value,
                created_at=now,
                updated_at=now,
            )
            .returning(miner_responses.c.id)
        ).scalar_one()


def table_rows(engine: sa.Engine, table: sa.Table) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]
