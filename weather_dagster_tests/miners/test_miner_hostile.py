"""Hostile miners on loopback (issue 10): each refused cheaply, classified, on its own miner alone.

One fleet serves two honest miners around one miner per hostile class; a whole query / poll /
freeze / open round runs against all of them at once. Each hostile miner must end with its own
recorded category and a message naming what it did, and the honest miners must come through with
first-attempt successes and exactly the fields they served (so their scores cannot change).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest
import sqlalchemy as sa

from weather_dagster.core.retry import RetryPolicy
from weather_dagster.db.engine import Database
from weather_dagster.db.schema import forecast_steps, miner_responses
from weather_dagster.db.steps import StepLog
from weather_dagster.miners.demo import hostile
from weather_dagster.miners.demo.behaviours import HOSTILE_BEHAVIOURS, Behaviour
from weather_dagster.miners.demo.fleet import DemoFleet
from weather_dagster.miners.keys import validator_keypair
from weather_dagster.miners.lifecycle import create_round, run_until_settled, seed_miners
from weather_dagster.miners.metagraph import metagraph_from_settings
from weather_dagster.miners.opening import open_verified_forecast
from weather_dagster.settings import Settings
from weather_dagster_tests.conftest import BACKENDS
from weather_dagster_tests.support.miners_support import fleet_config, validator_settings

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
    B.HEADER_DRIP: ("failed", "timeout", "no complete response headers within 8 s"),
    B.BAD_FILL_VALUE: ("failed", "invalid_data", "2t: fill_value 'not-a-number' is not valid for dtype <f4"),
    B.BAD_TIME_UNITS: ("failed", "invalid_data", "time: time units 'fortnights since the flood' cannot be decoded"),
}
HONEST = (0, len(ROSTER) - 1)


@pytest.fixture(scope="module")
def fleet() -> Iterator[DemoFleet]:
    with DemoFleet(fleet_config(ROSTER, bomb_bytes=BOMB_BYTES)) as running:
        yield running


@dataclass
class Round:
    settings: Settings
    database: Database
    run_id: int
    responses: dict[int, dict]
    steps: list[dict]

    def failed_steps(self, uid: int) -> list[dict]:
        return [s for s in self.steps if s["miner_uid"] == uid and s["status"] == "failed"]


@pytest.fixture(scope="module", params=BACKENDS)
def hostile_round(request: pytest.FixtureRequest, fleet: DemoFleet, tmp_path_factory) -> Iterator[Round]:
    """One whole round, every hostile class at once beside two honest miners, per database backend."""
    tmp_path = tmp_path_factory.mktemp(f"hostile-{request.param}")
    if request.param == "sqlite":
        db_url, pg = f"sqlite:///{tmp_path / 'weather.db'}", None
    else:
        pg = request.getfixturevalue("pg_server")
        db_url = pg.create_database()
    settings = validator_settings(tmp_path, db_url, fleet.write_metagraph(tmp_path / "metagraph.json"))
    # Short call timeouts keep the header-dripping miner's three query attempts (2 + 4 + 8 s) brief.
    settings = settings.model_copy(
        update={"retry": settings.retry.model_copy(update={"initiate_fetch_timeout_s": 2.0})}
    )
    database = Database(db_url)
    engine = database.engine
    run_id = create_round(engine, datetime(2026, 11, 20, tzinfo=UTC), settings)
    snapshot = metagraph_from_settings(settings).snapshot()
    seed_miners(engine, StepLog(engine, RetryPolicy.from_settings(settings)), run_id, snapshot)
    settled = asyncio.run(run_until_settled(settings, engine, run_id, validator_keypair(settings), max_wait_s=120))
    assert settled
    with engine.connect() as conn:
        responses = {r.miner_uid: dict(r._mapping) for r in conn.execute(sa.select(miner_responses))}
        steps = [dict(r._mapping) for r in conn.execute(sa.select(forecast_steps))]
    try:
        yield Round(settings, database, run_id, responses, steps)
    finally:
        database.dispose()
        if pg is not None:
            pg.drop_database(db_url)


@pytest.mark.parametrize("behaviour", HOSTILE_BEHAVIOURS, ids=lambda b: b.value)
def test_hostile_class_is_refused_alone(hostile_round: Round, behaviour: Behaviour) -> None:
    uid = ROSTER.index(behaviour)
    response = hostile_round.responses[uid]
    status, category, text = EXPECTED[behaviour]
    print(f"\n{behaviour.value}: {response['status']} / {response['failure_category']} / {response['error_message']}")
    assert (response["status"], response["failure_category"]) == (status, category), response
    assert text in (response["error_message"] or ""), response["error_message"]
    if status == "failed":  # one failed step, never retried, except the timeouts the policy retries
        failed = hostile_round.failed_steps(uid)
        # error_json names our error's category, or the transport error's type for a timeout
        assert len(failed) == 1 and failed[0]["error_json"]["category"] in (category, "ReadTimeout")
        expected_attempts = hostile_round.settings.retry.query_max_attempts if category == "timeout" else 1
        assert failed[0]["retry_count"] == expected_attempts, failed[0]


def test_every_hostile_class_has_an_expected_outcome() -> None:
    assert set(EXPECTED) == set(HOSTILE_BEHAVIOURS)
    assert all(category != "unknown" for _, category, _ in EXPECTED.values())


def test_honest_miners_beside_hostile_ones_are_unchanged(hostile_round: Round, fleet: DemoFleet) -> None:
    """First-attempt successes, and the verified reads return exactly the fields served (same scores)."""
    for uid in HONEST:
        mine = [s for s in hostile_round.steps if s["miner_uid"] == uid]
        assert {s["step_name"] for s in mine} == {"query", "poll", "manifest"}
        assert all(s["status"] == "succeeded" and s["error_json"] is None for s in mine)
        assert all(s["retry_count"] == 0 for s in mine if s["step_name"] != "poll")  # polls wait for "completed"
        response = hostile_round.responses[uid]
        assert response["status"] == "forecast_ready"
        served = fleet.miners[uid].jobs[response["job_id"]].store
        engine = hostile_round.database.engine
        forecast = open_verified_forecast(
            hostile_round.settings, engine, hostile_round.run_id, uid, response["miner_hotkey"]
        )
        try:
            for variable, level, lead in (("2t", None, 6), ("z", 500, 24), ("q", 850, 48)):
                read = forecast.field(variable, level, lead)
                np.testing.assert_array_equal(read, served.field(variable, level, lead))
        finally:
            forecast.close()


def test_extra_arrays_and_coordinates_are_never_read(hostile_round: Round, fleet: DemoFleet) -> None:
    served_keys = fleet.miners[ROSTER.index(B.EXTRA_ARRAYS)].served_keys
    assert "2t/0.0.0" in served_keys
    assert not set(hostile.extra_keys(B.EXTRA_ARRAYS)) & served_keys


def test_a_hostile_miner_never_holds_up_the_batched_pass(hostile_round: Round) -> None:
    """Honest queries and polls of the same passes finished while the header-dripping miner was timing out."""
    drip = ROSTER.index(B.HEADER_DRIP)
    drip_query = next(s for s in hostile_round.steps if s["miner_uid"] == drip and s["step_name"] == "query")
    for uid in HONEST:
        for step in [s for s in hostile_round.steps if s["miner_uid"] == uid and s["step_name"] in ("query", "poll")]:
            assert step["completed_at"] < drip_query["completed_at"], step
