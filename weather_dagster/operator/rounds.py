"""Finding what an operator names: a round by its date, a miner by its uid in that round."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from weather_dagster.db.schema import forecast_runs, miner_responses
from weather_dagster.operator.demo_env import OperatorInputError


def parse_round_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise OperatorInputError(f"--round {text!r} is not a date: give the round's init date as YYYY-MM-DD") from None


def find_round(conn: sa.Connection, round_date: date) -> sa.Row:
    """The newest round initialised on ``round_date`` (UTC), or a message listing the rounds there are."""
    start = datetime(round_date.year, round_date.month, round_date.day, tzinfo=UTC)
    runs = forecast_runs.c
    row = conn.execute(
        sa.select(forecast_runs)
        .where(runs.gfs_init_time_utc >= start, runs.gfs_init_time_utc < start + timedelta(days=1))
        .order_by(runs.id.desc())
        .limit(1)
    ).first()
    if row is not None:
        return row
    recent = conn.execute(sa.select(runs.gfs_init_time_utc).order_by(runs.id.desc()).limit(5)).scalars().all()
    known = ", ".join(f"{t:%Y-%m-%d}" for t in recent) or "none: this database has no rounds yet"
    raise OperatorInputError(f"no round initialised on {round_date}; rounds in this database: {known}")


def find_response(conn: sa.Connection, run_id: int, uid: int) -> sa.Row:
    r = miner_responses.c
    row = conn.execute(sa.select(miner_responses).where(r.run_id == run_id, r.miner_uid == uid)).first()
    if row is not None:
        return row
    uids = conn.execute(sa.select(r.miner_uid).where(r.run_id == run_id).order_by(r.miner_uid)).scalars().all()
    raise OperatorInputError(f"miner uid {uid} has no forecast in this round; its miners: {uids or 'none'}")
