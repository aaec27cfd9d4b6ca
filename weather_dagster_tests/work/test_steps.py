from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from weather_dagster.core.errors import InvalidDataError, TruthNotAvailable
from weather_dagster.core.states import IllegalTransition, MinerForecastStatus, RoundStatus, StepName, StepStatus
from weather_dagster.db.schema import forecast_runs, forecast_stats, forecast_steps, miner_responses
from weather_dagster.db.steps import StepKey, StepLog
from weather_dagster.work.forecasts import set_miner_status, set_round_status
from weather_dagster_tests.support.helpers import make_response, make_round, table_rows

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtaW5lci0xMjM0NTY3ODkwIn0.aGVsbG8td29ybGQtc2lnbmF0dXJl"


@pytest.fixture
def run_id(database) -> int:
    run_id = make_round(database.engine)
    make_response(database.engine, run_id, 7, "hk7")
    return run_id


def _stats(engine: sa.Engine, uid: int = 7) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(forecast_stats).where(forecast_stats.c.miner_uid == uid)).one()._mapping)


def _calls(steps: StepLog, run_id: int):
    """(setup, call) pairs: each call is legal from the state its setup leaves, on its own key."""
    key = lambda name, lead=0: StepKey(run_id, 7, "hk7", name, lead_hours=lead)  # noqa: E731
    nothing = lambda: None  # noqa: E731
    return [
        (nothing, lambda: steps.ensure_pending(key(StepName.QUERY), due_at=NOW)),
        (nothing, lambda: steps.start(key(StepName.POLL), attempt=2, dagster_run_id="r1", lease_s=60, now=NOW)),
        (
            lambda: steps.start(key(StepName.MANIFEST), now=NOW),
            lambda: steps.succeed(key(StepName.MANIFEST), latency_ms=12.5, now=NOW, context={"hash": "h"}),
        ),
        (
            lambda: steps.start(key(StepName.DAY1), now=NOW),
            lambda: steps.fail(key(StepName.DAY1), InvalidDataError("NaN in 2t"), now=NOW),
        ),
        (
            lambda: steps.start(key(StepName.ERA5, 24), now=NOW),
            lambda: steps.schedule_retry(
                key(StepName.ERA5, 24), ConnectionError("reset"), attempt=1, next_retry_time=NOW, now=NOW
            ),
        ),
        (
            lambda: steps.start(key(StepName.ERA5, 48), now=NOW),
            lambda: steps.wait_for_truth(key(StepName.ERA5, 48), next_check_time=NOW + timedelta(hours=1), now=NOW),
        ),
    ]


def test_replaying_every_call_ten_times_leaves_the_rows_of_one_call(database, steps: StepLog, run_id: int) -> None:
    calls = _calls(steps, run_id)
    for setup, call in calls:
        setup()
        call()
    once_steps = table_rows(database.engine, forecast_steps)
    once_stats = table_rows(database.engine, forecast_stats)
    for _setup, call in calls:
        for _ in range(10):
            call()
    assert table_rows(database.engine, forecast_steps) == once_steps
    assert table_rows(database.engine, forecast_stats) == once_stats
    assert len(once_steps) == 6


def test_transitions_update_stats_in_the_same_transaction(database, steps: StepLog, run_id: int) -> None:
    key = StepKey(run_id, 7, "hk7", StepName.QUERY)
    steps.ensure_pending(key, due_at=NOW)
    steps.start(key, attempt=1, now=NOW)
    stats = _stats(database.engine)
    assert (stats["current_forecast_stage"], stats["current_forecast_status"]) == ("query", "in_progress")
    assert stats["retries_remaining"] == 3

    retry_at = NOW + timedelta(seconds=60)
    steps.schedule_retry(key, ConnectionRefusedError("refused"), attempt=1, next_retry_time=retry_at, now=NOW)
    stats = _stats(database.engine)
    assert stats["current_forecast_status"] == "retry_scheduled"
    assert stats["retries_remaining"] == 2 and stats["next_scheduled_retry"] == retry_at
    assert stats["last_error_message"] == "refused"

    steps.start(key, attempt=2, now=NOW)
    steps.succeed(key, attempt=2, latency_ms=5.0, now=NOW)
    row = steps.get(key)
    assert row.status == "succeeded" and row.retry_count == 1 and row.error_json is None
    assert _stats(database.engine)["current_forecast_status"] == "succeeded"


def test_error_json_is_sanitized(database, steps: StepLog, run_id: int) -> None:
    key = StepKey(run_id, 7, "hk7", StepName.POLL)
    steps.start(key, now=NOW)
    steps.fail(key, RuntimeError(f"401 for Authorization: Bearer {JWT} " + "pad " * 2000), now=NOW)
    row = steps.get(key)
    assert row.error_json["type"] == "RuntimeError"
    assert JWT not in str(row.error_json) and len(row.error_json["message"].encode()) <= 2048
    assert JWT not in str(_stats(database.engine)["last_error_message"])


