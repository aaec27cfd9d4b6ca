"""Answers the reference miner really gives (issue 10, protocol tolerance), on loopback, beside honest miners.

- kerchunk-request answers HTTP 200 with ``processing`` / ``not_found`` / ``error`` and null URL, hash
  and token while a job is not completed: a retry, a clear failure, the miner's failure; never invalid_data;
- a failed job answers poll with HTTP 500 naming ``FETCH_ERROR``: recorded as such, failed at once;
- one job_id reported by two uids of the round: the later uid fails (``duplicate_forecast``), the first
  keeps its forecast and both are recorded; the same frozen manifest hash on two uids is noted on both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from weather_dagster.core.retry import ErrorClass, RetryPolicy, classify
from weather_dagster.core.states import StepName
from weather_dagster.db.schema import forecast_steps, miner_responses
from weather_dagster.db.steps import StepKey, StepLog
from weather_dagster.miners.answers import JobNotFound
from weather_dagster.miners.demo.behaviours import PROTOCOL_BEHAVIOURS, Behaviour
from weather_dagster.miners.demo.fleet import DemoFleet
from weather_dagster.miners.duplicates import note_same_manifest
from weather_dagster.miners.keys import validator_keypair
from weather_dagster.miners.lifecycle import create_round, run_until_settled, seed_miners
from weather_dagster.miners.manifest import freeze
from weather_dagster.miners.metagraph import MinerInfo, metagraph_from_settings
from weather_dagster.miners.opening import open_verified_forecast
from weather_dagster.miners.protocol import KerchunkResponse
from weather_dagster_tests.support.miners_support import fleet_config, validator_settings

B = Behaviour
ROSTER = [B.GOOD, *PROTOCOL_BEHAVIOURS, B.GOOD]
# behaviour -> (final status, recorded category, text the recorded message must contain)
EXPECTED: dict[Behaviour, tuple[str, str | None, str]] = {
    B.KERCHUNK_PROCESSING: ("forecast_ready", None, ""),
    B.KERCHUNK_NOT_FOUND: ("failed", "job_not_found", "kerchunk-request answered 'not_found' (Job not found)"),
    B.KERCHUNK_ERROR: ("failed", "miner_failed", "kerchunk-request answered 'error' (Inference failed)"),
    B.POLL_FETCH_ERROR: ("failed", "miner_failed", "miner reports FETCH_ERROR: its job failed"),
    B.DUPLICATE_JOB: ("failed", "duplicate_forecast", "belongs to different miner (uid 0)"),
    B.STORE_RESETS: ("forecast_ready", None, ""),  # every dropped read reconnected within the step
}
HONEST = (0, len(ROSTER) - 1)


@pytest.fixture(scope="module")
def fleet() -> Iterator[DemoFleet]:
    with DemoFleet(fleet_config(ROSTER)) as running:
        yield running


def _round(settings, engine) -> int:
    run_id = create_round(engine, datetime(2026, 11, 20, tzinfo=UTC), settings)
    seed_miners(
        engine,
        StepLog(engine, RetryPolicy.from_settings(settings)),
        run_id,
        metagraph_from_settings(settings).snapshot(),
    )
    return run_id


def test_reference_miner_answers_are_classified(fleet: DemoFleet, tmp_path: Path, db_url: str, database) -> None:
    settings = validator_settings(tmp_path, db_url, fleet.write_metagraph(tmp_path / "metagraph.json"))
    engine = database.engine
    run_id = _round(settings, engine)
    assert asyncio.run(run_until_settled(settings, engine, run_id, validator_keypair(settings), max_wait_s=60))
    with engine.connect() as conn:
        responses = {r.miner_uid: dict(r._mapping) for r in conn.execute(sa.select(miner_responses))}
        steps = [dict(r._mapping) for r in conn.execute(sa.select(forecast_steps))]

    def step(uid: int, name: str) -> dict:
        return next(s for s in steps if s["miner_uid"] == uid and s["step_name"] == name)

    for behaviour in PROTOCOL_BEHAVIOURS:
        uid = ROSTER.index(behaviour)
        status, category, text = EXPECTED[behaviour]
        r = responses[uid]
        print(f"\n{behaviour.value}: {r['status']} / {r['failure_category']} / {r['error_message']}")
        assert (r["status"], r["failure_category"]) == (status, category), r
        assert text in (r["error_message"] or ""), r["error_message"]
    # Not ready twice, then served: two retries of the manifest step, no error left on it.
    processing = step(ROSTER.index(B.KERCHUNK_PROCESSING), "manifest")
    assert (processing["status"], processing["retry_count"], processing["error_json"]) == ("succeeded", 2, None)
    # A FETCH_ERROR 500 fails the poll at its first attempt instead of after every allowed poll.
    poll = step(ROSTER.index(B.POLL_FETCH_ERROR), "poll")
    assert (poll["status"], poll["retry_count"]) == ("failed", 1)
    assert "HTTP 500" in poll["error_json"]["message"] and "FETCH_ERROR" in poll["error_json"]["message"]
    # not_found / error fail at once, as the miner's failure, never as bad data.
    for behaviour in (B.KERCHUNK_NOT_FOUND, B.KERCHUNK_ERROR):
        manifest = step(ROSTER.index(behaviour), "manifest")
        assert (manifest["status"], manifest["retry_count"]) == ("failed", 1)
    # Duplicate job: the later uid failed at query; the first (uid 0) kept its forecast, both recorded.
    duplicate = ROSTER.index(B.DUPLICATE_JOB)
    assert responses[duplicate]["job_id"] == responses[0]["job_id"]
    assert step(0, "query")["context"]["duplicate_job_id_uids"] == [0, duplicate]
    assert step(duplicate, "query")["error_json"]["category"] == "duplicate_forecast"
    # Connections dropped mid-body: reconnected within the step, which succeeded at its first attempt.
    resets = ROSTER.index(B.STORE_RESETS)
    assert fleet.miners[resets].resets >= 1
    assert (step(resets, "manifest")["status"], step(resets, "manifest")["retry_count"]) == ("succeeded", 0)
    # After the freeze, at scoring time, "not_found" is the miner's clear failure (job_not_found), not bad data.
    frozen = ROSTER.index(B.KERCHUNK_PROCESSING)
    fleet.miners[frozen].behaviour = B.KERCHUNK_NOT_FOUND
    try:
        with pytest.raises(JobNotFound, match="answered 'not_found'") as raised:
            open_verified_forecast(settings, engine, run_id, frozen, responses[frozen]["miner_hotkey"])
        assert classify(raised.value) is ErrorClass.MINER_FAILED and raised.value.category == "job_not_found"
    finally:
        fleet.miners[frozen].behaviour = B.KERCHUNK_PROCESSING
    for uid in HONEST:  # first-attempt successes (polls wait for "completed")
        assert responses[uid]["status"] == "forecast_ready"
        mine = [s for s in steps if s["miner_uid"] == uid]
        assert all(s["status"] == "succeeded" and s["error_json"] is None for s in mine)
        assert all(s["retry_count"] == 0 for s in mine if s["step_name"] != "poll")


def test_store_read_reconnects_then_leaves_a_transient_error_to_the_step() -> None:
    """Refused every time: tried once per pause plus once, then the error is a connection error (retried)."""
    import time

    from weather_dagster.core.retry import ErrorClass, classify, with_reconnects
    from weather_dagster.miners.demo.fleet import free_port
    from weather_dagster.miners.store_http import StoreHttp

    root = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    http = StoreHttp(root)
    calls, pauses = [], []
    url = f"{root}/forecasts/x.zarr/2t/0.0.0"

    def read() -> bytes:
        calls.append(time.monotonic())
        return http.get(url, max_bytes=1024, deadline_s=1.0, timeout_s=2.0, headers={})

    try:
        with pytest.raises(Exception) as raised:
            with_reconnects(read, (0.5, 1.0), sleep=lambda s: (pauses.append(s), time.sleep(s)))
    finally:
        http.close()
    assert len(calls) == 3 and pauses == [0.5, 1.0]
    assert calls[2] - calls[0] >= 1.5
    assert classify(raised.value) is ErrorClass.CONNECTION


def test_kerchunk_answer_shapes() -> None:
    """The reference miner's not-ready shape parses (not invalid_data) and is not ready; a full answer is."""
    not_ready = KerchunkResponse.model_validate(
        {
            "status": "processing",
            "message": "Job is still processing",
            "zarr_store_url": None,
            "verification_hash": None,
            "access_token": None,
        }
    )
    assert not not_ready.ready and not_ready.status == "processing"
    ready = KerchunkResponse.model_validate(
        {
            "status": "completed",
            "zarr_store_url": "/forecasts/x.zarr/",
            "verification_hash": "ab" * 32,
            "access_token": "t",
        }
    )
    assert ready.ready
    assert not KerchunkResponse.model_validate({"status": "completed", "zarr_store_url": "/forecasts/x"}).ready


