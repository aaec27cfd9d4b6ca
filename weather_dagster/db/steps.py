"""The step log: every unit of work's state, written as idempotent upserts on its natural key.

Each call moves one step row (SPEC section 3, ``weather_forecast_steps``) through the step state
machine and, in the same transaction, refreshes the miner's row in ``weather_forecast_stats`` (stage,
status, last error, retries remaining, next retry), so the two can never disagree.

Idempotence: a call repeated with the same arguments leaves exactly the rows one call leaves. A
call whose target state is not reachable from the stored state raises ``IllegalTransition``.
Callers pass ``attempt`` explicitly (the claim returns it), never "increment", for the same reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from weather_dagster.core.errors import sanitize_error
from weather_dagster.core.retry import STEP_WORK_KIND, RetryDecision, RetryPolicy, WorkKind
from weather_dagster.core.states import IllegalTransition, StepName, StepStatus, predecessors
from weather_dagster.db.schema import COORDINATOR_HOTKEY, COORDINATOR_UID, forecast_runs, forecast_stats, forecast_steps
from weather_dagster.db.types import utcnow
from weather_dagster.db.upsert import insert_for

MAX_CONTEXT_BYTES = 16 * 1024


@dataclass(frozen=True)
class StepKey:
    """The natural key of a step row; round-level steps use the coordinator pseudo-miner."""

    run_id: int
    miner_uid: int
    miner_hotkey: str
    step_name: StepName
    substep: str = ""
    lead_hours: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "step_name", StepName(self.step_name))
        if self.miner_uid == COORDINATOR_UID and self.miner_hotkey != COORDINATOR_HOTKEY:
            raise ValueError(f"round-level steps use miner_hotkey {COORDINATOR_HOTKEY!r}")
        if not self.miner_hotkey:
            raise ValueError("miner_hotkey must not be empty")

    @classmethod
    def coordinator(cls, run_id: int, step_name: StepName, substep: str = "", lead_hours: int = 0) -> StepKey:
        return cls(run_id, COORDINATOR_UID, COORDINATOR_HOTKEY, step_name, substep, lead_hours)

    @property
    def is_miner_step(self) -> bool:
        return self.miner_uid != COORDINATOR_UID

    @property
    def stage(self) -> str:
        return f"{self.step_name}:{self.lead_hours}h" if self.lead_hours else str(self.step_name)

    def as_values(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "miner_uid": self.miner_uid,
            "miner_hotkey": self.miner_hotkey,
            "step_name": str(self.step_name),
            "substep": self.substep,
            "lead_hours": self.lead_hours,
        }

    def where(self, table: sa.Table = forecast_steps) -> sa.ColumnElement[bool]:
        return sa.and_(*(table.c[name] == value for name, value in self.as_values().items()))


def _bounded_context(context: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if context is None:
        return None
    text = json.dumps(context, default=str, sort_keys=True)
    if len(text.encode()) > MAX_CONTEXT_BYTES:
        return {"truncated": True, "keys": sorted(context)[:50]}
    return json.loads(text)


class StepLog:
    """Writes step transitions; one instance per process, sharing the engine and the retry policy."""

    def __init__(self, engine: sa.Engine, policy: RetryPolicy) -> None:
        self.engine = engine
        self.policy = policy

    # -- public transitions -------------------------------------------------------------------

    def ensure_pending(
        self, key: StepKey, *, due_at: datetime | None = None, context: Mapping[str, Any] | None = None
    ) -> None:
        """Seed a step as pending (due at ``due_at``) unless it exists already, whatever its state."""
        now = utcnow()
        values = {
            **key.as_values(),
            "status": StepStatus.PENDING.value,
            "retry_count": 0,
            "next_retry_time": due_at,
            "context": _bounded_context(context),
            "created_at": now,
            "updated_at": now,
        }
        with self.engine.begin() as conn:
            conn.execute(insert_for(conn, forecast_steps).values(**values).on_conflict_do_nothing())

    def start(
        self,
        key: StepKey,
        *,
        attempt: int = 1,
        dagster_run_id: str | None = None,
        lease_s: float | None = None,
        now: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
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
            fields["context"] = _bounded_context(context)
        self._transition(key, StepStatus.IN_PROGRESS, fields, now, last_error=None)

    def succeed(
        self,
        key: StepKey,
        *,
        attempt: int = 1,
        latency_ms: float | None = None,
        now: datetime | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
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
            fields["context"] = _bounded_context(context)
        self._transition(key, StepStatus.SUCCEEDED, fields, now, last_error=None)

    def fail(self, key: StepKey, error: BaseException | str, *, attempt: int = 1, now: datetime | None = None) -> None:
        now = now or utcnow()
        error_json = sanitize_error(error)
        fields = {
            "completed_at": now,
            "retry_count": attempt,
            "next_retry_time": None,
            "lease_expires_at": None,
            "error_json": error_json,
        }
        self._transition(key, StepStatus.FAILED, fields, now, last_error=error_json["message"])

    def schedule_retry(
        self,
        key: StepKey,
        error: BaseException | str,
        *,
        attempt: int,
        next_retry_time: datetime,
        now: datetime | None = None,
    ) -> None:
        now = now or utcnow()
        error_json = sanitize_error(error)
        fields = {
            "retry_count": attempt,
            "next_retry_time": next_retry_time,
            "lease_expires_at": None,
            "error_json": error_json,
        }
        self._transition(key, StepStatus.RETRY_SCHEDULED, fields, now, last_error=error_json["message"])

    def wait_for_truth(
        self, key: StepKey, *, next_check_time: datetime, reason: str = "truth not available yet", now=None
    ) -> None:
        """Park a step until truth should exist; not an attempt, so ``retry_count`` is unchanged."""
        now = now or utcnow()
        fields = {
            "next_retry_time": next_check_time,
            "lease_expires_at": None,
            "context": {"waiting_for": reason},
        }
        self._transition(key, StepStatus.WAITING_FOR_TRUTH, fields, now, last_error=None)

    def record_failure(
        self, key: StepKey, error: BaseException, *, attempt: int, now: datetime | None = None, **decide_kwargs
    ) -> RetryDecision:
        """Apply the retry policy to a failed attempt and write the resulting transition."""
        now = now or utcnow()
        kind = self.policy_kind(key)
        decision = self.policy.decide(kind, error, attempt, now, **decide_kwargs)
        if decision.status is StepStatus.WAITING_FOR_TRUTH:
            self.wait_for_truth(key, next_check_time=decision.next_retry_time, reason=str(error)[:200], now=now)
        elif decision.status is StepStatus.RETRY_SCHEDULED:
            self.schedule_retry(key, error, attempt=attempt, next_retry_time=decision.next_retry_time, now=now)
        else:
            self.fail(key, error, attempt=attempt, now=now)
        return decision

    def policy_kind(self, key: StepKey) -> WorkKind:
        return STEP_WORK_KIND[key.step_name]

    def get(self, key: StepKey) -> sa.Row | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(forecast_steps).where(key.where())).one_or_none()

    # -- internals --------------------------------------------------------------------------------

    def _transition(
        self,
        key: StepKey,
        target: StepStatus,
        fields: dict[str, Any],
        now: datetime,
        *,
        last_error: str | None,
    ) -> None:
        allowed_from = sorted(predecessors("step", target))
        with self.engine.begin() as conn:
            changed = apply_step_transition(conn, key, target, fields, now, allowed_from)
            if not changed:
                current = conn.execute(sa.select(forecast_steps.c.status).where(key.where())).scalar_one_or_none()
                raise IllegalTransition("step", current or "(no row)", target)
            if key.is_miner_step:
                retry_count = fields.get("retry_count")
                if retry_count is None:
                    retry_count = conn.execute(sa.select(forecast_steps.c.retry_count).where(key.where())).scalar_one()
                refresh_stats_for_step(
                    conn,
                    key,
                    target,
                    now,
                    retries_remaining=max(0, self.policy.attempts_for(key.step_name) - retry_count),
                    next_retry=fields.get("next_retry_time"),
                    last_error=last_error,
                )


def apply_step_transition(
    conn: sa.Connection,
    key: StepKey,
    target: StepStatus,
    fields: dict[str, Any],
    now: datetime,
    allowed_from: list[str],
) -> bool:
    """One statement: upsert the row if its stored status may move to ``target``. False if not."""
    values = {**key.as_values(), "status": target.value, **fields, "updated_at": now}
    guard = forecast_steps.c.status.in_(allowed_from)
    if StepStatus.PENDING.value in allowed_from:
        # A missing row counts as pending: insert it directly in the target state.
        stmt = insert_for(conn, forecast_steps).values(**values, created_at=now)
        update_cols = {k: stmt.excluded[k] for k in values if k not in key.as_values()}
        stmt = stmt.on_conflict_do_update(
            index_elements=list(key.as_values()), set_=update_cols, where=guard
        ).returning(forecast_steps.c.id)
        return conn.execute(stmt).first() is not None
    result = conn.execute(sa.update(forecast_steps).where(key.where(), guard).values(**values))
    return result.rowcount == 1


def refresh_stats_for_step(
    conn: sa.Connection,
    key: StepKey,
    status: StepStatus,
    now: datetime,
    *,
    retries_remaining: int | None,
    next_retry: datetime | None,
    last_error: str | None,
) -> None:
    """Keep the miner's stats row (SPEC ``weather_forecast_stats``) in step with its latest step."""
    values: dict[str, Any] = {
        "current_forecast_stage": key.stage,
        "current_forecast_status": status.value,
        "retries_remaining": retries_remaining,
        "next_scheduled_retry": next_retry,
        "updated_at": now,
    }
    if last_error is not None:
        values["last_error_message"] = last_error
    init_time = sa.select(forecast_runs.c.gfs_init_time_utc).where(forecast_runs.c.id == key.run_id).scalar_subquery()
    stmt = insert_for(conn, forecast_stats).values(
        run_id=key.run_id,
        miner_uid=key.miner_uid,
        miner_hotkey=key.miner_hotkey,
        forecast_init_time=init_time,
        forecast_status="created",
        created_at=now,
        **values,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["run_id", "miner_uid", "miner_hotkey"], set_={k: stmt.excluded[k] for k in values}
    )
    conn.execute(stmt)
