"""Named step operations, each one guarded write of the step row in the caller's transaction.

Every operation moves one ``weather_forecast_steps`` row through the step machine of ``core.states``
and, in the same statement (PostgreSQL) or transaction, refreshes the miner's ``weather_forecast_stats``
row (stage, status, last error, retries remaining, next retry), so the two never disagree. Each returns
True when it moved the row and False on a replay (the row already is in the target state; nothing is
written); an illegal move raises ``IllegalTransition``. Callers pass ``attempt`` explicitly (the claim
returns it), never "increment", so a replay cannot count twice. Error text is stored only through
``core.errors.sanitize_error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from weather_dagster.core.errors import WeatherError, sanitize_error, truncate_utf8
from weather_dagster.core.retry import RetryDecision, RetryPolicy
from weather_dagster.core.states import IllegalTransition, MinerForecastStatus, StepStatus, predecessors
from weather_dagster.db.schema import forecast_stats, forecast_steps
from weather_dagster.db.types import utcnow
from weather_dagster.db.upsert import insert_for
from weather_dagster.work.forecasts import set_miner_status
from weather_dagster.work.guard import settle
from weather_dagster.work.keys import StepKey
from weather_dagster.work.stepsql import (
    bounded_context,
    combined_statement,
    refresh_stats,
    stats_values,
    step_statement,
)


def ensure_pending(
    conn: sa.Connection,
    key: StepKey,
    *,
    due_at: datetime | None = None,
    context: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> bool:
    """Seed a step as pending (due at ``due_at``) unless it exists already, whatever its state."""
    now = now or utcnow()
    values = {
        **key.as_values(),
        "status": StepStatus.PENDING.value,
        "retry_count": 0,
        "next_retry_time": due_at,
        "context": bounded_context(context),
        "created_at": now,
        "updated_at": now,
    }
    return bool(conn.execute(insert_for(conn, forecast_steps).values(**values).on_conflict_do_nothing()).rowcount)


def start(
    conn: sa.Connection,
    policy: RetryPolicy,
    key: StepKey,
    *,
    attempt: int = 1,
    dagster_run_id: str | None = None,
    lease_s: float | None = None,
    now: datetime | None = None,
    context: Mapping[str, Any] | None = None,
) -> bool:
    """pending / retry_scheduled / waiting_for_truth (or no row yet) -> in_progress.

    False when the step already is in_progress: another run holds it (or this is a replay).
    """
    now = now or utcnow()
    fields = {
        "started_at": now,
        "completed_at": None,
        "retry_count": attempt - 1,
        "next_retry_time": None,
        "lease_expires_at": now + timedelta(seconds=lease_s) if lease_s else None,
        "dagster_run_id": dagster_run_id,
    }
    if context is not None:
        fields["context"] = bounded_context(context)
    return write(conn, policy, key, StepStatus.IN_PROGRESS, fields, now, last_error=None)


def succeed(
    conn: sa.Connection,
    policy: RetryPolicy,
    key: StepKey,
    *,
    attempt: int = 1,
    latency_ms: float | None = None,
    now: datetime | None = None,
    context: Mapping[str, Any] | None = None,
) -> bool:
    now = now or utcnow()
    fields: dict[str, Any] = {
        "completed_at": now,
        "retry_count": attempt - 1,
        "next_retry_time": None,
        "lease_expires_at": None,
        "latency_ms": latency_ms,
        "error_json": None,
    }
    if context is not None:
        fields["context"] = bounded_context(context)
    return write(conn, policy, key, StepStatus.SUCCEEDED, fields, now, last_error=None)


def fail(
    conn: sa.Connection,
    policy: RetryPolicy,
    key: StepKey,
    error: BaseException | str,
    *,
    attempt: int = 1,
    now: datetime | None = None,
) -> bool:
    now = now or utcnow()
    error_json = sanitize_error(error)
    fields = {
        "completed_at": now,
        "retry_count": attempt,
        "next_retry_time": None,
        "lease_expires_at": None,
        "error_json": error_json,
    }
    return write(conn, policy, key, StepStatus.FAILED, fields, now, last_error=error_json["message"])


def schedule_retry(
    conn: sa.Connection,
    policy: RetryPolicy,
    key: StepKey,
    error: BaseException | str,
    *,
    attempt: int,
    next_retry_time: datetime,
    now: datetime | None = None,
    timeouts: int = 0,
) -> bool:
    """in_progress -> retry_scheduled; ``timeouts`` (timed-out attempts so far) is stored with the error
    so the next attempt's timeout grows from the stored count (``RetryPolicy.timeout_for``)."""
    now = now or utcnow()
    error_json = sanitize_error(error, **({"timeouts": timeouts} if timeouts else {}))
    fields = {
        "retry_count": attempt,
        "next_retry_time": next_retry_time,
        "lease_expires_at": None,
        "error_json": error_json,
    }
    return write(conn, policy, key, StepStatus.RETRY_SCHEDULED, fields, now, last_error=error_json["message"])


def wait_for_truth(
    conn: sa.Connection,
    policy: RetryPolicy,
    key: StepKey,
    *,
    next_check_time: datetime,
    reason: str = "truth not available yet",
    now: datetime | None = None,
) -> bool:
    """Park a step until truth should exist; not an attempt, so ``retry_count`` is unchanged."""
    now = now or utcnow()
    fields = {
        "next_retry_time": next_check_time,
        "lease_expires_at": None,
        "context": {"waiting_for": truncate_utf8(sanitize_error(reason)["message"], 200)},
    }
    return write(conn, policy, key, StepStatus.WAITING_FOR_TRUTH, fields, now, last_error=None)


