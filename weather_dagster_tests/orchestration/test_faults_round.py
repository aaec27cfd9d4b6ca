"""Fault tolerance of a whole round, with a real ``dagster-daemon`` and real runs (issue 6, "must show").

- A round with nothing going wrong gives the reference scores.
- SIGKILL of a ``score_batch_job`` run's processes while a Day1 step is in progress: the code server
  marks the run failed, ``step_failure_sensor`` turns the held step into ``retry_scheduled`` (3 s backoff
  in test mode), ``round_sensor`` requests it again under a new run key, the round completes, and the
  scores equal the reference exactly, one row per natural key.
- A PostgreSQL restart in the middle of Day1 scoring: the round still completes with the same scores.

Each round takes about two minutes; every process is stopped in the fixtures' teardown.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import sqlalchemy as sa

from weather_dagster_tests.support.round_harness import (
    SmallRound,
    duplicate_keys,
    final_scores,
    run_worker_pids,
    sigkill,
    small_round,
)

pytestmark = pytest.mark.faults


def _finish(round_: SmallRound) -> dict:
    status = round_.wait_completed()
    assert status == "completed", round_.tail()
    assert all(not rows for rows in duplicate_keys(round_.engine).values()), duplicate_keys(round_.engine)
    scores = final_scores(round_.engine)
    assert scores["weather_miner_scores"] and scores["weather_forecast_component_scores"]
    keys = round_.run_keys()
    assert len(keys) == len(set(keys)) and any(key.startswith("day1:") for key in keys), keys
    return scores


def _close(a, b) -> bool:
    """Equal, floats to 1e-12 relative (the same computation; only storage round trips may differ)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _assert_same_scores(got: dict, want: dict) -> None:
    for table in want:
        assert sorted(got[table]) == sorted(want[table]), f"{table}: different natural keys"
        different = {key: (got[table][key], v) for key, v in want[table].items() if not _close(got[table][key], v)}
        assert not different, f"{table}: {len(different)} rows differ, e.g. {next(iter(different.items()))}"


@pytest.fixture(scope="module")
def reference_scores(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An undisturbed round with the same settings (SQLite product database)."""
    with small_round(tmp_path_factory.mktemp("undisturbed")) as round_:
        round_.start_daemon()
        round_.open_round()
        return _finish(round_)


def _day1_in_progress(round_: SmallRound) -> list[sa.Row]:
    return round_.query(
        "select miner_uid, dagster_run_id from weather_forecast_steps "
        "where step_name = 'day1' and status = 'in_progress' and dagster_run_id is not null"
    )


def test_sigkill_of_a_scoring_run_is_retried_and_scores_match(reference_scores: dict, tmp_path: Path) -> None:
    with small_round(tmp_path / "round") as round_:
        round_.start_daemon()
        round_.open_round()
        held = round_.wait(lambda: _day1_in_progress(round_), 240, "a Day1 step in progress", every=0.05)
        uid, run_id = held[0]
        with round_.instance() as instance:
            assert instance.get_run_by_id(run_id).job_name == "score_batch_job"
            pids = run_worker_pids(instance, run_id)
            assert pids, "no process recorded for the scoring run"
            killed = sigkill(pids)
            assert killed, f"run {run_id}: its processes {pids} were gone before the kill"
            failed = round_.wait(
                lambda: instance.get_run_by_id(run_id).is_failure and instance.get_run_by_id(run_id), 60, "run failed"
            )
            assert failed.is_failure
        # The step the dead run held is recorded as a failed attempt with a retry time, by the sensor.
        step = round_.wait(
            lambda: round_.query(
                "select status, retry_count, error_json from weather_forecast_steps "
                "where step_name = 'day1' and miner_uid = :uid and retry_count >= 1",
                uid=uid,
            ),
            60,
            "the killed step's retry",
        )
        assert run_id in str(step[0].error_json) or step[0].status == "succeeded", step
        scores = _finish(round_)
        retried = round_.query(
            "select status, retry_count, dagster_run_id from weather_forecast_steps "
            "where step_name = 'day1' and miner_uid = :uid",
            uid=uid,
        )
        assert retried[0].status == "succeeded" and retried[0].retry_count == 1
        assert retried[0].dagster_run_id != run_id
    _assert_same_scores(scores, reference_scores)


@pytest.mark.postgres
def test_postgres_restart_mid_round_completes_with_same_scores(
    reference_scores: dict, tmp_path: Path, pg_server
) -> None:
    url = pg_server.create_database("fault")
    try:
        with small_round(tmp_path / "round", database_url=url) as round_:
            round_.start_daemon()
            round_.open_round()
            round_.wait(lambda: _day1_in_progress(round_), 240, "a Day1 step in progress", every=0.05)
            pg_server.restart()
            scores = _finish(round_)
    finally:
        pg_server.drop_database(url)
    _assert_same_scores(scores, reference_scores)