def test_illegal_step_transitions_raise(steps: StepLog, run_id: int) -> None:
    key = StepKey(run_id, 7, "hk7", StepName.DAY1)
    with pytest.raises(IllegalTransition, match="'\\(no row\\)' -> 'succeeded'"):
        steps.succeed(key, now=NOW)
    steps.start(key, now=NOW)
    steps.succeed(key, now=NOW)
    with pytest.raises(IllegalTransition, match="'succeeded' -> 'in_progress'"):
        steps.start(key, now=NOW)
    with pytest.raises(IllegalTransition, match="'succeeded' -> 'retry_scheduled'"):
        steps.schedule_retry(key, "x", attempt=1, next_retry_time=NOW, now=NOW)


def test_record_failure_applies_the_policy(steps: StepLog, run_id: int) -> None:
    key = StepKey(run_id, 7, "hk7", StepName.ERA5, lead_hours=72)
    steps.start(key, now=NOW)
    decision = steps.record_failure(key, TruthNotAvailable("ERA5T ends before valid time"), attempt=1, now=NOW)
    assert decision.status is StepStatus.WAITING_FOR_TRUTH
    row = steps.get(key)
    assert row.status == "waiting_for_truth" and row.retry_count == 0
    steps.start(key, attempt=1, now=NOW)
    decision = steps.record_failure(key, InvalidDataError("bad shape (10, 10)"), attempt=1, now=NOW)
    assert decision.status is StepStatus.FAILED and steps.get(key).status == "failed"


def test_round_level_steps_use_the_coordinator(database, steps: StepLog, run_id: int) -> None:
    key = StepKey.coordinator(run_id, StepName.REFERENCE_DATA, substep="gfs_analysis")
    steps.start(key, now=NOW)
    steps.succeed(key, now=NOW)
    row = steps.get(key)
    assert (row.miner_uid, row.miner_hotkey) == (-1, "coordinator")
    with pytest.raises(ValueError, match="coordinator"):
        StepKey(run_id, -1, "hk", StepName.QUERY)


def test_round_and_miner_status_machines_are_enforced(database, run_id: int) -> None:
    with database.engine.begin() as conn:
        set_round_status(conn, run_id, RoundStatus.GFS_DOWNLOADING)
        set_miner_status(conn, run_id, 7, "hk7", MinerForecastStatus.FETCH_INITIATED, job_id="j1")
    with pytest.raises(IllegalTransition, match="'gfs_downloading' -> 'completed'"), database.engine.begin() as conn:
        set_round_status(conn, run_id, RoundStatus.COMPLETED)
    with pytest.raises(IllegalTransition, match="'fetch_initiated' -> 'day1_scored'"), database.engine.begin() as conn:
        set_miner_status(conn, run_id, 7, "hk7", MinerForecastStatus.DAY1_SCORED)
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(forecast_runs.c.status)).scalar() == "gfs_downloading"
        assert conn.execute(sa.select(miner_responses.c.job_id)).scalar() == "j1"
    assert _stats(database.engine)["forecast_status"] == "fetch_initiated"


def test_batch_keeps_each_transition_independent(database, steps: StepLog, run_id: int) -> None:
    done = StepKey(run_id, 7, "hk7", StepName.QUERY)
    steps.start(done, now=NOW)
    steps.succeed(done, now=NOW)
    fresh = [StepKey(run_id, 7, "hk7", StepName.ERA5, lead_hours=24 * i) for i in (1, 2)]
    with steps.batch() as batch:
        batch.start(fresh[0], now=NOW)
        with pytest.raises(IllegalTransition):
            batch.start(done, now=NOW)  # illegal: the batch goes on untouched
        batch.start(fresh[1], now=NOW)
        batch.succeed(fresh[1], now=NOW)
    assert [steps.get(k).status for k in fresh] == ["in_progress", "succeeded"]
    assert steps.get(done).status == "succeeded"


def test_a_repeated_write_never_rewrites_a_held_step_or_forecast(database, steps: StepLog, run_id: int) -> None:
    """A second start of a step another run holds takes nothing over; a second fetch_initiated keeps
    the first job id (the guard allowed self-loops, so both used to be overwritten: issue 12)."""
    key = StepKey(run_id, 7, "hk7", StepName.POLL)
    steps.start(key, dagster_run_id="run-1", lease_s=60, now=NOW)
    steps.start(key, dagster_run_id="run-2", lease_s=600, now=NOW + timedelta(seconds=5))
    row = steps.get(key)
    assert (row.dagster_run_id, row.started_at, row.lease_expires_at) == ("run-1", NOW, NOW + timedelta(seconds=60))
    with database.engine.begin() as conn:
        set_miner_status(conn, run_id, 7, "hk7", MinerForecastStatus.FETCH_INITIATED, job_id="job-1")
    with database.engine.begin() as conn:
        set_miner_status(conn, run_id, 7, "hk7", MinerForecastStatus.FETCH_INITIATED, job_id="job-2")
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(miner_responses.c.job_id)).scalar() == "job-1"
