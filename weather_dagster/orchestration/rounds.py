"""A round's status follows its miners' forecasts; a round still open after its window expires."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from weather_dagster.core.errors import WeatherError
from weather_dagster.core.retry import RetryPolicy
from weather_dagster.core.states import (
    ROUND_FORWARD,
    ROUND_TRANSITIONS,
    MinerForecastStatus,
    RoundStatus,
    StepName,
    StepStatus,
)
from weather_dagster.db.schema import forecast_runs, forecast_steps, miner_responses
from weather_dagster.db.steps import StepKey, StepLog
from weather_dagster.orchestration.calendar import init_time_of
from weather_dagster.orchestration.readiness import round_expires_at
from weather_dagster.settings import Settings
from weather_dagster.work.forecasts import set_round_status

_M = MinerForecastStatus
_R = RoundStatus
# The forward path without COMPLETED, which only finalize sets.
FORWARD = [s for s in ROUND_FORWARD if s is not RoundStatus.COMPLETED]
_QUERYING = {_M.CREATED, _M.FETCH_INITIATED, _M.INFERENCE_RUNNING}
_DAY1 = {_M.FORECAST_READY, _M.DAY1_SCORING}
_ERA5 = {_M.DAY1_SCORED, _M.ERA5_SCORING}


class TruthNeverArrived(WeatherError):
    """The round expired before any ERA5 source published this lead's valid time."""

    category = "truth_never_arrived"


def waiting_leads(conn: sa.Connection, run_id: int, settings: Settings) -> dict[tuple[int, str], list[int]]:
    """ERA5 leads not finished (succeeded or failed) of each forecast in its ERA5 stage."""
    r, s = miner_responses.c, forecast_steps.c
    forecasts = conn.execute(
        sa.select(r.miner_uid, r.miner_hotkey).where(r.run_id == run_id, r.status.in_([x.value for x in _ERA5]))
    ).all()
    if not forecasts:
        return {}
    finished = {
        (x.miner_uid, x.miner_hotkey, x.lead_hours)
        for x in conn.execute(
            sa.select(s.miner_uid, s.miner_hotkey, s.lead_hours).where(
                s.run_id == run_id,
                s.step_name == StepName.ERA5.value,
                s.status.in_([StepStatus.SUCCEEDED.value, StepStatus.FAILED.value]),
            )
        ).all()
    }
    leads = settings.scoring.era5_lead_hours
    waiting = {
        (f.miner_uid, f.miner_hotkey): [lead for lead in leads if (f.miner_uid, f.miner_hotkey, lead) not in finished]
        for f in forecasts
    }
    return {key: value for key, value in waiting.items() if value}


def _record_truth_never_arrived(
    conn: sa.Connection, run_id: int, init_time: datetime, waiting: dict[tuple[int, str], list[int]], settings: Settings
) -> None:
    """At expiry, each lead still waiting gets a failed step saying its truth never arrived."""
    steps = StepLog(conn.engine, RetryPolicy.from_settings(settings), connection=conn)
    sources = ", ".join(settings.reference.era5_sources)
    for (uid, hotkey), leads in sorted(waiting.items()):
        for lead in leads:
            key = StepKey(run_id, uid, hotkey, StepName.ERA5, lead_hours=lead)
            current = conn.execute(sa.select(forecast_steps.c.status, forecast_steps.c.retry_count).where(key.where()))
            row = current.one_or_none()
            if row is not None and row.status == StepStatus.IN_PROGRESS.value:
                continue  # a run is scoring it right now; its own outcome stands
            valid = init_time + timedelta(hours=lead)
            error = TruthNeverArrived(f"round expired before ERA5 at {valid:%Y-%m-%dT%H}Z was published ({sources})")
            steps.fail(key, error, attempt=row.retry_count if row is not None else 0)


def target_status(statuses: set[MinerForecastStatus], era5_running: bool) -> RoundStatus:
    """The stage the slowest miner is in decides the round's stage (COMPLETED is set by finalize)."""
    if not statuses or statuses & _QUERYING:
        return _R.QUERYING_MINERS
    if statuses & _DAY1:
        return _R.SCORING_DAY1
    if statuses & _ERA5:
        return _R.SCORING_ERA5 if era5_running else _R.AWAITING_ERA5
    return _R.AWAITING_ERA5


