"""Operator actions on a real round: each does its work once, is a no-op when repeated, and is recorded
in the step log; the Dagster jobs the UI launches run the same functions."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from weather_dagster.dagster_defs.operator_jobs import operator_retry_step_job, operator_rollups_job
from weather_dagster.db.engine import Database
from weather_dagster.db.schema import (
    COORDINATOR_UID,
    forecast_steps,
    miner_responses,
    miner_scores,
    round_scores,
    weight_sets,
    weights,
)
from weather_dagster.db.types import utcnow
from weather_dagster.miners.demo.fleet import DemoFleet
from weather_dagster.operator.actions import cancel_miner, rerun_rollups, retry_step_now, score_round
from weather_dagster.operator.demo_env import OperatorInputError
from weather_dagster.operator.explain import explain_miner
from weather_dagster.stats.weights import DatabaseWeightPublisher
from weather_dagster_tests.support.operator_round import (
    FAILED,
    SCORED,
    WAITING,
    OperatorRound,
    build_round,
    operator_settings,
    start_fleet,
)


@pytest.fixture(scope="module")
def fleet() -> Iterator[DemoFleet]:
    with start_fleet() as running:
        yield running


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def built(request, fleet: DemoFleet, tmp_path_factory) -> Iterator[tuple[OperatorRound, Database]]:
    tmp = tmp_path_factory.mktemp(f"actions-{request.param}")
    url = f"sqlite:///{tmp / 'weather.db'}" if request.param == "sqlite" else None
    url = url or request.getfixturevalue("pg_server").create_database()
    database = Database(url)
    try:
        yield build_round(operator_settings(tmp, url, fleet), database.engine, score_waiting=False), database
    finally:
        database.dispose()


def _rows(engine: sa.Engine, table: sa.Table, *where) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(table).where(*where))]


def _recorded(engine: sa.Engine, action: str) -> list[dict]:
    s = forecast_steps.c
    return _rows(engine, forecast_steps, s.miner_uid == COORDINATOR_UID, s.substep.like(f"operator:{action}:%"))


def _values(rows: list[dict], *drop: str) -> list[str]:
    return sorted(json.dumps({k: v for k, v in r.items() if k not in drop}, sort_keys=True, default=str) for r in rows)


# The tests of one backend share its round and run in file order: score, retry, cancel, rollups.


def test_score_round_backfills_the_ready_forecast_once(built) -> None:
    rnd, _ = built
    before = _rows(rnd.engine, miner_scores, miner_scores.c.miner_uid == WAITING)
    assert before == []
    ready = explain_miner(rnd.engine, rnd.settings, rnd.date, WAITING)
    assert ready.status == "forecast_ready" and ready.next_up.startswith("day1: due now: the forecast is ready")
    first = score_round(rnd.engine, rnd.settings, rnd.inputs, rnd.date)
    assert first.changed, first
    scored = _rows(rnd.engine, miner_scores, miner_scores.c.miner_uid == WAITING, miner_scores.c.variable == "")
    assert sorted((r["score_type"], r["lead_hours"]) for r in scored) == [("day1", 0), ("era5", 24), ("era5", 48)]
    all_scores = _rows(rnd.engine, miner_scores)
    again = score_round(rnd.engine, rnd.settings, rnd.inputs, rnd.date)
    assert not again.changed, again
    assert _values(_rows(rnd.engine, miner_scores), "id") == _values(all_scores, "id")
    (record,) = _recorded(rnd.engine, "score")
    assert record["status"] == "succeeded" and record["context"]["operator_action"] == "score"


def test_retry_now_makes_the_waiting_lead_due_and_refuses_a_failed_step(built) -> None:
    rnd, _ = built
    lead = _rows(
        rnd.engine,
        forecast_steps,
        forecast_steps.c.miner_uid == WAITING,
        forecast_steps.c.step_name == "era5",
        forecast_steps.c.lead_hours == 72,
    )[0]
    assert lead["status"] == "pending" and lead["next_retry_time"] > utcnow()
    result = retry_step_now(rnd.engine, rnd.settings, rnd.date, WAITING, "era5", 72)
    assert result.changed, result
    (now_due,) = _rows(rnd.engine, forecast_steps, forecast_steps.c.id == lead["id"])
    assert now_due["status"] == "pending" and now_due["next_retry_time"] <= utcnow()
    assert not retry_step_now(rnd.engine, rnd.settings, rnd.date, WAITING, "era5", 72).changed
    assert len(_recorded(rnd.engine, "retry")) == 1
    with pytest.raises(OperatorInputError, match=r"failed for good.*terminal"):
        retry_step_now(rnd.engine, rnd.settings, rnd.date, FAILED, "query")
    with pytest.raises(OperatorInputError, match="has no day1 step; it has: query"):
        retry_step_now(rnd.engine, rnd.settings, rnd.date, FAILED, "day1")
    assert not retry_step_now(rnd.engine, rnd.settings, rnd.date, SCORED, "day1").changed


def test_the_retry_job_runs_the_same_action(built) -> None:
    rnd, database = built
    config = {
        "ops": {
            "retry_step_now_op": {"config": {"round": str(rnd.date), "uid": WAITING, "step": "era5", "lead_hours": 72}}
        }
    }
    result = operator_retry_step_job.execute_in_process(
        run_config=config, resources={"settings": rnd.settings, "db": database}
    )
    assert result.success
    (record,) = _recorded(rnd.engine, "retry")
    assert record["context"]["target"] == f"uid{WAITING}:era5:72h"


def test_cancel_stops_the_thread_once(built) -> None:
    rnd, _ = built
    result = cancel_miner(rnd.engine, rnd.settings, rnd.date, WAITING, "hosting abuse")
    assert result.changed and "1 open step(s) failed" in result.message, result
    (response,) = _rows(rnd.engine, miner_responses, miner_responses.c.miner_uid == WAITING)
    assert response["status"] == "cancelled" and "hosting abuse" in response["error_message"]
    steps = _rows(rnd.engine, forecast_steps, forecast_steps.c.miner_uid == WAITING)
    assert {s["status"] for s in steps} == {"succeeded", "failed"}
    (lead,) = [s for s in steps if s["status"] == "failed"]
    assert lead["lead_hours"] == 72 and "cancelled by the operator" in lead["error_json"]["message"]
    again = cancel_miner(rnd.engine, rnd.settings, rnd.date, WAITING, "hosting abuse")
    assert not again.changed and "already cancelled" in again.message
    assert not cancel_miner(rnd.engine, rnd.settings, rnd.date, FAILED).changed
    assert len(_recorded(rnd.engine, "cancel")) == 1


def test_rollups_and_weights_rerun_to_the_same_rows(built, tmp_path) -> None:
    rnd, database = built
    publisher = DatabaseWeightPublisher(database)
    first = rerun_rollups(rnd.engine, rnd.settings, publisher, rnd.date, plots_dir=tmp_path / "plots")
    assert first.changed and list((tmp_path / "plots").glob("*.png"))
    tables = (round_scores, weight_sets, weights)
    snapshot = {
        t.name: _values(_rows(rnd.engine, t), "id", "computed_at", "published_at", "created_at") for t in tables
    }
    assert {r["miner_uid"] for r in _rows(rnd.engine, round_scores)} >= {SCORED}
    config = {"ops": {"rerun_rollups_op": {"config": {"round": str(rnd.date)}}}}
    job = operator_rollups_job.execute_in_process(
        run_config=config, resources={"settings": rnd.settings, "db": database, "weight_publisher": publisher}
    )
    assert job.success
    again = {t.name: _values(_rows(rnd.engine, t), "id", "computed_at", "published_at", "created_at") for t in tables}
    assert again == snapshot
    assert len(_recorded(rnd.engine, "rollups")) == 1
