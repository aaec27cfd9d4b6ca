"""Idempotence of the round's automation, in process (issue 6, "must show").

- The same ``round_sensor`` tick evaluated twice (as the daemon evaluates it, through ``evaluate_tick``
  with an instance ref) requests the same run keys with the same config.
- A run of a kind that failed before it held any step changes the next key (else Dagster would skip
  the identical key forever and the round would stall).
- A manual materialization of a ``day1_score`` partition overlapping a sensor-style ``score_batch_job``
  for the same miner leaves one row per natural key and the same scores as a single scoring.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, DagsterRunStatus, build_sensor_context, materialize

from weather_dagster.dagster_defs.partitions import miner_round_key
from weather_dagster.dagster_defs.pools import KIND_TAG, ROUND_TAG
from weather_dagster.dagster_defs.scoring_assets import day1_score
from weather_dagster.dagster_defs.scoring_batch import score_batch_job
from weather_dagster.db.schema import component_scores, forecast_steps, miner_scores
from weather_dagster.definitions import build_definitions
from weather_dagster.reference.grid import Grid
from weather_dagster.settings import load_settings
from weather_dagster_tests.scoring.test_scoring_dagster import PROFILES, seed
from weather_dagster_tests.support.helpers import table_rows
from weather_dagster_tests.support.synthetic_scoring import SyntheticScoringInputs

GRID = Grid(4.0)


class NoTruthYet:
    """Stands in for the reference resource in sensor ticks: no ERA5 yet, and no network traffic."""

    def era5_available(self, valid_time: datetime) -> bool:
        return False


@pytest.fixture
def seeded(tmp_path, db_url, database):
    settings = load_settings(data_dir=tmp_path / "data", database_url=db_url, test_mode=True)
    init = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=12)
    inputs = SyntheticScoringInputs(GRID, profiles=PROFILES)
    run_id = seed(database.engine, init, inputs)
    defs = build_definitions(settings, database, scoring_inputs=inputs)
    (tmp_path / "dagster").mkdir()
    with DagsterInstance.local_temp(tempdir=str(tmp_path / "dagster")) as instance:
        instance.add_dynamic_partitions("miner", [str(uid) for uid in PROFILES])
        yield settings, database, defs, instance, init, run_id


def _tick(defs, instance: DagsterInstance):
    resources = {**defs.resources, "reference": NoTruthYet()}
    context = build_sensor_context(instance_ref=instance.get_ref(), definitions=defs, resources=resources)
    return defs.get_sensor_def("round_sensor").evaluate_tick(context)


def _requests(result) -> list[tuple[str, str, dict]]:
    return sorted((r.run_key, r.job_name, r.run_config) for r in result.run_requests)


def test_same_tick_twice_requests_the_same_run_keys(seeded) -> None:
    _settings, _database, defs, instance, init, run_id = seeded
    first, second = _requests(_tick(defs, instance)), _requests(_tick(defs, instance))
    assert first == second
    assert [job for _key, job, _config in first] == ["score_batch_job"]
    key, _job, config = first[0]
    assert key.startswith(f"day1:{init:%Y-%m-%d}:")
    assert config["ops"]["score_batch"]["config"] == {
        "run_id": run_id,
        "date": f"{init:%Y-%m-%d}",
        "kind": "day1",
        "uids": sorted(PROFILES),
    }


def test_a_run_that_died_before_holding_a_step_gets_a_new_key(seeded) -> None:
    _settings, _database, defs, instance, init, _run_id = seeded
    (before,) = _requests(_tick(defs, instance))
    # The run for that key died before it wrote a step row: the due work is exactly the same.
    from dagster._core.test_utils import create_run_for_test

    create_run_for_test(
        instance,
        job_name=score_batch_job.name,
        status=DagsterRunStatus.FAILURE,
        tags={ROUND_TAG: f"{init:%Y-%m-%d}", KIND_TAG: "day1", "dagster/run_key": before[0]},
    )
    (after,) = _requests(_tick(defs, instance))
    assert after[0] != before[0] and after[0].startswith(before[0])
    assert after[2] == before[2]
    assert _requests(_tick(defs, instance)) == [after]  # and stable again from then on


def _scores(engine: sa.Engine) -> dict[str, list[dict]]:
    volatile = {"id", "calculation_time", "calculation_duration_ms"}
    return {
        table.name: sorted(
            ({k: v for k, v in row.items() if k not in volatile} for row in table_rows(engine, table)),
            key=repr,
        )
        for table in (miner_scores, component_scores)
    }


def _natural_key_counts(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(
                miner_scores.c.miner_uid,
                miner_scores.c.score_type,
                miner_scores.c.lead_hours,
                miner_scores.c.variable,
                sa.func.count(),
            )
            .group_by(
                miner_scores.c.miner_uid, miner_scores.c.score_type, miner_scores.c.lead_hours, miner_scores.c.variable
            )
            .having(sa.func.count() > 1)
        ).all()


def test_manual_day1_materialization_overlapping_a_batch_leaves_one_set_of_scores(seeded) -> None:
    _settings, database, defs, instance, init, run_id = seeded
    date = f"{init:%Y-%m-%d}"
    config = {"ops": {"score_batch": {"config": {"run_id": run_id, "date": date, "kind": "day1", "uids": [1, 2]}}}}
    job = defs.get_job_def(score_batch_job.name)
    results: dict[str, object] = {}

    def batch() -> None:
        results["batch"] = job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)

    def manual() -> None:
        results["manual"] = materialize(
            [day1_score],
            partition_key=miner_round_key(date, 1),
            resources=defs.resources,
            instance=instance,
            raise_on_error=False,
        )

    threads = [threading.Thread(target=batch), threading.Thread(target=manual)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results["batch"].success and results["manual"].success
    overlapped = _scores(database.engine)
    assert not _natural_key_counts(database.engine)
    with database.engine.connect() as conn:
        day1 = conn.execute(
            sa.select(forecast_steps.c.miner_uid, forecast_steps.c.status, forecast_steps.c.retry_count).where(
                forecast_steps.c.step_name == "day1"
            )
        ).all()
    assert sorted(day1) == [(1, "succeeded", 0), (2, "succeeded", 0)]

    # Materializing the same partition again (a backfill) scores nothing twice and changes nothing.
    again = materialize(
        [day1_score], partition_key=miner_round_key(date, 1), resources=defs.resources, instance=instance
    )
    assert again.success
    assert _scores(database.engine) == overlapped
    uids = {row["miner_uid"] for row in overlapped["weather_miner_scores"]}
    assert uids == {1, 2}


def test_a_dropped_connection_while_writing_scores_fails_the_run_and_the_step_is_retried(seeded) -> None:
    """The database connection breaks between scoring and the write (a server restart): the step must
    not stay in_progress under a successful run; the run fails, the failure sensor schedules the retry,
    and the next run scores it once."""
    from dagster import DagsterEventType, build_run_status_sensor_context

    settings, database, defs, instance, init, run_id = seeded
    date = f"{init:%Y-%m-%d}"
    config = {"ops": {"score_batch": {"config": {"run_id": run_id, "date": date, "kind": "day1", "uids": [1, 2]}}}}
    job = defs.get_job_def(score_batch_job.name)
    engine = database.engine
    broken = []

    def drop_once(conn, cursor, statement, parameters, context, executemany) -> None:
        if not broken and "weather_miner_scores" in statement and statement.lstrip().upper().startswith("INSERT"):
            broken.append(statement)
            raise sa.exc.OperationalError(statement, parameters, ConnectionError("server closed the connection"))

    sa.event.listen(engine, "before_cursor_execute", drop_once)
    try:
        first = job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)
    finally:
        sa.event.remove(engine, "before_cursor_execute", drop_once)
    assert broken and not first.success

    def day1_steps() -> dict[int, tuple]:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    forecast_steps.c.miner_uid,
                    forecast_steps.c.status,
                    forecast_steps.c.retry_count,
                    forecast_steps.c.dagster_run_id,
                ).where(forecast_steps.c.step_name == "day1")
            ).all()
        return {row.miner_uid: tuple(row[1:]) for row in rows}

    assert day1_steps() == {1: ("in_progress", 0, first.run_id), 2: ("succeeded", 0, first.run_id)}

    # What the daemon does next: the run-failure sensor turns the held step into a retry.
    failure = next(e for e in instance.all_logs(first.run_id) if e.dagster_event_type == DagsterEventType.RUN_FAILURE)
    sensor_context = build_run_status_sensor_context(
        sensor_name="step_failure_sensor",
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(first.run_id),
        resources={"settings": settings, "db": database},
    ).for_run_failure()
    defs.get_sensor_def("step_failure_sensor")(sensor_context)
    assert day1_steps()[1][:2] == ("retry_scheduled", 1)

    second = job.execute_in_process(run_config=config, instance=instance)
    assert second.success
    assert day1_steps() == {1: ("succeeded", 1, second.run_id), 2: ("succeeded", 0, first.run_id)}
    assert not _natural_key_counts(engine)
    assert {row["miner_uid"] for row in table_rows(engine, miner_scores)} == {1, 2}
