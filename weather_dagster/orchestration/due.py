"""What work is due in each open round, grouped the way runs are launched, with idempotent run keys.

A run key is a digest of the due items (miner, step, lead, attempt): a repeated sensor tick sees the
same items and so the same key, which Dagster skips; a retry has a new attempt and so a new key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa

from weather_dagster.core.states import (
    FORECAST_TERMINAL_VALUES,
    ROUND_OPEN_VALUES,
    MinerForecastStatus,
    RoundStatus,
    StepName,
)
from weather_dagster.db.schema import forecast_runs, forecast_steps, miner_responses
from weather_dagster.orchestration.readiness import ready_leads
from weather_dagster.settings import Settings
from weather_dagster.work.due import due_condition

_M = MinerForecastStatus
OPEN_ROUND_STATUSES = ROUND_OPEN_VALUES
MINER_STEPS = (StepName.QUERY.value, StepName.POLL.value, StepName.MANIFEST.value)


class RunKind(StrEnum):
    """The kinds of run the automation launches (not the retry policy's ``core.retry.WorkKind``)."""

    MINERS = "miners"  # query / poll / manifest: miner HTTP pool
    DAY1 = "day1"  # heavy scoring pool
    ERA5 = "era5"  # heavy scoring pool
    FINALIZE = "finalize"  # round rollups, ranks, weights


@dataclass(frozen=True, order=True)
class DueItem:
    miner_uid: int
    miner_hotkey: str
    step_name: str
    lead_hours: int
    attempt: int


@dataclass
class RoundWork:
    run_id: int
    init_time: datetime
    status: str
    items: dict[RunKind, list[DueItem]] = field(default_factory=dict)

    @property
    def date(self) -> str:
        return self.init_time.strftime("%Y-%m-%d")

    def run_key(self, kind: RunKind) -> str:
        digest = hashlib.sha256(repr(sorted(self.items.get(kind, []))).encode()).hexdigest()[:16]
        return f"{kind}:{self.date}:{digest}"


def open_rounds(conn: sa.Connection) -> list[sa.Row]:
    r = forecast_runs.c
    return conn.execute(
        sa.select(r.id, r.gfs_init_time_utc, r.status).where(r.status.in_(OPEN_ROUND_STATUSES)).order_by(r.id)
    ).all()


def due_work(
    engine: sa.Engine,
    settings: Settings,
    now: datetime,
    truth_available: Callable[[datetime], bool],
) -> list[RoundWork]:
    """Due work of every open round, by kind. Reads only; claiming happens in the runs."""
    result = []
    with engine.connect() as conn:
        for round_row in open_rounds(conn):
            work = RoundWork(round_row.id, round_row.gfs_init_time_utc, round_row.status)
            work.items[RunKind.MINERS] = _due_steps(conn, round_row.id, now, MINER_STEPS)
            work.items[RunKind.DAY1] = _due_day1(conn, round_row.id, now)
            leads = ready_leads(round_row.gfs_init_time_utc, settings, now, truth_available)
            work.items[RunKind.ERA5] = _due_era5(conn, round_row.id, now, leads)
            if _all_settled(conn, round_row.id) and round_row.status != RoundStatus.CREATED.value:
                work.items[RunKind.FINALIZE] = [DueItem(-1, "coordinator", "round_finalize", 0, 1)]
            result.append(work)
    return result


def _due_steps(conn: sa.Connection, run_id: int, now: datetime, names: tuple[str, ...]) -> list[DueItem]:
    s = forecast_steps.c
    rows = conn.execute(
        sa.select(s.miner_uid, s.miner_hotkey, s.step_name, s.lead_hours, s.retry_count).where(
            s.run_id == run_id, s.step_name.in_(names), due_condition(now)
        )
    ).all()
    return sorted(DueItem(r.miner_uid, r.miner_hotkey, r.step_name, r.lead_hours, r.retry_count + 1) for r in rows)


def _due_day1(conn: sa.Connection, run_id: int, now: datetime) -> list[DueItem]:
    """Forecasts ready for Day1 with no Day1 step yet, plus Day1 steps whose retry time has come."""
    r, s = miner_responses.c, forecast_steps.c
    has_step = (
        sa.select(s.id)
        .where(
            s.run_id == r.run_id,
            s.miner_uid == r.miner_uid,
            s.miner_hotkey == r.miner_hotkey,
            s.step_name == StepName.DAY1.value,
        )
        .exists()
    )
    fresh = conn.execute(
        sa.select(r.miner_uid, r.miner_hotkey).where(r.run_id == run_id, r.status == _M.FORECAST_READY.value, ~has_step)
    ).all()
    items = [DueItem(x.miner_uid, x.miner_hotkey, StepName.DAY1.value, 0, 1) for x in fresh]
    return sorted(items + _due_steps(conn, run_id, now, (StepName.DAY1.value,)))


def _due_era5(conn: sa.Connection, run_id: int, now: datetime, leads: list[int]) -> list[DueItem]:
    """Ready leads of Day1-scored forecasts that have no finished (or running) step yet."""
    if not leads:
        return []
    r, s = miner_responses.c, forecast_steps.c
    forecasts = conn.execute(
        sa.select(r.miner_uid, r.miner_hotkey).where(
            r.run_id == run_id, r.status.in_([_M.DAY1_SCORED.value, _M.ERA5_SCORING.value])
        )
    ).all()
    if not forecasts:
        return []
    # The one due predicate decides, in SQL; a step is also "due" when a ready lead has none yet.
    rows = conn.execute(
        sa.select(s.miner_uid, s.miner_hotkey, s.lead_hours, s.retry_count, due_condition(now).label("due")).where(
            s.run_id == run_id, s.step_name == StepName.ERA5.value
        )
    ).all()
    steps = {(x.miner_uid, x.miner_hotkey, x.lead_hours): x for x in rows}
    items = []
    for forecast in forecasts:
        for lead in leads:
            step = steps.get((forecast.miner_uid, forecast.miner_hotkey, lead))
            if step is None:
                items.append(DueItem(forecast.miner_uid, forecast.miner_hotkey, StepName.ERA5.value, lead, 1))
            elif step.due:
                attempt = step.retry_count + 1
                items.append(DueItem(forecast.miner_uid, forecast.miner_hotkey, StepName.ERA5.value, lead, attempt))
    return sorted(items)


def _all_settled(conn: sa.Connection, run_id: int) -> bool:
    """Every miner forecast of the round is terminal (scored through ERA5, failed or cancelled)."""
    r = miner_responses.c
    counts = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.sum(sa.case((r.status.in_(FORECAST_TERMINAL_VALUES), 1), else_=0)),
        ).where(r.run_id == run_id)
    ).one()
    total, terminal = counts[0] or 0, counts[1] or 0
    return total > 0 and total == terminal
