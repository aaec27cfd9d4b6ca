"""One miner's Day1 and ERA5 scoring as units of work: state checks, step log, scoring, writes.

These are the functions the Dagster assets call (and tests call directly). Each records its outcome
in the step log (one step for Day1, one per ERA5 lead) and in the miner's forecast status through the
work layer, the step and the forecast in one transaction, so a re-materialization continues where the
last one stopped: succeeded or failed steps are never scored again, a step another run holds
(in_progress) is skipped, and a lead whose truth is not due yet is left ``pending`` with its due time.
No database connection is held while scoring runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from weather_dagster import work
from weather_dagster.core.errors import InvalidDataError, TruthNotAvailable, sanitize_error
from weather_dagster.core.states import STEP_DONE_VALUES, MinerForecastStatus, StepName, StepStatus
from weather_dagster.db.schema import forecast_runs, miner_responses
from weather_dagster.db.steps import StepLog
from weather_dagster.db.types import utcnow
from weather_dagster.orchestration.readiness import era5_due_time
from weather_dagster.scoring.day1 import score_day1
from weather_dagster.scoring.era5 import REJECTED, SCORED, score_era5_lead
from weather_dagster.scoring.inputs import ScoringInputs
from weather_dagster.scoring.receipts import FieldDigests, write_score_receipt
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
from weather_dagster.work.keys import StepKey

_M = MinerForecastStatus


@dataclass
class Outcome:
    """What one call did, for materialization metadata and asset checks."""

    response: ResponseKey | None
    status: str  # scored | failed | skipped | waiting | retry
    detail: str = ""
    leads: dict[int, str] = field(default_factory=dict)
    per_variable: dict[str, dict[str, float | None]] = field(default_factory=dict)
    rollup: Rollup | None = None


def find_response(conn: sa.Connection, run_id: int, uid: int) -> tuple[ResponseKey, str, datetime] | None:
    """The uid's live response in the round (a cancelled hotkey's thread is ignored) and its init."""
    r = miner_responses.c
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


def _attempt(conn: sa.Connection, key: StepKey) -> tuple[int, str | None]:
    row = work.get(conn, key)
    if row is None:
        return 1, None
    return row.retry_count + 1, row.status


def _forecast(key: ResponseKey) -> tuple[int, int, str]:
    return key.run_id, key.miner_uid, key.miner_hotkey


def _record_error(
    conn: sa.Connection, steps: StepLog, step: StepKey, exc: Exception, attempt: int, now: datetime, *, final: bool
) -> str:
    """The policy's decision; ``final`` also fails the forecast when the decision is final (Day1 only:
    a failed ERA5 lead leaves the forecast in era5_scoring, SPEC section 4)."""
    decision = work.record_failure(conn, steps.policy, step, exc, attempt=attempt, now=now, fail_forecast=final)
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
    now = now or utcnow()
    with engine.begin() as conn:
        found = find_response(conn, run_id, uid)
        if found is None:
            return Outcome(None, "skipped", "no live response for this miner in this round")
        key, status, init = found
        step = StepKey(run_id, uid, key.miner_hotkey, StepName.DAY1)
        attempt, step_status = _attempt(conn, step)
        if step_status in STEP_DONE_VALUES:
            rollup = read_rollup(conn, key.response_id, settings.scoring)
            return Outcome(key, "skipped", f"day1 step already {step_status}", rollup=rollup)
        if status not in (_M.FORECAST_READY.value, _M.DAY1_SCORING.value):
            return Outcome(key, "skipped", f"forecast is {status}, not ready for Day1")
        work.set_miner_status(conn, *_forecast(key), _M.DAY1_SCORING, now=now)
        if not work.start(conn, steps.policy, step, attempt=attempt, dagster_run_id=dagster_run_id, now=now):
            return Outcome(key, "skipped", "day1 step in_progress under another run")
    started = time.perf_counter()
    digests = FieldDigests()  # the receipt's inputs: every reference field as read
    try:
        result = score_day1(
            inputs.forecast(run_id, uid, key.miner_hotkey),
            digests.wrap(inputs.truth("gfs_analysis", init), "gfs_analysis"),
            digests.wrap(inputs.truth("gfs_forecast", init), "gfs_forecast"),
            digests.wrap(inputs.climatology(), "climatology"),
            init,
            settings.scoring,
        )
    except Exception as exc:
        with engine.begin() as conn:
            outcome = _record_error(conn, steps, step, exc, attempt, now, final=True)
        if outcome == "failed":
            return Outcome(key, "failed", sanitize_error(exc)["message"][:500])
        raise
    with engine.begin() as conn:  # the scores, the forecast's status and the step: one outcome
        write_day1(conn, key, result, now, settings.scoring.profile)
        write_score_receipt(conn, settings, key, init, result, digests, now)
        rollup = refresh_forecast_stats(conn, key, settings.scoring, now)
        work.set_miner_status(conn, *_forecast(key), _M.DAY1_SCORED, now=now, day1_scored_at=now)
        latency = (time.perf_counter() - started) * 1e3
        work.succeed(
            conn, steps.policy, step, attempt=attempt, latency_ms=latency, now=now, context=clean(result.summary())
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


def era5_truth_sources(inputs: ScoringInputs, init: datetime):
    """The ERA5 truth and climatology of a round, each read recorded for the receipts (one set per lead)."""
    digests = FieldDigests()
    truth = digests.wrap(inputs.truth("era5", init), "era5")
    return truth, digests.wrap(inputs.climatology(), "climatology"), digests


def score_era5_for_miner(forecast, inputs: ScoringInputs, init: datetime, lead: int, settings: Settings):
    """The per-miner ERA5 scoring call of one lead (the field-major batch has its own).

    Returns the lead's result, the truth it was scored against and the digests of what was read.
    """
    truth, climatology, digests = era5_truth_sources(inputs, init)
    return score_era5_lead(forecast, truth, climatology, init, lead, settings.scoring), truth, digests


def _begin_lead(
    conn: sa.Connection,
    steps: StepLog,
    settings: Settings,
    key: ResponseKey,
    init: datetime,
    lead: int,
    now: datetime,
    dagster_run_id: str | None,
) -> tuple[str | None, int]:
    """Start one lead's step, or say why not ("done", "failed", "not_due", "held"); returns the attempt."""
    step = StepKey(key.run_id, key.miner_uid, key.miner_hotkey, StepName.ERA5, lead_hours=lead)
    attempt, step_status = _attempt(conn, step)
    if step_status in STEP_DONE_VALUES:
        return ("done" if step_status == StepStatus.SUCCEEDED.value else "failed"), attempt
    due = era5_due_time(init, lead, settings)  # the one readiness rule
    if now < due:
        work.ensure_pending(conn, step, due_at=due)
        return "not_due", attempt
    work.set_miner_status(conn, *_forecast(key), _M.ERA5_SCORING, now=now)
    if not work.start(conn, steps.policy, step, attempt=attempt, dagster_run_id=dagster_run_id, now=now):
        return "held", attempt
    return None, attempt