def _walk(current: RoundStatus, target: RoundStatus) -> list[RoundStatus]:
    """Legal single steps from current to target (empty if already there or target is behind)."""
    if current == target:
        return []
    if target in ROUND_TRANSITIONS[current]:
        return [target]
    if current in FORWARD and target in FORWARD and FORWARD.index(target) > FORWARD.index(current):
        return FORWARD[FORWARD.index(current) + 1 : FORWARD.index(target) + 1]
    return []


def sync_round_status(conn: sa.Connection, run_id: int, settings: Settings, now: datetime) -> RoundStatus:
    round_row = conn.execute(
        sa.select(forecast_runs.c.status, forecast_runs.c.gfs_init_time_utc).where(forecast_runs.c.id == run_id)
    ).one()
    current = RoundStatus(round_row.status)
    if current in (_R.COMPLETED, _R.EXPIRED, _R.ERROR):
        return current
    init = round_row.gfs_init_time_utc
    waiting = waiting_leads(conn, run_id, settings)
    expires = round_expires_at(init, {lead for leads in waiting.values() for lead in leads}, settings)
    if now > expires:
        _record_truth_never_arrived(conn, run_id, init, waiting, settings)
        set_round_status(conn, run_id, _R.EXPIRED, now=now, error_message="still open after the round window")
        return _R.EXPIRED
    r, s = miner_responses.c, forecast_steps.c
    statuses = {_M(x) for x in conn.execute(sa.select(r.status).where(r.run_id == run_id).distinct()).scalars()}
    era5_running = (
        conn.execute(
            sa.select(sa.func.count()).where(
                s.run_id == run_id, s.step_name == StepName.ERA5.value, s.status == StepStatus.IN_PROGRESS.value
            )
        ).scalar_one()
        > 0
    )
    for step in _walk(current, target_status(statuses, era5_running)):
        set_round_status(conn, run_id, step, now=now)
        current = step
    return current


def round_id_for(engine: sa.Engine, partition_date: str, settings: Settings) -> int | None:
    """The round a daily partition key names (its init at the configured GFS cycle), if it was opened."""
    init_time = init_time_of(partition_date, settings)
    with engine.connect() as conn:
        return conn.execute(
            sa.select(forecast_runs.c.id).where(forecast_runs.c.gfs_init_time_utc == init_time)
        ).scalar_one_or_none()


def expiry_due(conn: sa.Connection, run_id: int, settings: Settings, now: datetime) -> bool:
    """Whether ``sync_round_status`` would expire this open round now (reads only: for the sensor)."""
    row = conn.execute(
        sa.select(forecast_runs.c.status, forecast_runs.c.gfs_init_time_utc).where(forecast_runs.c.id == run_id)
    ).one()
    if RoundStatus(row.status) in (_R.COMPLETED, _R.EXPIRED, _R.ERROR):
        return False
    if now <= row.gfs_init_time_utc + timedelta(days=settings.round.expire_after_days):
        return False  # the common case answered without reading the leads
    waiting = waiting_leads(conn, run_id, settings)
    leads = {lead for leads in waiting.values() for lead in leads}
    return now > round_expires_at(row.gfs_init_time_utc, leads, settings)


def sync_round(
    engine: sa.Engine, run_id: int, settings: Settings, now: datetime, *, complete: bool = False
) -> RoundStatus:
    """Move the round's status in a transaction of its own, serialised with every other sync of it.

    Several runs of one round (scoring batches, the miner pass) end at the same time; the row lock
    (PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises writers anyway) makes each see the others'
    move instead of both trying the same transition.
    """
    with engine.begin() as conn:
        conn.execute(sa.select(forecast_runs.c.id).where(forecast_runs.c.id == run_id).with_for_update())
        if complete:
            return complete_round(conn, run_id, settings, now)
        return sync_round_status(conn, run_id, settings, now)


def complete_round(conn: sa.Connection, run_id: int, settings: Settings, now: datetime) -> RoundStatus:
    """Called by finalize once every forecast is terminal: walk the rest of the way to COMPLETED."""
    current = sync_round_status(conn, run_id, settings, now)
    if current in (_R.COMPLETED, _R.EXPIRED, _R.ERROR):
        return current
    for step in [*_walk(current, _R.AWAITING_ERA5), _R.SCORING_ERA5, _R.COMPLETED]:
        if step in ROUND_TRANSITIONS[current]:
            set_round_status(conn, run_id, step, now=now, **({"completed_at": now} if step is _R.COMPLETED else {}))
            current = step
    return current
