"""No raw miner or source text reaches a table or a log (issue 12).

A hostile text carries a URL credential, newlines and terminal escapes (a forged log line) and runs
long. Two real paths: a Day1 scoring failure (the forecast's ``error_message`` used to be stored as
``str(exc)[:500]``) and a miner whose status endpoint answers 500 with such a body (the poll keeps
going, its "not ready" text quoting the answer). Every stored copy and every log record must be
redacted, one line, and bounded.
"""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from weather_dagster.core.errors import MAX_ERROR_MESSAGE_BYTES, InvalidDataError, TruthNotAvailable
from weather_dagster.core.retry import RetryPolicy
from weather_dagster.core.states import StepName
from weather_dagster.db.schema import forecast_stats, forecast_steps, miner_responses
from weather_dagster.db.steps import StepKey, StepLog
from weather_dagster.miners.keys import validator_keypair
from weather_dagster.miners.lifecycle import advance_round
from weather_dagster.miners.metagraph import MinerInfo, sync_miners_table
from weather_dagster.scoring.service import run_day1
from weather_dagster.settings import load_settings
from weather_dagster_tests.support.helpers import INIT, make_response, make_round
from weather_dagster_tests.support.miners_support import validator_settings

SECRET = "hunter2"
HOSTILE = f"db postgresql://miner:{SECRET}@10.0.0.1/x failed\n2026-01-01 CRITICAL forged line\x1b[31m\r\x00"


def _stored_texts(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        steps = conn.execute(sa.select(forecast_steps.c.error_json, forecast_steps.c.context)).all()
        responses = conn.execute(sa.select(miner_responses.c.error_message)).scalars().all()
        stats = conn.execute(sa.select(forecast_stats.c.last_error_message)).scalars().all()
    texts = [str(v) for row in steps for v in row if v is not None]
    return texts + [t for t in (*responses, *stats) if t is not None]


def _assert_clean(texts: list[str]) -> None:
    assert texts
    for text in texts:
        assert SECRET not in text, text
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in text), repr(text)
        assert len(text.encode()) <= MAX_ERROR_MESSAGE_BYTES + 256


class RaisingInputs:
    """Scoring inputs whose miner forecast read fails with a hostile message (the store adapter's shape)."""

    def forecast(self, run_id: int, uid: int, hotkey: str):
        raise InvalidDataError(HOSTILE + "x" * 10_000)

    def truth(self, kind, init_time):  # never reached: the forecast is read first
        raise AssertionError("truth read before the forecast")

    def climatology(self):
        raise AssertionError("climatology read before the forecast")


def test_a_day1_failure_stores_and_reports_only_sanitised_text(tmp_path, db_url, database, caplog) -> None:
    engine = database.engine
    settings = load_settings(data_dir=tmp_path / "data", database_url=db_url, test_mode=True)
    run_id = make_round(engine)
    make_response(engine, run_id, 5, "hk5")
    with engine.begin() as conn:
        conn.execute(sa.update(miner_responses).values(status="forecast_ready"))
    steps = StepLog(engine, RetryPolicy.from_settings(settings))
    with caplog.at_level(logging.DEBUG):
        outcome = run_day1(engine, steps, settings, RaisingInputs(), run_id, 5, now=datetime.now(UTC))
    assert outcome.status == "failed"
    with engine.connect() as conn:
        assert conn.execute(sa.select(miner_responses.c.status)).scalar() == "failed"
    _assert_clean([*_stored_texts(engine), outcome.detail, *(r.getMessage() for r in caplog.records)])


def test_waiting_for_truth_keeps_only_sanitised_reason(database, steps: StepLog) -> None:
    run_id = make_round(database.engine)
    make_response(database.engine, run_id, 5, "hk5")
    key = StepKey(run_id, 5, "hk5", StepName.ERA5, lead_hours=24)
    steps.start(key, now=INIT)
    steps.record_failure(key, TruthNotAvailable(HOSTILE), attempt=1, now=INIT)
    assert steps.get(key).status == "waiting_for_truth"
    _assert_clean(_stored_texts(database.engine))


@pytest.fixture
def chatty_miner() -> Iterator[int]:
    """A miner whose every endpoint answers 500 with a hostile body."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = HOSTILE.encode()
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_a_miners_error_body_is_stored_and_logged_sanitised(tmp_path, db_url, database, chatty_miner, caplog) -> None:
    import asyncio

    settings = validator_settings(tmp_path, db_url)
    engine = database.engine
    run_id = make_round(engine)
    make_response(engine, run_id, 3, "hk3")
    sync_miners_table(engine, [MinerInfo(uid=3, hotkey="hk3", ip="127.0.0.1", port=chatty_miner)])
    with engine.begin() as conn:
        conn.execute(sa.update(miner_responses).values(status="fetch_initiated", job_id="job-3"))
    steps = StepLog(engine, RetryPolicy.from_settings(settings))
    steps.ensure_pending(StepKey(run_id, 3, "hk3", StepName.POLL))
    with caplog.at_level(logging.DEBUG):
        ran = asyncio.run(advance_round(settings, engine, run_id, validator_keypair(settings)))
    assert ran == 1
    row = steps.get(StepKey(run_id, 3, "hk3", StepName.POLL))
    assert row.status == "retry_scheduled" and "REDACTED" in row.error_json["message"]
    _assert_clean([*_stored_texts(engine), *(r.getMessage() for r in caplog.records)])
