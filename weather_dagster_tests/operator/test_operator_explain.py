"""``explain`` on a real round's database: a failed, a waiting and a scored miner, and the round summary."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from weather_dagster.db.engine import Database
from weather_dagster.db.schema import miner_responses
from weather_dagster.miners.demo.fleet import DemoFleet
from weather_dagster.operator.demo_env import OperatorInputError
from weather_dagster.operator.explain import explain_miner, explain_round
from weather_dagster_tests.support.operator_round import (
    FAILED,
    SCORED,
    WAITING,
    OperatorRound,
    build_round,
    operator_settings,
    start_fleet,
)
from weather_dagster_tests.support.services import VENV_BIN, clean_env

SECRET = "token=s3cr3t-value-never-shown"


@pytest.fixture(scope="module")
def fleet() -> Iterator[DemoFleet]:
    with start_fleet() as running:
        yield running


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def built(request, fleet: DemoFleet, tmp_path_factory) -> Iterator[OperatorRound]:
    tmp = tmp_path_factory.mktemp(f"explain-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'weather.db'}"
    else:
        url = request.getfixturevalue("pg_server").create_database()
    database = Database(url)
    try:
        built = build_round(operator_settings(tmp, url, fleet), database.engine, score_waiting=True)
        # An error stored before the sanitiser existed (or by a careless writer) is still never shown.
        with database.engine.begin() as conn:
            conn.execute(
                sa.update(miner_responses)
                .where(miner_responses.c.miner_uid == FAILED)
                .values(error_message=f"All connection attempts failed ({SECRET})")
            )
        yield built
    finally:
        database.dispose()


def test_failed_miner_names_the_error_and_that_nothing_runs_next(built: OperatorRound) -> None:
    got = explain_miner(built.engine, built.settings, built.date, FAILED)
    assert got.status == "failed"
    assert got.reason.startswith("connection: All connection attempts failed")
    (query,) = got.steps
    attempts = built.settings.retry.query_max_attempts
    assert (query.step, query.status, query.attempts) == ("query", "failed", attempts)
    assert query.rule == f"failed for good: {attempts} of {attempts} attempts used"
    assert "connection attempts failed" in query.last_error
    assert got.next_up == "nothing: the forecast is failed"
    assert got.scores == [] and got.missing_leads == []
    text = "\n".join(got.lines())
    assert "s3cr3t" not in text and "[REDACTED]" in text


def test_waiting_miner_names_the_lead_the_truth_and_what_the_source_has(built: OperatorRound) -> None:
    got = explain_miner(built.engine, built.settings, built.date, WAITING)
    assert got.status == "era5_scoring"
    by_step = {s.step: s for s in got.steps}
    assert [by_step[f"era5:{lead}h"].status for lead in (24, 48)] == ["succeeded", "succeeded"]
    waiting = by_step["era5:72h"]
    valid = built.init + timedelta(hours=72)
    assert waiting.status == "pending" and waiting.next_at == valid  # test mode: no ERA5 delay
    assert (
        waiting.rule
        == f"lead 72 h waits for the clock: ERA5 valid {valid:%Y-%m-%d %H}Z is expected at {valid:%Y-%m-%d %H:%M:%S}Z"
    )
    assert got.next_up == f"era5:72h: {waiting.rule}"
    assert [line.split(":")[0] for line in got.scores[:3]] == ["day1", "era5 24 h", "era5 48 h"]
    assert not any(line.startswith("era5 72 h") for line in got.scores)
    # Past the clock, the truth source decides: the rule says how far it has published.
    later = valid + timedelta(hours=8)
    published = {"arco": built.init + timedelta(hours=50), "cds": None}
    got = explain_miner(built.engine, built.settings, built.date, WAITING, now=later, published=published)
    rule = {s.step: s.rule for s in got.steps}["era5:72h"]
    assert rule == (
        f"lead 72 h waits for ERA5 valid {valid:%Y-%m-%d %H}Z; "
        f"ARCO has published up to {built.init + timedelta(hours=50):%Y-%m-%d %H}Z; CDS did not answer"
    )


def test_scored_miner_lists_every_step_done_and_its_score_rows(built: OperatorRound) -> None:
    got = explain_miner(built.engine, built.settings, built.date, SCORED)
    assert got.status == "era5_scored" and got.reason is None
    assert [s.step for s in got.steps] == ["query", "poll", "manifest", "day1", "era5:24h", "era5:48h", "era5:72h"]
    assert all(s.status == "succeeded" and s.last_error is None for s in got.steps)
    assert [line.split(":")[0] for line in got.scores[:4]] == ["day1", "era5 24 h", "era5 48 h", "era5 72 h"]
    assert all("(9 variable rows)" in line for line in got.scores[1:4])
    assert got.next_up == "nothing: the forecast is era5_scored"


def test_round_summary_counts_states_and_ranks_reasons(built: OperatorRound) -> None:
    got = explain_round(built.engine, built.date)
    assert got.counts == {"era5_scored": 1, "failed": 1, "era5_scoring": 1}
    reasons = dict(got.reasons)
    assert len(reasons) == 2 and all(count == 1 for count in reasons.values())
    assert any(r.startswith("failed: connection: All connection attempts failed") for r in reasons)
    assert "era5_scoring: next era5:72h (pending)" in reasons
    assert all("s3cr3t" not in r for r in reasons)


def test_unknown_round_and_uid_say_what_exists(built: OperatorRound) -> None:
    with pytest.raises(OperatorInputError, match=f"rounds in this database: {built.date}"):
        explain_round(built.engine, built.date - timedelta(days=30))
    with pytest.raises(OperatorInputError, match=r"its miners: \[0, 1, 2\]"):
        explain_miner(built.engine, built.settings, built.date, 99)


def test_cli_explains_from_the_environment(built: OperatorRound, tmp_path: Path) -> None:
    env = clean_env(tmp_path, WEATHER_DATABASE_URL=built.settings.resolved_database_url)
    cmd = [str(VENV_BIN / "weather-dagster"), "explain", "--round", str(built.date), "--uid", str(FAILED)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=os.getcwd())
    assert done.returncode == 0, done.stderr[-2000:]
    assert "miner uid 1" in done.stdout and "failed for good" in done.stdout and "s3cr3t" not in done.stdout
    summary = subprocess.run(cmd[:4], env=env, capture_output=True, text=True, timeout=120)
    assert summary.returncode == 0 and "most common reasons" in summary.stdout
