"""The step log: every unit of work's state, written as idempotent upserts on its natural key.

Each call moves one step row (SPEC section 3, ``weather_forecast_steps``) through the step state
machine and, in the same transaction, refreshes the miner's row in ``weather_forecast_stats`` (stage,
status, last error, retries remaining, next retry), so the two can never disagree.

Idempotence: a call repeated with the same arguments leaves exactly the rows one call leaves. A
call whose target state is not reachable from the stored state raises ``IllegalTransition``.
Callers pass ``attempt`` explicitly (the claim returns it), never "increment", for the same reason.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

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

    def __init__(self, engine: sa.Engine, policy: RetryPolicy, *, connection: sa.Connection | None = None) -> None:
        self.engine = engine
        self.policy = policy
        self._connection = connection

    @contextlib.contextmanager
    def batch(self) -> Iterator[StepLog]:
        """Many transitions in one transaction (e.g. a polling run recording 255 outcomes).

        Each transition is still guarded on its own: an illegal one raises without touching the
        database state (the guard just matches no row), so the caller may catch it and go on.
        """
        if self._connection is not None:
            yield self
            return
        with self.engine.begin() as conn:
            yield StepLog(self.engine, self.policy, connection=conn)

    def _begin(self) -> contextlib.AbstractContextManager[sa.Connection]:
        if self._connection is not None:
            return contextlib.nullcontext(self._connection)
        return self.engine.begin()

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
        with self._begin() as conn:
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
        allowed_from = tuple(sorted(predecessors("step", target)))
        step_values = {**key.as_values(), "status": target.value, **fields, "updated_at": now}
        stats_values = _stats_values(key, target, now, fields.get("next_retry_time"), last_error)
        max_attempts = self.policy.attempts_for(key.step_name)
        with self._begin() as conn:
            if conn.dialect.name == "postgresql" and key.is_miner_step:
                # One round trip: the step upsert and the stats update as data-modifying CTEs.
                stmt, params = _combined_statement(key, step_values, stats_values, allowed_from, max_attempts)
                step_id, stats_rows = conn.execute(stmt, params).one()
                if step_id is None:
                    self._raise_illegal(conn, key, target)
                if stats_rows:
                    return
            stmt, params = _step_statement(conn.dialect.name, key, step_values, allowed_from)
            row = conn.execute(stmt, params).first()
            if row is None:
                self._raise_illegal(conn, key, target)
            if key.is_miner_step:
                stats_values["retries_remaining"] = max(0, max_attempts - row.retry_count)
                refresh_stats(conn, key, stats_values, now)

    @staticmethod
    def _raise_illegal(conn: sa.Connection, key: StepKey, target: StepStatus) -> None:
        current = conn.execute(sa.select(forecast_steps.c.status).where(key.where())).scalar_one_or_none()
        raise IllegalTransition("step", current or "(no row)", target)


_KEY_COLUMNS = ("run_id", "miner_uid", "miner_hotkey", "step_name", "substep", "lead_hours")
_STATS_KEY = ("run_id", "miner_uid", "miner_hotkey")


@functools.lru_cache(maxsize=128)
def _step_upsert(dialect: str, columns: tuple[str, ...], allowed_from: tuple[str, ...]) -> sa.Executable:
    """Built once per shape: rebuilding ``ON CONFLICT`` statements per call cost more than the SQL."""
    table = forecast_steps
    stmt = (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)).values(
        {name: sa.bindparam(f"v_{name}") for name in columns}
    )
    return stmt.on_conflict_do_update(
        index_elements=list(_KEY_COLUMNS),
        set_={name: stmt.excluded[name] for name in columns if name not in _KEY_COLUMNS and name != "created_at"},
        where=table.c.status.in_(allowed_from),
    ).returning(table.c.id, table.c.retry_count)


@functools.lru_cache(maxsize=128)
def _step_update(columns: tuple[str, ...], allowed_from: tuple[str, ...]) -> sa.Executable:
    table = forecast_steps
    return (
        sa.update(table)
        .where(*(table.c[k] == sa.bindparam(f"key_{k}") for k in _KEY_COLUMNS), table.c.status.in_(allowed_from))
        .values({name: sa.bindparam(f"v_{name}") for name in columns if name not in _KEY_COLUMNS})
        .returning(table.c.id, table.c.retry_count)
    )


@functools.lru_cache(maxsize=32)
def _stats_update(columns: tuple[str, ...]) -> sa.Executable:
    table = forecast_stats
    return (
        sa.update(table)
        .where(*(table.c[k] == sa.bindparam(f"key_{k}") for k in _STATS_KEY))
        .values({name: sa.bindparam(name) for name in columns})
    )


@functools.lru_cache(maxsize=32)
def _stats_insert(dialect: str, columns: tuple[str, ...]) -> sa.Executable:
    table = forecast_stats
    init_time = (
        sa.select(forecast_runs.c.gfs_init_time_utc)
        .where(forecast_runs.c.id == sa.bindparam("run_id"))
        .scalar_subquery()
    )
    stmt = (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)).values(
        {**{name: sa.bindparam(name) for name in columns}, "forecast_init_time": init_time}
    )
    return stmt.on_conflict_do_nothing()


def _stats_values(
    key: StepKey, status: StepStatus, now: datetime, next_retry: datetime | None, last_error: str | None
) -> dict[str, Any]:
    """What a step transition tells the miner's stats row (SPEC ``weather_forecast_stats``)."""
    values: dict[str, Any] = {
        "current_forecast_stage": key.stage,
        "current_forecast_status": status.value,
        "next_scheduled_retry": next_retry,
        "updated_at": now,
    }
    if last_error is not None:
        values["last_error_message"] = last_error
    return values


