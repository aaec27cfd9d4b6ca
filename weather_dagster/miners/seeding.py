"""Round creation, miner seeding and the due-step queries the lifecycle runs on.

Kept apart from ``lifecycle`` so the Dagster round asset can seed without pulling in the transport.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from weather_dagster.core.states import STEP_DUE_VALUES, MinerForecastStatus, RoundStatus, StepName
from weather_dagster.db.schema import forecast_runs, forecast_stats, forecast_steps, miner_responses
from weather_dagster.db.steps import StepKey, StepLog
from weather_dagster.db.types import utcnow
from weather_dagster.db.upsert import insert_for
from weather_dagster.miners.metagraph import MinerInfo, sync_miners_table
from weather_dagster.settings import Settings

MINER_STEPS = (StepName.QUERY, StepName.POLL, StepName.MANIFEST)
_M = MinerForecastStatus


def create_round(engine: sa.Engine, init_time: datetime, settings: Settings, now: datetime | None = None) -> int:
    """The round row for ``init_time`` (idempotent: an existing round is returned unchanged)."""
    now = now or utcnow()
    previous = init_time - timedelta(hours=settings.round.previous_step_offset_hours)
    with engine.begin() as conn:
        stmt = insert_for(conn, forecast_runs).values(
            gfs_init_time_utc=init_time,
            previous_step_time_utc=previous,
            run_initiation_time=now,
            status=RoundStatus.CREATED.value,
            test_mode=settings.test_mode,
            created_at=now,
            updated_at=now,
        )
        conn.execute(stmt.on_conflict_do_nothing(index_elements=["gfs_init_time_utc"]))
        return conn.execute(
            sa.select(forecast_runs.c.id).where(forecast_runs.c.gfs_init_time_utc == init_time)
        ).scalar_one()


def seed_miners(engine: sa.Engine, steps: StepLog, run_id: int, snapshot: Iterable[MinerInfo]) -> list[MinerInfo]:
    """Snapshot the miners, and give each a response row, a stats row and a pending query step.

    Idempotent. A uid already in the round under another hotkey is not given a second thread: the
    ``miners`` table takes the new hotkey (so the old thread is cancelled at its next step, its history
    kept) and the new hotkey joins from the next round.
    """
    snapshot = list(snapshot)
    sync_miners_table(engine, snapshot)
    now = utcnow()
    with engine.begin() as conn:
        init_time = conn.execute(
            sa.select(forecast_runs.c.gfs_init_time_utc).where(forecast_runs.c.id == run_id)
        ).scalar_one()
        r = miner_responses.c
        present = dict(conn.execute(sa.select(r.miner_uid, r.miner_hotkey).where(r.run_id == run_id)).all())
        snapshot = [info for info in snapshot if present.get(info.uid, info.hotkey) == info.hotkey]
        for info in snapshot:
            ident = {"run_id": run_id, "miner_uid": info.uid, "miner_hotkey": info.hotkey}
            common = {"status": _M.CREATED.value, "created_at": now, "updated_at": now}
            conn.execute(insert_for(conn, miner_responses).values(**ident, **common).on_conflict_do_nothing())
            stats = {"forecast_init_time": init_time, "forecast_status": _M.CREATED.value}
            conn.execute(
                insert_for(conn, forecast_stats)
                .values(**ident, **stats, created_at=now, updated_at=now)
                .on_conflict_do_nothing()
            )
        count = conn.execute(sa.select(sa.func.count()).select_from(miner_responses).where(r.run_id == run_id)).scalar()
        conn.execute(sa.update(forecast_runs).where(forecast_runs.c.id == run_id).values(miner_count=count))
    for info in snapshot:
        steps.ensure_pending(StepKey(run_id, info.uid, info.hotkey, StepName.QUERY), due_at=now)
    return snapshot


# -- one pass over the due steps ---------------------------------------------------------------------


def next_due_time(engine: sa.Engine, run_id: int, uids: Iterable[int] | None = None) -> datetime | None:
    """The earliest time a miner step of this round is due, or None when nothing is left to do."""
    s = forecast_steps.c
    query = sa.select(s.next_retry_time).where(
        s.run_id == run_id,
        s.step_name.in_([str(n) for n in MINER_STEPS]),
        s.status.in_(STEP_DUE_VALUES),
    )
    if uids is not None:
        query = query.where(s.miner_uid.in_(list(uids)))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        return None
    return min((r.next_retry_time or datetime.min.replace(tzinfo=UTC)) for r in rows)
