"""The one "which step is due" predicate, and the atomic claim that starts due steps.

A step is due when it is pending / retry_scheduled / waiting_for_truth (``core.states.STEP_DUE``, the
states the table lets move to in_progress) and its ``next_retry_time`` has passed (or is unset), or
when it is in_progress under a lease that expired (its worker died; the claim then only changes the
holder, the status stays). PostgreSQL takes the rows with ``FOR UPDATE SKIP LOCKED``; SQLite
serialises writers with the ``BEGIN IMMEDIATE`` every transaction starts with (see ``db.engine``), so
the same select-then-update is safe on both: two claimers never receive the same step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from weather_dagster.core.retry import RetryPolicy, stored_timeouts
from weather_dagster.core.states import STEP_DUE, STEP_DUE_VALUES, StepStatus, predecessors
from weather_dagster.db.schema import forecast_steps
from weather_dagster.db.types import utcnow
from weather_dagster.work.keys import StepKey
from weather_dagster.work.stepsql import refresh_stats, stats_values

# The claim moves due rows to in_progress: the due set must be exactly what the table allows to.
if predecessors("step", StepStatus.IN_PROGRESS) != STEP_DUE:
    raise RuntimeError("core.states: STEP_DUE differs from the states that may move to in_progress")


def due_condition(now: datetime) -> sa.ColumnElement[bool]:
    """True for a step row that may be claimed at ``now``."""
    s = forecast_steps.c
    waiting = sa.and_(
        s.status.in_(STEP_DUE_VALUES),
        sa.or_(s.next_retry_time.is_(None), s.next_retry_time <= now),
    )
    abandoned = sa.and_(s.status == StepStatus.IN_PROGRESS.value, s.lease_expires_at < now)
    return sa.or_(waiting, abandoned)


@dataclass(frozen=True)
class ClaimedStep:
    """A claimed step as it was before the claim (its last error and attempt count)."""

    id: int
    key: StepKey
    attempt: int  # the attempt this claim is (1 for the first)
    previous_status: StepStatus
    lease_expired: bool  # the previous worker died while holding it
    error_json: dict | None
    row: sa.Row

    @property
    def timeouts_so_far(self) -> int:
        return stored_timeouts(self.error_json)


def claim(
    conn: sa.Connection,
    policy: RetryPolicy,
    *,
    worker_id: str,
    lease_s: float,
    where: sa.ColumnElement[bool] | None = None,
    now: datetime | None = None,
    limit: int | None = None,
    dagster_run_id: str | None = None,
) -> list[ClaimedStep]:
    """Claim and start the due steps matching ``where`` (round, step names, uids), in ``conn``'s transaction.

    Each claimed row is in_progress under ``worker_id`` with a lease of ``lease_s``, its stats row
    refreshed; a retry_scheduled row keeps its ``retry_count`` (the attempts used), so the claim's
    ``attempt`` is ``retry_count + 1``. Rows another worker claimed in the meantime are skipped.
    """
    now = now or utcnow()
    s = forecast_steps.c
    query = (
        sa.select(forecast_steps)
        .where(due_condition(now), where if where is not None else sa.true())
        .order_by(s.next_retry_time.asc().nulls_first(), s.id)
        .with_for_update(skip_locked=True)
    )
    if limit is not None:
        query = query.limit(limit)
    rows = conn.execute(query).all()
    if not rows:
        return []
    conn.execute(
        sa.update(forecast_steps)
        .where(s.id.in_([r.id for r in rows]), due_condition(now))
        .values(
            status=StepStatus.IN_PROGRESS.value,
            claimed_by=worker_id,
            dagster_run_id=dagster_run_id,
            started_at=now,
            completed_at=None,
            next_retry_time=None,
            lease_expires_at=now + timedelta(seconds=lease_s),
            updated_at=now,
        )
    )
    claimed = [
        ClaimedStep(
            id=r.id,
            key=StepKey.from_row(r),
            attempt=r.retry_count + 1,
            previous_status=StepStatus(r.status),
            lease_expired=r.status == StepStatus.IN_PROGRESS.value,
            error_json=r.error_json,
            row=r,
        )
        for r in rows
    ]
    for step in claimed:
        if step.key.is_miner_step:
            stats = stats_values(step.key, StepStatus.IN_PROGRESS, now, None, None)
            stats["retries_remaining"] = max(0, policy.attempts_for(step.key.step_name) - step.row.retry_count)
            refresh_stats(conn, step.key, stats, now)
    return claimed
