"""One miner's Day1 and ERA5 scoring as units of work: state checks, step log, scoring, writes.

These are the functions the Dagster assets call (and tests call directly). Each records its outcome
in the step log (one step for Day1, one per ERA5 lead) and in the miner's forecast status, so a
re-materialization continues where the last one stopped: succeeded or failed steps are never scored
again, and a lead whose truth is not due yet is left ``pending`` with its due time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from weather_dagster.core.errors import InvalidDataError, TruthNotAvailable
from weather_dagster.core.states import MinerForecastStatus, StepName, StepStatus, allowed
from weather_dagster.db.schema import forecast_runs, miner_responses
from weather_dagster.db.states import set_miner_status
from weather_dagster.db.steps import StepKey, StepLog
from weather_dagster.db.types import utcnow
from weather_dagster.orchestration.readiness import era5_due_time
from weather_dagster.scoring.day1 import score_day1
from weather_dagster.scoring.era5 import REJECTED, SCORED, score_era5_lead
from weather_dagster.scoring.inputs import ScoringInputs
from weather_dagster.scoring.store import (
    ResponseKey,
    Rollup,
    clean,
    read_rollup,
    refresh_forecast_stats,
    write_day1,
    write_era5_lead,
)
from weather_dagster.settings import Settings

_M = MinerForecastStatus
DONE = (StepStatus.SUCCEEDED.value, StepStatus.FAILED.value)


@dataclass
class Outcome:
    """What one call did, for materialization metadata and asset checks."""

    response: ResponseKey | None
    status: str  # scored | failed | skipped | waiting | retry
    detail: str = ""
    leads: dict[int, str] = field(default_factory=dict)
    per_variable: dict[str, dict[str, float | None]] = field(default_factory=dict)
    rollup: Rollup | None = None


def find_response(engine: sa.Engine, run_id: int, uid: int) -> tuple[ResponseKey, str, datetime] | None:
    """The uid's live response in the round (a cancelled hotkey's thread is ignored) and its init."""
    r = miner_responses.c
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(r.id, r.miner_hotkey, r.status, forecast_runs.c.gfs_init_time_utc)
            .join(forecast_runs, forecast_runs.c.id == r.run_id)
            .where(r.run_id == run_id, r.miner_uid == uid, r.status != _M.CANCELLED.value)
            .order_by(r.id.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    return ResponseKey(row.id, run_id, uid, row.miner_hotkey), row.status, row.gfs_init_time_utc


def run_id_for_date(engine: sa.Engine, init_time: datetime) -> int | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(forecast_runs.c.id).where(forecast_runs.c.gfs_init_time_utc == init_time)
        ).scalar()


def _attempt(steps: StepLog, key: StepKey) -> tuple[int, str | None]:
    row = steps.get(key)
    if row is None:
        return 1, None
    return row.retry_count + 1, row.status


def _move(conn: sa.Connection, key: ResponseKey, current: str, target: _M, now: datetime, **fields) -> str:
    if current != target.value and allowed("miner_forecast", current, target.value):
        set_miner_status(conn, key.run_id, key.miner_uid, key.miner_hotkey, target, now=now, **fields)
        return target.value
    return current


def _record_error(steps: StepLog, step: StepKey, exc: Exception, attempt: int, now: datetime) -> str:
    decision = steps.record_failure(step, exc, attempt=attempt, now=now)
    return {StepStatus.WAITING_FOR_TRUTH: "waiting", StepStatus.RETRY_SCHEDULED: "retry"}.get(decision.status, "failed")


def run_day1(
    engine: sa.Engine,
    steps: StepLog,
    settings: Settings,
    inputs: ScoringInputs,
    run_id: int,
    uid: int,
    *,
    dagster_run_id: str | None = None,
    now: datetime | None = None,
) -> Outcome:
    found = find_response(engine, run_id, uid)
    if found is None:
        return Outcome(None, "skipped", "no live response for this miner in this round")
    key, status, init = found
    step = StepKey(run_id, uid, key.miner_hotkey, StepName.DAY1)
    attempt, step_status = _attempt(steps, step)
    if step_status in DONE:
        with engine.connect() as conn:
            return Outcome(
                key,
                "skipped",
                f"day1 step already {step_status}",
                rollup=read_rollup(conn, key.response_id, settings.scoring),
            )
    if status not in (_M.FORECAST_READY.value, _M.DAY1_SCORING.value):
        return Outcome(key, "skipped", f"forecast is {status}, not ready for Day1")
    now = now or utcnow()
    with engine.begin() as conn:
        status = _move(conn, key, status, _M.DAY1_SCORING, now)
    steps.start(step, attempt=attempt, dagster_run_id=dagster_run_id, now=now)
    started = time.perf_counter()
    try:
        result = score_day1(
            inputs.forecast(run_id, uid, key.miner_hotkey),
            inputs.truth("gfs_analysis", init),
            inputs.truth("gfs_forecast", init),
            inputs.climatology(),
            init,
            settings.scoring,
        )
    except Exception as exc:
        outcome = _record_error(steps, step, exc, attempt, now)
        if outcome == "failed":
            with engine.begin() as conn:
                category = getattr(exc, "category", "error")
                _move(conn, key, status, _M.FAILED, now, failure_category=category, error_message=str(exc)[:500])
            return Outcome(key, "failed", str(exc)[:500])
        raise
    with engine.begin() as conn:
        write_day1(conn, key, result, now, settings.scoring.profile)
        rollup = refresh_forecast_stats(conn, key, settings.scoring, now)
        _move(conn, key, status, _M.DAY1_SCORED, now, day1_scored_at=now)
    steps.succeed(
        step, attempt=attempt, latency_ms=(time.perf_counter() - started) * 1e3, context=clean(result.summary())
    )
    per_variable = {
        f"{c.variable}@{c.lead_hours}h": {
            "skill": c.skill_after_penalty if math.isfinite(c.skill_after_penalty) else None,
            "acc": c.metrics.acc if c.metrics else None,
            "clone_penalty": c.clone_penalty,
            "passed": float(c.passed),
        }
        for c in result.components
    }
    return Outcome(
        key, "scored", f"Day1 {result.score:.4f} pass={result.passed}", per_variable=per_variable, rollup=rollup
    )


def _truth_source(truth, valid_time: datetime) -> str | None:
    """Which ERA5 source the truth came from, when the truth adapter can say (ARCO, CDS, ...)."""
    source_of = getattr(truth, "source_of", None)
    return source_of(valid_time) if callable(source_of) else None


def run_era5(
    engine: sa.Engine,
    steps: StepLog,
    settings: Settings,
    inputs: ScoringInputs,
    run_id: int,
    uid: int,
    *,
    dagster_run_id: str | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Score every ERA5 lead of this miner whose truth is due and that is not done yet."""
    found = find_response(engine, run_id, uid)
    if found is None:
        return Outcome(None, "skipped", "no live response for this miner in this round")
    key, status, init = found
    if status not in (_M.DAY1_SCORED.value, _M.ERA5_SCORING.value, _M.ERA5_SCORED.value):
        return Outcome(key, "skipped", f"forecast is {status}: ERA5 scoring starts after Day1")
    now = now or utcnow()
    outcome = Outcome(key, "scored")
    forecast = None
    for lead in settings.scoring.era5_lead_hours:
        step = StepKey(run_id, uid, key.miner_hotkey, StepName.ERA5, lead_hours=lead)
        attempt, step_status = _attempt(steps, step)
        if step_status in DONE:
            outcome.leads[lead] = "done" if step_status == StepStatus.SUCCEEDED.value else "failed"
            continue
        due = era5_due_time(init, lead, settings)  # the one readiness rule
        if now < due:
            steps.ensure_pending(step, due_at=due)
            outcome.leads[lead] = "not_due"
            continue
        with engine.begin() as conn:
            status = _move(conn, key, status, _M.ERA5_SCORING, now)
        steps.start(step, attempt=attempt, dagster_run_id=dagster_run_id, now=now)
        started = time.perf_counter()
        try:
            forecast = forecast or inputs.forecast(run_id, uid, key.miner_hotkey)
            truth = inputs.truth("era5", init)
            result = score_era5_lead(forecast, truth, inputs.climatology(), init, lead, settings.scoring)
        except TruthNotAvailable as exc:
            outcome.leads[lead] = _record_error(steps, step, exc, attempt, now)
            continue
        except InvalidDataError as exc:
            outcome.leads[lead] = _record_error(steps, step, exc, attempt, now)
            continue
        except Exception as exc:
            _record_error(steps, step, exc, attempt, now)  # retry_scheduled (or failed past max attempts)
            raise
        with engine.begin() as conn:
            write_era5_lead(conn, key, result, now, settings.scoring.profile)
            outcome.rollup = refresh_forecast_stats(conn, key, settings.scoring, now)
        if result.status == SCORED:
            context = {**result.summary(), "truth_source": _truth_source(truth, init + timedelta(hours=lead))}
            steps.succeed(
                step, attempt=attempt, latency_ms=(time.perf_counter() - started) * 1e3, context=clean(context)
            )
            outcome.leads[lead] = "done"
            outcome.per_variable = {
                name: {"rmse": v.rmse, "acc": v.acc, "skill": v.skill} for name, v in sorted(result.variables.items())
            }
        else:
            error = InvalidDataError(f"lead {lead}h {result.status}: {result.reason}")
            steps.fail(step, error, attempt=attempt, now=now)
            outcome.leads[lead] = "failed" if result.status != REJECTED else "rejected"
    with engine.begin() as conn:
        if all(state in ("done", "failed", "rejected") for state in outcome.leads.values()):
            _move(conn, key, status, _M.ERA5_SCORED, now, era5_scored_at=now)
        outcome.rollup = read_rollup(conn, key.response_id, settings.scoring)
    return outcome