def _step_statement(
    dialect: str, key: StepKey, values: dict[str, Any], allowed_from: tuple[str, ...]
) -> tuple[sa.Executable, dict[str, Any]]:
    """The guarded step write: an upsert when a missing row may count as pending, else an update."""
    # Parameters are prefixed: an UPDATE compiled beside them treats any parameter named like one of its
    # columns as a SET value, which would corrupt the combined PostgreSQL statement.
    if StepStatus.PENDING.value in allowed_from:
        values = {**values, "created_at": values["updated_at"]}
        return _step_upsert(dialect, tuple(values), allowed_from), {f"v_{k}": v for k, v in values.items()}
    params = {**{f"v_{k}": v for k, v in values.items()}, **{f"key_{k}": v for k, v in key.as_values().items()}}
    return _step_update(tuple(values), allowed_from), params


def _stats_params(key: StepKey, values: dict[str, Any]) -> dict[str, Any]:
    return {
        **values,
        "key_run_id": key.run_id,
        "key_miner_uid": key.miner_uid,
        "key_miner_hotkey": key.miner_hotkey,
    }


def refresh_stats(conn: sa.Connection, key: StepKey, values: dict[str, Any], now: datetime) -> None:
    """Update the miner's stats row; the round seeds it, so insert only when it is missing."""
    params = _stats_params(key, values)
    if conn.execute(_stats_update(tuple(values)), params).rowcount:
        return
    row = {
        "run_id": key.run_id,
        "miner_uid": key.miner_uid,
        "miner_hotkey": key.miner_hotkey,
        "forecast_status": "created",
        "created_at": now,
        "updated_at": now,
    }
    conn.execute(_stats_insert(conn.dialect.name, tuple(row)), row)
    conn.execute(_stats_update(tuple(values)), params)


def _combined_statement(
    key: StepKey,
    step_values: dict[str, Any],
    stats_values: dict[str, Any],
    allowed_from: tuple[str, ...],
    max_attempts: int,
) -> tuple[sa.Executable, dict[str, Any]]:
    stmt, params = _step_statement("postgresql", key, step_values, allowed_from)
    stats_params = {f"s_{k}": v for k, v in _stats_params(key, stats_values).items()}
    combined = _combined(stmt, tuple(stats_values))
    return combined, {**params, **stats_params, "s_max_attempts": max_attempts}


@functools.lru_cache(maxsize=128)
def _combined(step_stmt: sa.Executable, stats_columns: tuple[str, ...]) -> sa.Executable:
    step = step_stmt.cte("step")
    table = forecast_stats
    stats = (
        sa.update(table)
        .where(
            *(table.c[k] == sa.bindparam(f"s_key_{k}") for k in _STATS_KEY),
            sa.exists(sa.select(step.c.id)),
        )
        .values(
            {
                **{name: sa.bindparam(f"s_{name}") for name in stats_columns},
                "retries_remaining": sa.func.greatest(
                    0,
                    sa.bindparam("s_max_attempts", type_=sa.Integer) - sa.select(step.c.retry_count).scalar_subquery(),
                ),
            }
        )
        .returning(table.c.id)
        .cte("stats")
    )
    return sa.select(
        sa.select(step.c.id).scalar_subquery().label("step_id"),
        sa.select(sa.func.count()).select_from(stats).scalar_subquery().label("stats_rows"),
    )
