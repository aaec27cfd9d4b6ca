"""``StepLog``: the work layer's step operations for callers that hold an engine, not a connection.

Each method runs one operation of ``weather_dagster.work`` in its own transaction, or in the batch's
(``with steps.batch() as b:``) when several outcomes must commit together. The rules (guard, replay,
stats, sanitising) live in the work layer; nothing here decides anything. ``StepKey`` is re-exported
from ``work.keys`` for the callers that import it from here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from weather_dagster import work
from weather_dagster.core.retry import RetryDecision, RetryPolicy, WorkKind
from weather_dagster.work.keys import StepKey
from weather_dagster.work.stepsql import MAX_CONTEXT_BYTES, refresh_stats

__all__ = ["MAX_CONTEXT_BYTES", "StepKey", "StepLog", "refresh_stats"]


class StepLog:
    """One instance per process, sharing the engine and the retry policy."""

    def __init__(self, engine: sa.Engine, policy: RetryPolicy, *, connection: sa.Connection | None = None) -> None:
        self.engine = engine
        self.policy = policy
        self._connection = connection

    @contextlib.contextmanager
    def batch(self) -> Iterator[StepLog]:
        """Many operations in one transaction (e.g. a polling run recording 255 outcomes).

        Each is still guarded on its own: an illegal one raises without touching the database state
        (the guard just matches no row), so the caller may catch it and go on.
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

    def ensure_pending(
        self, key: StepKey, *, due_at: datetime | None = None, context: Mapping[str, Any] | None = None
    ) -> bool:
        with self._begin() as conn:
            return work.ensure_pending(conn, key, due_at=due_at, context=context)

    def start(self, key: StepKey, **kwargs: Any) -> bool:
        with self._begin() as conn:
            return work.start(conn, self.policy, key, **kwargs)

    def succeed(self, key: StepKey, **kwargs: Any) -> bool:
        with self._begin() as conn:
            return work.succeed(conn, self.policy, key, **kwargs)

    def fail(self, key: StepKey, error: BaseException | str, **kwargs: Any) -> bool:
        with self._begin() as conn:
            return work.fail(conn, self.policy, key, error, **kwargs)

    def schedule_retry(self, key: StepKey, error: BaseException | str, **kwargs: Any) -> bool:
        with self._begin() as conn:
            return work.schedule_retry(conn, self.policy, key, error, **kwargs)

    def wait_for_truth(self, key: StepKey, **kwargs: Any) -> bool:
        with self._begin() as conn:
            return work.wait_for_truth(conn, self.policy, key, **kwargs)

    def record_failure(self, key: StepKey, error: BaseException, **kwargs: Any) -> RetryDecision:
        with self._begin() as conn:
            return work.record_failure(conn, self.policy, key, error, **kwargs)

    def retry_now(self, key: StepKey, **kwargs: Any) -> bool:
        with self._begin() as conn:
            return work.retry_now(conn, key, **kwargs)

    def policy_kind(self, key: StepKey) -> WorkKind:
        return self.policy.kind_of(key.step_name)

    def get(self, key: StepKey) -> sa.Row | None:
        if self._connection is not None:
            return work.get(self._connection, key)
        with self.engine.connect() as conn:
            return work.get(conn, key)
