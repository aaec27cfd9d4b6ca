"""255 demo miners: the fleet measures the requests in flight; the validator never exceeds its limit."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from weather_dagster.core.retry import RetryPolicy
from weather_dagster.db.engine import Database
from weather_dagster.db.schema import forecast_steps
from weather_dagster.db.steps import StepLog
from weather_dagster.miners.demo.behaviours import Behaviour
from weather_dagster.miners.demo.fleet import DemoFleet
from weather_dagster.miners.keys import validator_keypair
from weather_dagster.miners.lifecycle import advance_round, create_round, seed_miners
from weather_dagster.miners.metagraph import metagraph_from_settings
from weather_dagster_tests.support.miners_support import fleet_config, validator_settings

LIMIT = 8


def test_255_miners_never_exceed_the_in_flight_limit(tmp_path: Path) -> None:
    # The limit is about request concurrency: the batched query and poll passes over 255 miners
    # (handshake, initiate-fetch, poll: over a thousand requests) exercise it fully. The whole
    # path to frozen forecasts for 255 miners is the benchmark's (make bench-miners).
    config = fleet_config([Behaviour.GOOD] * 255, steps=2, ready_after_s=0.0)
    with DemoFleet(config) as fleet:
        settings = validator_settings(
            tmp_path,
            f"sqlite:///{tmp_path / 'weather.db'}",
            fleet.write_metagraph(tmp_path / "metagraph.json"),
            http_concurrency=LIMIT,
            forecast_steps=2,
        )
        database = Database(settings.resolved_database_url)
        engine = database.engine
        run_id = create_round(engine, datetime(2026, 11, 20, tzinfo=UTC), settings)
        snapshot = metagraph_from_settings(settings).snapshot()
        seed_miners(engine, StepLog(engine, RetryPolicy.from_settings(settings)), run_id, snapshot)
        keypair = validator_keypair(settings)
        queried = asyncio.run(advance_round(settings, engine, run_id, keypair))
        time.sleep(settings.retry.poll_first_delay_s)
        polled = asyncio.run(advance_round(settings, engine, run_id, keypair))
        with engine.connect() as conn:
            steps = conn.execute(
                sa.select(forecast_steps.c.step_name, forecast_steps.c.status, sa.func.count()).group_by(
                    forecast_steps.c.step_name, forecast_steps.c.status
                )
            ).all()
        database.dispose()
    assert (queried, polled) == (255, 255)
    assert {(r[0], r[1]): r[2] for r in steps} == {
        ("query", "succeeded"): 255,
        ("poll", "succeeded"): 255,
        ("manifest", "pending"): 255,
    }
    assert fleet.requests >= 255 * 4  # public key, key exchange, initiate-fetch, poll
    # Never more than the limit at once, though the limit itself was used.
    assert fleet.max_in_flight <= LIMIT
    assert fleet.max_in_flight >= 2
