"""The schedule and the round sensor, evaluated in-process against a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from dagster import DagsterInstance, SensorResult, SkipReason, build_schedule_context, build_sensor_context

from weather_dagster.core.states import RoundStatus, StepName
from weather_dagster.dagster_defs.automation import build_sensors, round_schedule, round_status_job
from weather_dagster.db.schema import forecast_runs
from weather_dagster.db.steps import StepKey
from weather_dagster.settings import load_settings
from weather_dagster_tests.support.helpers import make_response, make_round


class AlwaysPublished:
    """Stands in for ``ReferenceData`` in the sensor: only ``era5_available`` is used there."""

    def era5_available(self, valid_time: datetime) -> bool:
        return True


def _seed(database, steps) -> int:
    run_id = make_round(database.engine, init=datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0))
    for uid in (3, 5):
        make_response(database.engine, run_id, uid, f"hk{uid}")
        steps.ensure_pending(StepKey(run_id, uid, f"hk{uid}", StepName.QUERY), due_at=datetime.now(UTC))
    return run_id


def _evaluate(settings, database):
    sensor = build_sensors(settings)[0]
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(
            instance=instance, resources={"settings": settings, "db": database, "reference": AlwaysPublished()}
        )
        return sensor(context)


def test_repeated_ticks_request_the_same_run_keys(database, steps, tmp_path) -> None:
    settings = load_settings(data_dir=tmp_path, database_url=database.url)
    _seed(database, steps)
    first, second = _evaluate(settings, database), _evaluate(settings, database)
    assert isinstance(first, SensorResult)
    keys = [r.run_key for r in first.run_requests]
    assert keys == [r.run_key for r in second.run_requests]
    assert [r.job_name for r in first.run_requests] == ["advance_miners_job"]


def test_dry_run_logs_requests_and_writes_nothing(database, steps, tmp_path) -> None:
    settings = load_settings(data_dir=tmp_path, database_url=database.url, round={"sensor_dry_run": True})
    run_id = _seed(database, steps)
    result = _evaluate(settings, database)
    assert isinstance(result, SkipReason)
    assert "dry run" in result.skip_message and "advance_miners_job for 2 steps" in result.skip_message
    with database.engine.connect() as conn:
        # Not even the round's status bookkeeping moved.
        assert conn.execute(sa.select(forecast_runs.c.status).where(forecast_runs.c.id == run_id)).scalar() == "created"


def test_schedule_opens_one_round_per_cycle() -> None:
    settings = load_settings(round={"trigger_jitter_max_minutes": 0})
    requests = []
    for minutes in (0, 5, 10, 300):
        when = datetime(2026, 11, 20, 18, tzinfo=UTC) + timedelta(minutes=minutes)
        context = build_schedule_context(scheduled_execution_time=when, resources={"settings": settings})
        requests.append(round_schedule(context))
    assert {r.run_key for r in requests} == {"round:2026-11-20T00"}
    assert {r.partition_key for r in requests} == {"2026-11-20"}
    early = build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 20, 17, 55, tzinfo=UTC), resources={"settings": settings}
    )
    assert isinstance(round_schedule(early), SkipReason)


def test_an_expired_round_is_expired_by_a_run_the_sensor_requests(database, steps, tmp_path) -> None:
    settings = load_settings(data_dir=tmp_path, database_url=database.url)
    init = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=40)
    run_id = make_round(database.engine, init=init, status=RoundStatus.QUERYING_MINERS)
    result = _evaluate(settings, database)
    assert isinstance(result, SensorResult)
    (request,) = [r for r in result.run_requests if r.job_name == "round_status_job"]
    assert request.run_key == f"status:expire:{run_id}"
    assert _status(database, run_id) == "querying_miners"  # the sensor itself wrote nothing
    with DagsterInstance.ephemeral() as instance:
        outcome = round_status_job.execute_in_process(
            run_config=request.run_config, instance=instance, resources={"settings": settings, "db": database}
        )
    assert outcome.success and _status(database, run_id) == "expired"
    assert isinstance(_evaluate(settings, database), SkipReason)  # nothing left to do for it


def _status(database, run_id: int) -> str:
    with database.engine.connect() as conn:
        return conn.execute(sa.select(forecast_runs.c.status).where(forecast_runs.c.id == run_id)).scalar_one()
