"""Atomic claim of due work: two concurrent claimers never receive the same step.

A step is due when it is pending / retry_scheduled / waiting_for_truth and its ``next_retry_time``
has passed (or is unset), or when it is in_progress under a lease that expired (its worker died).
PostgreSQL takes the rows with ``FOR UPDATE SKIP LOCKED``; SQLite serialises writers with the
``BEGIN IMMEDIATE`` every transaction starts with (see ``db.engine``), so the same select-then-update
is safe on both without a second code path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from weather_dagster.core.states import StepName, StepStatus
from weather_dagster.db.schema import forecast_steps
from weather_dagster.db.steps import StepKey
from weather_dagster.db.types import utcnow

DUE_STATUSES = (StepStatus.PENDING, StepStatus.RETRY_SCHEDULED, StepStatus.WAITING_FOR_TRUTH)


@dataclass(frozen=True)
class ClaimedStep:
    id: int
    key: StepKey
    attempt: int  # the attempt this claim is (1 for the first)
    previous_status: StepStatus
    lease_expired: bool  # the previous worker died while holding it


def due_condition(now: datetime, step_names: Iterable[StepName] | None = None) -> sa.ColumnElement[bool]:
    steps = forecast_steps.c
    waiting = sa.and_(
        steps.status.in_([s.value for s in DUE_STATUSES]),
        sa.or_(steps.next_retry_time.is_(None), steps.next_retry_time <= now),
    )
    abandoned = sa.and_(steps.status == StepStatus.IN_PROGRESS.value, steps.lease_expires_at < now)
    condition = sa.or_(waiting, abandoned)
    if step_names is not None:
        condition = sa.and_(condition, steps.step_name.in_([str(StepName(n)) for n in step_names]))
    return condition


def claim_due_steps(
    engine: sa.Engine,
    *,
    worker_id: str,
    limit: int,
    lease_s: float,
    now: datetime | None = None,
    step_names: Iterable[StepName] | None = None,
) -> list[ClaimedStep]:
    where = sa.true()
    if step_names is not None:
        where = forecast_steps.c.step_name.in_([str(StepName(n)) for n in step_names])
    rows = claim_rows(engine, where=where, worker_id=worker_id, lease_s=lease_s, now=now, limit=limit)
    return [
        ClaimedStep(
            id=r.id,
            key=StepKey(r.run_id, r.miner_uid, r.miner_hotkey, StepName(r.step_name), r.substep, r.lead_hours),
            # A retry_scheduled row stores the attempts used; waiting-for-truth ones did not use one.
            attempt=r.retry_count + 1,
            previous_status=StepStatus(r.status),
            lease_expired=r.status == StepStatus.IN_PROGRESS.value,
        )
        for r in rows
    ]


def claim_rows(
    engine: sa.Engine,
    *,
    where: sa.ColumnElement[bool],
    worker_id: str,
    lease_s: float,
    now: datetime | None = None,
    limit: int | None = None,
) -> list[sa.Row]:
    """Claim the due steps matching ``where`` (any extra filter: round, uids) and return their rows
    as they were before the claim (attempt = ``retry_count + 1``, last error in ``error_json``).

    The same select-then-update under ``FOR UPDATE SKIP LOCKED`` / ``BEGIN IMMEDIATE`` as
    :func:`claim_due_steps`: rows another worker claimed in the meantime are skipped, never shared.
    """
    now = now or utcnow()
    steps = forecast_steps.c
    query = (
        sa.select(forecast_steps)
        .where(due_condition(now), where)
        .order_by(steps.next_retry_time.asc().nulls_first(), steps.id)
        .with_for_update(skip_locked=True)
    )
    if limit is not None:
        query = query.limit(limit)
    with engine.begin() as conn:
        rows = conn.execute(query).all()
        if rows:
            conn.execute(
                sa.update(forecast_steps)
                .where(steps.id.in_([r.id for r in rows]))
                .values(
                    status=StepStatus.IN_PROGRESS.value,
                    claimed_by=worker_id,
                    started_at=now,
                    lease_expires_at=now + timedelta(seconds=lease_s),
                    updated_at=now,
                )
            )
    return list(rows)