def record_failure(
    conn: sa.Connection,
    policy: RetryPolicy,
    key: StepKey,
    error: BaseException,
    *,
    attempt: int,
    now: datetime | None = None,
    timeouts_so_far: int = 0,
    fail_forecast: bool = False,
) -> RetryDecision:
    """Apply the retry policy to a failed attempt and write the transition it decides.

    When the decision is final and ``fail_forecast`` is set, the miner's forecast moves to ``failed``
    in the same transaction (the step and its forecast never disagree); its category is the error's
    own (a ``WeatherError``) or the policy's class of it.
    """
    now = now or utcnow()
    decision = policy.decide(policy.kind_of(key.step_name), error, attempt, now, timeouts_so_far=timeouts_so_far)
    if decision.status is StepStatus.WAITING_FOR_TRUTH:
        wait_for_truth(conn, policy, key, next_check_time=decision.next_retry_time, reason=str(error), now=now)
    elif decision.status is StepStatus.RETRY_SCHEDULED:
        schedule_retry(
            conn,
            policy,
            key,
            error,
            attempt=attempt,
            next_retry_time=decision.next_retry_time,
            now=now,
            timeouts=decision.timeouts,
        )
    else:
        fail(conn, policy, key, error, attempt=attempt, now=now)
        if fail_forecast:
            category = error.category if isinstance(error, WeatherError) else decision.error_class.value
            message = sanitize_error(error)["message"]
            set_miner_status(
                conn,
                key.run_id,
                key.miner_uid,
                key.miner_hotkey,
                MinerForecastStatus.FAILED,
                now=now,
                failure_category=category,
                error_message=message,
            )
    return decision


def cancel(
    conn: sa.Connection,
    policy: RetryPolicy,
    key: StepKey,
    error: WeatherError,
    *,
    attempt: int = 1,
    now: datetime | None = None,
) -> bool:
    """End a miner's thread (deregistered, hotkey changed): its step fails, its forecast is cancelled."""
    now = now or utcnow()
    fail(conn, policy, key, error, attempt=attempt, now=now)
    return set_miner_status(
        conn,
        key.run_id,
        key.miner_uid,
        key.miner_hotkey,
        MinerForecastStatus.CANCELLED,
        now=now,
        failure_category=error.category,
        error_message=str(error),
    )


def retry_now(conn: sa.Connection, key: StepKey, *, now: datetime | None = None) -> bool:
    """For an operator: a waiting step (pending, retry_scheduled, waiting_for_truth) becomes due now.

    Not a status change, only its time; a step in any other state raises (a finished step is final).
    """
    now = now or utcnow()
    waiting = sorted(predecessors("step", StepStatus.IN_PROGRESS))
    result = conn.execute(
        sa.update(forecast_steps)
        .where(key.where(), forecast_steps.c.status.in_(waiting))
        .values(next_retry_time=now, updated_at=now)
    )
    if result.rowcount != 1:
        current = conn.execute(sa.select(forecast_steps.c.status).where(key.where())).scalar()
        raise IllegalTransition("step", current or "(no row)", "due now")
    if key.is_miner_step:
        conn.execute(sa.update(forecast_stats).where(_stats_key(key)).values(next_scheduled_retry=now, updated_at=now))
    return True


def get(conn: sa.Connection, key: StepKey) -> sa.Row | None:
    return conn.execute(sa.select(forecast_steps).where(key.where())).one_or_none()


def _stats_key(key: StepKey) -> sa.ColumnElement[bool]:
    c = forecast_stats.c
    return sa.and_(c.run_id == key.run_id, c.miner_uid == key.miner_uid, c.miner_hotkey == key.miner_hotkey)


def write(
    conn: sa.Connection,
    policy: RetryPolicy,
    key: StepKey,
    target: StepStatus,
    fields: dict[str, Any],
    now: datetime,
    *,
    last_error: str | None,
) -> bool:
    """The one guarded step write: matches only rows in a state the table lets move to ``target``."""
    allowed_from = tuple(sorted(predecessors("step", target)))
    step_values = {**key.as_values(), "status": target.value, **fields, "updated_at": now}
    stats = stats_values(key, target, now, fields.get("next_retry_time"), last_error)
    max_attempts = policy.attempts_for(key.step_name)
    if conn.dialect.name == "postgresql" and key.is_miner_step:
        # One round trip: the step write and the stats update as data-modifying CTEs.
        stmt, params = combined_statement(key, step_values, stats, allowed_from, max_attempts)
        step_id, stats_rows = conn.execute(stmt, params).one()
        if step_id is None:
            return settle("step", _current(conn, key), target)
        if stats_rows:
            return True
        retry_count = conn.execute(sa.select(forecast_steps.c.retry_count).where(key.where())).scalar_one()
    else:
        stmt, params = step_statement(conn.dialect.name, key, step_values, allowed_from)
        row = conn.execute(stmt, params).first()
        if row is None:
            return settle("step", _current(conn, key), target)
        retry_count = row.retry_count
    if key.is_miner_step:
        stats["retries_remaining"] = max(0, max_attempts - retry_count)
        refresh_stats(conn, key, stats, now)
    return True


def _current(conn: sa.Connection, key: StepKey) -> str | None:
    return conn.execute(sa.select(forecast_steps.c.status).where(key.where())).scalar_one_or_none()