def test_same_manifest_hash_on_two_uids_is_noted_on_both(tmp_path: Path, db_url: str, database) -> None:
    """Two uids frozen with one manifest hash: each uid's manifest step names both; neither fails."""
    settings = validator_settings(tmp_path, db_url)
    engine = database.engine
    steps = StepLog(engine, RetryPolicy.from_settings(settings))
    run_id = create_round(engine, datetime(2026, 11, 20, tzinfo=UTC), settings)
    miners = [MinerInfo(uid=u, hotkey=f"hotkey-{u}", ip="127.0.0.1", port=9000 + u) for u in range(3)]
    seed_miners(engine, steps, run_id, miners)
    shared, other = "ab" * 32, "cd" * 32
    for info, verification_hash in zip(miners, (shared, other, shared), strict=True):
        key = StepKey(run_id, info.uid, info.hotkey, StepName.MANIFEST)
        steps.ensure_pending(key, due_at=datetime.now(UTC))
        manifest = {"files": {}, "signer_hotkey_ss58": info.hotkey}
        freeze(
            engine,
            run_id=run_id,
            miner_uid=info.uid,
            miner_hotkey=info.hotkey,
            manifest=manifest,
            verification_hash=verification_hash,
            store_url="http://127.0.0.1/forecasts/x.zarr/",
            window_s=60.0,
        )
    last = StepKey(run_id, 2, "hotkey-2", StepName.MANIFEST)
    assert note_same_manifest(engine, last, shared) == [0, 2]
    with engine.connect() as conn:
        contexts = {
            r.miner_uid: r.context
            for r in conn.execute(sa.select(forecast_steps).where(forecast_steps.c.step_name == "manifest"))
        }
        statuses = {r.miner_uid: r.status for r in conn.execute(sa.select(miner_responses))}
    assert contexts[0]["same_manifest_hash_uids"] == [0, 2] == contexts[2]["same_manifest_hash_uids"]
    assert "same_manifest_hash_uids" not in (contexts[1] or {})
    assert "failed" not in statuses.values()


