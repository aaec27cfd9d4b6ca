"""``retry_on_disconnect``: a unit of work repeated once after a lost connection, and only then."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from weather_dagster.db.engine import retry_on_disconnect


def _failing(invalidated: bool, times: int):
    calls = []

    def work() -> str:
        calls.append(1)
        if len(calls) <= times:
            lost = Exception("server closed the connection")
            raise sa.exc.OperationalError("select 1", {}, lost, connection_invalidated=invalidated)
        return "done"

    return work, calls


def test_a_lost_connection_repeats_the_work_once() -> None:
    work, calls = _failing(invalidated=True, times=1)
    assert retry_on_disconnect(work) == "done" and len(calls) == 2


def test_a_second_loss_is_raised() -> None:
    work, calls = _failing(invalidated=True, times=2)
    with pytest.raises(sa.exc.OperationalError):
        retry_on_disconnect(work)
    assert len(calls) == 2


def test_any_other_database_error_is_raised_at_once() -> None:
    work, calls = _failing(invalidated=False, times=1)
    with pytest.raises(sa.exc.OperationalError):
        retry_on_disconnect(work)
    assert len(calls) == 1
