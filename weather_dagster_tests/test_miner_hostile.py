"""Hostile miners on loopback (issue 10): each refused cheaply, classified, on its own miner alone.

One fleet serves two honest miners around one miner per hostile class; a whole query / poll /
freeze / open round runs against all of them at once. Each hostile miner must end with its own
recorded category and a message naming what it did, and the honest miners must come through with
first-attempt successes and exactly the fields they served (so their scores cannot change).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from weather_dagster.core.retry import RetryPolicy
from weather_dagster.db.schema import forecast_steps, miner_responses
from weather_dagster.db.steps import StepLog
from weather_dagster.miners.demo import hostile
from weather_dagster.miners.demo.behaviours import HOSTILE_BEHAVIOURS, Behaviour
from weather_dagster.miners.demo.fleet import DemoFleet
from weather_dagster.miners.keys import validator_keypair
from weather_dagster.miners.lifecycle import create_round, run_until_settled, seed_miners
from weather_dagster.miners.metagraph import metagraph_from_settings
from weather_dagster.miners.opening import open_verified_forecast
from weather_dagster_tests.miners_support import fleet_config, validator_settings

B = Behaviour
BOMB_BYTES = 64 * 1024 * 1024  # far beyond a 10-degree chunk (2.7 kB) and the 1 MiB test caps
ROSTER = [B.GOOD, *HOSTILE_BEHAVIOURS, B.GOOD]
# behaviour -> (final status, recorded category, text the recorded message must contain)
EXPECTED: dict[Behaviour, tuple[str, str | None, str]] = {
    B.HTTP_GZIP_BOMB: ("failed", "safety", "gzip response expands beyond the cap of"),
    B.STACKED_ENCODING: ("failed", "safety", "gzip response expands beyond the cap of"),
    B.ZLIB_BOMB: ("failed", "invalid_data", "2t/0.0.0: zlib chunk expands beyond 2736 bytes"),
    B.GZIP_BOMB: ("failed", "invalid_data", "2t/0.0.0: gzip chunk expands beyond 2736 bytes"),
    B.ZSTD_BOMB: ("failed", "invalid_data", "2t/0.0.0: zstd chunk expands beyond 2736 bytes"),
    B.BLOSC_BOMB: ("failed", "invalid_data", "2t/0.0.0: blosc chunk expands beyond 2736 bytes"),
    B.SHORT_CHUNK: ("failed", "invalid_data", "2t/0.0.0: chunk decodes to 2732 bytes, the declared chunk shape"),
    B.CORRUPT_CHUNK: ("failed", "invalid_data", "2t/0.0.0: zlib chunk cannot be decoded"),
    B.EXTRA_ARRAYS: ("forecast_ready", None, ""),  # extras are ignored, never read
    B.DEEP_JSON: ("failed", "invalid_data", "/weather-initiate-fetch answer: JSON nested too deeply"),
    B.HEADER_DRIP: ("failed", "timeout", "no complete response headers within"),
    B.BAD_FILL_VALUE: ("failed", "invalid_data", "2t: fill_value 'not-a-number' is not valid for dtype <f4"),
    B.BAD_TIME_UNITS: ("failed", "invalid_data", "time: time units 'fortnights since the flood' cannot be decoded"),
}
HONEST = (0, len(ROSTER) - 1)


@pytest.fixture(scope="module")
def fleet() -> Iterator[DemoFleet]:
    with DemoFleet(fleet_config(ROSTER, bomb_bytes=BOMB_BYTES)) as running:
        yield running


def test_every_hostile_class_is_refused_alone(fleet: DemoFleet, tmp_path: Path, db_url: str, database) -> None:
    assert set(EXPECTED) == set(HOSTILE_BEHAVIOURS)
    settings = validator_settings(tmp_path, db_url, fleet.write_metagraph(tmp_path / "metagraph.json"))
    # Short call timeouts keep the header-dripping miner's three query attempts (1 + 2 + 4 s) brief.
    settings = settings.model_copy(
        update={"retry": settings.retry.model_copy(update={"initiate_fetch_timeout_s": 1.0})}
    )
    engine = database.engine
    init = datetime(2026, 11, 20, tzinfo=UTC)
    run_id = create_round(engine, init, settings)
    snapshot = metagraph_from_settings(settings).snapshot()
    seed_miners(engine, StepLog(engine, RetryPolicy.from_settings(settings)), run_id, snapshot)
    keypair = validator_keypair(settings)
    assert asyncio.run(run_until_settled(settings, engine, run_id, keypair, max_wait_s=120))

    with engine.connect() as conn:
        responses = {r.miner_uid: dict(r._mapping) for r in conn.execute(sa.select(miner_responses))}
        steps = [dict(r._mapping) for r in conn.execute(sa.select(forecast_steps))]
    recorded = {}
    for uid, behaviour in enumerate(ROSTER):
        if behaviour is B.GOOD:
            continue
        response = responses[uid]
        recorded[behaviour] = (response["status"], response["failure_category"], response["error_message"] or "")
        status, category, text = EXPECTED[behaviour]
        assert (response["status"], response["failure_category"]) == (status, category), (behaviour, response)
        assert text in (response["error_message"] or ""), (behaviour, response["error_message"])
        if status == "failed":  # one failed step, never retried, except the timeouts the policy retries
            failed = [s for s in steps if s["miner_uid"] == uid and s["status"] == "failed"]
            # error_json names our error's category, or the transport error's type for a timeout
            assert len(failed) == 1 and failed[0]["error_json"]["category"] in (category, "ReadTimeout")
            expected_retries = settings.retry.query_max_attempts if category == "timeout" else 1
            assert failed[0]["retry_count"] == expected_retries, (behaviour, failed[0])
    print("\nhostile class -> (status, category, message)")
    for behaviour, outcome in recorded.items():
        print(f"  {behaviour.value}: {outcome}")

    # The extra variable and the huge extra coordinate (both bombs) were never requested.
    extra = ROSTER.index(B.EXTRA_ARRAYS)
    served_keys = fleet.miners[extra].served_keys
    assert "2t/0.0.0" in served_keys and not set(hostile.extra_keys(B.EXTRA_ARRAYS)) & served_keys
    # Honest miners: first-attempt successes, and exactly the fields they served.
    for uid in HONEST:
        mine = [s for s in steps if s["miner_uid"] == uid]
        assert {s["step_name"] for s in mine} == {"query", "poll", "manifest"}
        assert all(s["status"] == "succeeded" and s["error_json"] is None for s in mine)
        assert all(s["retry_count"] == 0 for s in mine if s["step_name"] != "poll")  # polls wait for "completed"
        assert responses[uid]["status"] == "forecast_ready"
        served = fleet.miners[uid].jobs[responses[uid]["job_id"]].store
        forecast = open_verified_forecast(settings, engine, run_id, uid, responses[uid]["miner_hotkey"])
        try:
            for variable, level, lead in (("2t", None, 6), ("z", 500, 24), ("q", 850, 48)):
                read = forecast.field(variable, level, lead)
                np.testing.assert_array_equal(read, served.field(variable, level, lead))
        finally:
            forecast.close()
    # The batched passes never waited on the header-dripping miner: honest steps finished first.
    drip = ROSTER.index(B.HEADER_DRIP)
    drip_query = next(s for s in steps if s["miner_uid"] == drip and s["step_name"] == "query")
    for uid in HONEST:
        honest_query = next(s for s in steps if s["miner_uid"] == uid and s["step_name"] == "query")
        assert honest_query["completed_at"] < drip_query["completed_at"]