def lead_state(result) -> str:
    """A scored lead's state in an ``Outcome``: done, failed, or rejected (the forecast was refused)."""
    if result.status == SCORED:
        return "done"
    return "failed" if result.status != REJECTED else "rejected"


def per_variable_of(result) -> dict[str, dict[str, float | None]]:
    return {name: {"rmse": v.rmse, "acc": v.acc, "skill": v.skill} for name, v in sorted(result.variables.items())}


def record_era5_lead(
    conn: sa.Connection,
    steps: StepLog,
    settings: Settings,
    key: ResponseKey,
    init: datetime,
    lead_attempt_latency: tuple[int, int, float],
    result,
    truth_and_digests: tuple,
    now: datetime,
):
    """One lead's outcome in the caller's transaction: its scores and receipt, the rollup and its step.

    Shared by ``run_era5`` and the field-major batch, so both write exactly the same rows. Returns the rollup.
    """
    lead, attempt, latency_ms = lead_attempt_latency
    truth, digests = truth_and_digests
    step = StepKey(key.run_id, key.miner_uid, key.miner_hotkey, StepName.ERA5, lead_hours=lead)
    write_era5_lead(conn, key, result, now, settings.scoring.profile)
    write_score_receipt(conn, settings, key, init, result, digests, now)
    rollup = refresh_forecast_stats(conn, key, settings.scoring, now)
    if result.status == SCORED:
        context = {**result.summary(), "truth_source": _truth_source(truth, init + timedelta(hours=lead))}
        work.succeed(conn, steps.policy, step, attempt=attempt, latency_ms=latency_ms, now=now, context=clean(context))
    else:
        error = InvalidDataError(f"lead {lead}h {result.status}: {result.reason}")
        work.fail(conn, steps.policy, step, error, attempt=attempt, now=now)
    return rollup


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
    with engine.connect() as conn:
        found = find_response(conn, run_id, uid)
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
        with engine.begin() as conn:
            skipped, attempt = _begin_lead(conn, steps, settings, key, init, lead, now, dagster_run_id)
        if skipped is not None:
            outcome.leads[lead] = skipped
            continue
        started = time.perf_counter()
        try:
            forecast = forecast or inputs.forecast(run_id, uid, key.miner_hotkey)
            result, truth, digests = score_era5_for_miner(forecast, inputs, init, lead, settings)
        except (TruthNotAvailable, InvalidDataError) as exc:
            with engine.begin() as conn:
                outcome.leads[lead] = _record_error(conn, steps, step, exc, attempt, now, final=False)
            continue
        except Exception as exc:
            with engine.begin() as conn:  # retry_scheduled (or failed past max attempts)
                _record_error(conn, steps, step, exc, attempt, now, final=False)
            raise
        latency = (time.perf_counter() - started) * 1e3
        with engine.begin() as conn:
            outcome.rollup = record_era5_lead(
                conn, steps, settings, key, init, (lead, attempt, latency), result, (truth, digests), now
            )
        outcome.leads[lead] = lead_state(result)
        if result.status == SCORED:
            outcome.per_variable = per_variable_of(result)
    with engine.begin() as conn:
        if all(state in ("done", "failed", "rejected") for state in outcome.leads.values()):
            work.set_miner_status(conn, *_forecast(key), _M.ERA5_SCORED, now=now, era5_scored_at=now)
        outcome.rollup = read_rollup(conn, key.response_id, settings.scoring)
    return outcome