def test_a_poll_5xx_keeps_polling_with_its_body_recorded_unless_it_names_fetch_error() -> None:
    from weather_dagster.core.errors import MinerJobFailed
    from weather_dagster.core.retry import ErrorClass, classify
    from weather_dagster.miners.answers import unreachable_state
    from weather_dagster.miners.perimeter import BoundedResponse, raise_for_status

    def error(status: int, body: bytes) -> Exception:
        with pytest.raises(Exception) as raised:
            raise_for_status(BoundedResponse(status, body, 1.0), "/weather-poll-job-status")
        return raised.value

    busy = error(503, b"upstream busy" + b"x" * 1000)
    assert classify(busy) is ErrorClass.SERVER  # the retry classification is unchanged
    state = unreachable_state(busy)
    assert "HTTP 503: upstream busy" in state and len(state) <= 400
    refused = unreachable_state(error(404, b"page body"))
    assert "HTTP 404" in refused and "page body" not in refused  # only a 5xx body is shown
    with pytest.raises(MinerJobFailed, match="miner reports FETCH_ERROR: its job failed"):
        unreachable_state(error(500, b'{"error": "Internal server error: FETCH_ERROR"}'))


def test_poll_fails_at_once_on_the_statuses_the_reference_fails_on() -> None:
    from weather_dagster.miners import protocol

    reference = {"failed", "error", "fetch_error", "input_hash_mismatch", "input_hash_timeout", "input_poll_error"}
    assert reference == protocol.POLL_FAILED and not reference & protocol.POLL_RUNNING
